"""Process-level performance settings: process pools for CPU-bound preprocessing (phantom generation, the
training cache) and the C allocator's settings for inference (`tune_malloc`, `release_free_memory`).

`process_workers(n)` is how many processes to really use: `n` (None: half the CPUs, at most 8, so 1 on a
2-core machine), but 1 where a "spawn" process pool cannot start its children: a frozen (PyInstaller)
application, or a main module read from stdin. `process_pool(n)` uses "spawn" so that no process holding
torch, OpenMP or Qt threads is forked. `numpy_hugepage_hint_off` turns off numpy's huge-page hint for
inference.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def process_workers(n: int | None = None) -> int:
    if n is None:
        n = max(1, min(8, (os.cpu_count() or 1) // 2))
    n = max(1, int(n))
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if getattr(sys, "frozen", False) or (main_file is not None and not Path(main_file).exists()):
        return 1
    return n


def thread_workers(limit: int = 8) -> int:
    """Threads for work that releases the GIL (CharLS encoding, scipy.ndimage resampling): the CPUs this
    process may use, at most `limit`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(int(limit), n))


def process_pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))


log = logging.getLogger(__name__)
_MALLOC_TUNED: bool | None = None
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> bool:
    """glibc: serve allocations up to 32 MiB from the heap and keep freed heap memory in the process (no
    trimming below 1 GiB), so the network's large temporary tensors reuse pages already mapped instead of
    page-faulting fresh zeroed memory on every call (glibc's adaptive threshold only gets there after a
    few calls; `benchmarks/bench_malloc.py` measures the difference). Once per process; no-op
    on other C libraries or with GEMINI_CMR_MALLOC=0. Returns whether the settings are in effect."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED is not None:
        return _MALLOC_TUNED
    _MALLOC_TUNED = False
    if os.environ.get("GEMINI_CMR_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    log.debug("malloc tuned for inference: %s", ok)
    return ok


_HUGEPAGE_HINT_OFF: bool | None = None


def numpy_hugepage_hint_off() -> bool:
    """Turn off numpy's transparent-huge-page hint (numpy asks the kernel, `madvise(MADV_HUGEPAGE)`, for
    huge pages on every large array). Where the kernel's THP mode is "madvise", the first touch of a fresh
    large array (the full-field SR image the placed stack is written into) then costs more in faulting
    huge pages in than the 4 KB pages it saves later: on the real path the placement took 0.40 s without
    the hint against 0.89 s with it, the network the same (`benchmarks/bench_hugepage.py`). Once per
    process (predictor start-up); left alone where the user chose with numpy's NUMPY_MADVISE_HUGEPAGE,
    where numpy has no such switch (a private function, guarded), or with GEMINI_CMR_NUMPY_HUGEPAGE=1.
    Returns whether the hint is off."""
    global _HUGEPAGE_HINT_OFF
    if _HUGEPAGE_HINT_OFF is not None:
        return _HUGEPAGE_HINT_OFF
    _HUGEPAGE_HINT_OFF = False
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ or os.environ.get("GEMINI_CMR_NUMPY_HUGEPAGE", "0") == "1":
        return False
    try:
        from numpy._core.multiarray import _set_madvise_hugepage

        _set_madvise_hugepage(False)
    except (ImportError, TypeError, RuntimeError):
        return False
    _HUGEPAGE_HINT_OFF = True
    log.debug("numpy's huge-page hint off")
    return True


def release_free_memory() -> bool:
    """glibc: give the heap memory freed since the last call back to the system (`malloc_trim(0)`). With
    `tune_malloc`'s trim threshold a process keeps up to 1 GiB of freed heap per arena, which the network's
    temporaries leave behind after a prediction: called once a prediction is done, it keeps that memory
    out of the peak of what follows (the next stage, or writing the outputs), at the price of mapping it
    again on the next prediction's first batch. Returns whether it ran (no-op on other C libraries, or
    with GEMINI_CMR_MALLOC=0)."""
    if os.environ.get("GEMINI_CMR_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


__all__ = ["numpy_hugepage_hint_off", "process_pool", "process_workers", "release_free_memory", "thread_workers",
           "tune_malloc"]
