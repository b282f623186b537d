"""Everything that writes a result: file names, the writers, and safe publishing of the outputs folder.

```python
from gemini_cmr.core.outputs import check_output_folder, write_outputs
check_output_folder("out/DIR", study_path)   # before the compute: writable, no conflicts, not in the study
write_outputs(result, "out/DIR", mesh_formats=("stl",), all_phase_meshes=False, sr_dtype="auto")
```
`write_outputs` writes `sr_image.nii.gz`, `sr_labels.nii.gz`, `lr_labels.nii.gz`, `meshes/`, `phenotypes.json`,
`phenotypes.csv`, the viewers' label files (`sr_labels_ed.seg.nrrd`, `sr_labels_es.seg.nrrd`, `labels_itksnap.txt`,
`sr.itksnap`), `qc.png` (the ED and ES slices with the labels' outlines and the quality checks' verdict), with `dicom` the DICOM outputs (`dicom/sr/`, `dicom/lr_labels/`), and `run.json` (docs/pipeline.md)
into a hidden staging folder inside `out_dir`
(`.gemini-cmr.tmp-<host>-<pid>-*`: the same file system as the outputs, also when `out_dir` is a mount point
or a symbolic link), then publishes them file by file (a staged folder whose name is free, such as `dicom/`
of a first run, in one rename) with SIGINT/SIGTERM held: the old `run.json` (the commit marker) is set aside
first and the new one moved in last; an old output is kept aside until the end, so a failure while
publishing puts everything back. Only files the product writes are replaced or removed (user files in
`out_dir`, `meshes/` and `dicom/` stay; our meshes and DICOM files that this run did not write go). A
failure, cancellation or interrupt leaves `out_dir` as it was; a SIGKILLed run leaves a staging folder
without `run.json`, removed by the next write (or check) once its process is gone
(`clean_stale_temporaries`).
The app's Export dialog writes single files with the same names and writers (`write_sr_image`, ...,
`mesh_path`).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from gemini_cmr.core import __version__
from gemini_cmr.core import mesh as meshlib
from gemini_cmr.core import phenotypes as phenolib
from gemini_cmr.core import qc as qclib
from gemini_cmr.core.errors import Cancelled, GeminiError
from gemini_cmr.core.io import dicom_write, jsonio, viewer_labels
from gemini_cmr.core.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from gemini_cmr.core.io.nifti import IMAGE_DTYPES, nifti_file_parts
from gemini_cmr.core.mesh import MESH_FORMATS

if TYPE_CHECKING:
    from gemini_cmr.core.engine import Result

log = logging.getLogger(__name__)

Cancel = Callable[[], bool]

SR_IMAGE = "sr_image.nii.gz"
SR_LABELS = "sr_labels.nii.gz"
LR_LABELS = "lr_labels.nii.gz"
MESHES_DIR = "meshes"
PHENOTYPES_JSON = "phenotypes.json"
PHENOTYPES_CSV = "phenotypes.csv"
RUN_JSON = "run.json"
QC_SNAPSHOT = "qc.png"  # the review image of a run (`core.qc.snapshot`)
#: Labels for 3D Slicer (ED and ES on the SR grid) and ITK-SNAP (label descriptions; a workspace opening the
#: SR image with its labels): `core.io.viewer_labels`.
SLICER_ED = "sr_labels_ed.seg.nrrd"
SLICER_ES = "sr_labels_es.seg.nrrd"
ITKSNAP_LABELS = "labels_itksnap.txt"
ITKSNAP_WORKSPACE = "sr.itksnap"
#: DICOM outputs (`core.io.dicom_write`): the SR series with its segmentations, and the segmentations of the
#: acquired slices.
DICOM_DIR = "dicom"
DICOM_SR_DIR = "dicom/sr"
DICOM_LR_DIR = "dicom/lr_labels"
DICOM_QC_DIR = "dicom/qc"
DICOM_QC = f"{DICOM_QC_DIR}/QC.dcm"  # the review image (qc.png) as a Secondary Capture
OUTPUT_NAMES = (SR_IMAGE, SR_LABELS, LR_LABELS, MESHES_DIR, PHENOTYPES_JSON, PHENOTYPES_CSV, SLICER_ED, SLICER_ES,
                ITKSNAP_LABELS, ITKSNAP_WORKSPACE, QC_SNAPSHOT, DICOM_DIR, RUN_JSON)
OUTPUT_FOLDERS = (MESHES_DIR, DICOM_DIR)
OUTPUT_FILES = tuple(n for n in OUTPUT_NAMES if n not in OUTPUT_FOLDERS)
#: Hidden staging folders (and write probes) of this product inside an outputs folder:
#: `.gemini-cmr.tmp-<host>-<pid>-<random>`.
STAGING_PREFIX = ".gemini-cmr.tmp-"
_STAGING_RE = re.compile(r"^\.gemini-cmr\.tmp-(?P<host>.+)-(?P<pid>\d+)-[^-]*$")
_OLD_MESHES_RE = re.compile(r"^\.meshes\.old-(?P<pid>\d+)$")  # left by gemini-cmr <= 0.1 after a SIGKILL
#: Mesh files the product writes into meshes/ (`core.mesh.mesh_file_name`, `write_series`).
_MESH_FILE_RE = re.compile(r"^(ed|es|phase_\d{2,})_(lv_cavity|lv_myocardium|rv_cavity)\.(stl|obj|ply|vtp)$"
                           r"|^(lv_cavity|lv_myocardium|rv_cavity)_series\.pvd$")
#: The SR labels cut along each long-axis input's plane (`long_axis_outputs`), top level.
_LONG_AXIS_FILE_RE = re.compile(r"^la_[a-z0-9]+(_\d+)?_sr_labels\.nii\.gz$")
#: DICOM files the product writes into dicom/ (`core.io.dicom_write`).
_DICOM_FILE_RE = re.compile(r"^dicom/(sr/(MR_p\d{2,}_s\d{3,}|SEG_p\d{2,})|lr_labels/SEG_p\d{2,}(_s\d{3,})?|qc/QC)\.dcm$")
#: Legacy temporary folders beside the outputs folder (`.<name>.tmp-XXXXXXXX`, no process id): removed once
#: they are this old.
LEGACY_TMP_AGE_S = 24 * 3600


def mesh_phases(result: Result, all_phases: bool = False) -> list[tuple[int, str]]:
    """(phase, file-name prefix) of the meshes written: ED and ES ("ed", "es"), or every phase of the
    result ("phase_<tt>", the time series)."""
    if all_phases:
        return [(p, meshlib.series_prefix(p)) for p in result.phases]
    return [(result.ed_phase, "ed"), (result.es_phase, "es")]


def mesh_path(folder: Path, prefix: str, structure: str, fmt: str) -> Path:
    """`<folder>/meshes/<prefix>_<structure>.<fmt>`, as `write_outputs` names them."""
    return Path(folder) / MESHES_DIR / meshlib.mesh_file_name(prefix, structure, fmt)


# --- parallel gzip ---------------------------------------------------------------------------------------
try:  # ISA-L's deflate: the same format, 4-9x faster than zlib at level 1 (docs/performance.md)
    from isal import isal_zlib as _deflate_lib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _deflate_lib = zlib

_GZ_CHUNK = 4 << 20
_GZ_SAMPLE = 128 << 10
#: A chunk whose sample deflates to more than this fraction of its size is stored, not deflated.
GZ_STORE_ABOVE = 0.85


def _deflate_chunk(chunk: memoryview, last: bool, level: int, store_above: float | None) -> bytes:
    if level > 0 and store_above is not None and len(chunk) > 2 * _GZ_SAMPLE:
        mid = len(chunk) // 2
        sample = chunk[mid:mid + _GZ_SAMPLE]
        if len(_deflate_lib.compress(sample, 1)) > store_above * len(sample):
            level = 0  # noise-like data (e.g. float32 mantissas): deflate would cost seconds for a few %
    if level == 0:  # stored blocks (zlib: ISA-L's level 0 is a fast deflate, not storing)
        co = zlib.compressobj(0, zlib.DEFLATED, -15)
        return co.compress(chunk) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    co = _deflate_lib.compressobj(min(level, 3), _deflate_lib.DEFLATED, -15)
    return co.compress(chunk) + co.flush(_deflate_lib.Z_FINISH if last else _deflate_lib.Z_SYNC_FLUSH)


def gzip_parallel(data: bytes, level: int = 1, workers: int | None = None,
                  store_above: float | None = GZ_STORE_ABOVE, prefix: bytes = b"") -> bytes:
    """One standard gzip member of `prefix` + `data` compressed in parallel (pigz-style): independent
    raw-deflate chunks, each ended by a sync flush (byte aligned, not final) except the last, then the
    CRC-32 and size of the whole. Any gzip reader decodes it; the deflate library (ISA-L's when installed,
    else zlib; levels above 3 are ISA-L's 3) releases the GIL, so the chunks compress on all cores.

    Chunks that barely compress (a 128 KiB sample deflates to more than `store_above` of its size) are
    written as stored deflate blocks: the network's float32 SR image deflates by only ~10%, and storing
    it saves ~3.5 s of CPU per 100 MB. `store_above=None` deflates everything. `gzip_parallel_write`
    writes the same bytes into a file as they are made."""
    buf = io.BytesIO()
    gzip_parallel_write(buf, data, level, workers, store_above, prefix)
    return buf.getvalue()


def gzip_parallel_write(file: BinaryIO, data: Any, level: int = 1, workers: int | None = None,
                        store_above: float | None = GZ_STORE_ABOVE, prefix: bytes = b"") -> int:
    """`gzip_parallel(data, ...)`'s bytes written into the open binary `file` chunk by chunk, in order, with
    at most two chunks per worker in flight: neither the whole compressed member nor (for `data` with
    `nbytes` and `read(b0, b1)`, e.g. `core.io.nifti.ScaledInt16`) the whole data is ever in memory.
    `data`: a bytes-like object, or such a reader. Returns the bytes written."""
    if hasattr(data, "read") and hasattr(data, "nbytes"):
        size, read = int(data.nbytes), data.read
    else:
        view = memoryview(data).cast("B")
        size = len(view)

        def read(b0: int, b1: int) -> memoryview:
            return view[b0:b1]

    n = max(1, -(-size // _GZ_CHUNK))
    workers = max(1, min(n, workers or os.cpu_count() or 1))

    def job(i: int) -> tuple[Any, bytes]:
        raw = read(i * _GZ_CHUNK, min(size, (i + 1) * _GZ_CHUNK))
        chunk = memoryview(bytes(prefix) + raw) if i == 0 and prefix else memoryview(raw)
        return raw, _deflate_chunk(chunk, i == n - 1, level, store_above)

    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, OS unknown
    file.write(header)
    written = len(header)
    crc = zlib.crc32(prefix) if prefix else 0

    def take(raw: Any, part: bytes) -> None:
        nonlocal crc, written
        crc = zlib.crc32(raw, crc)
        file.write(part)
        written += len(part)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: collections.deque = collections.deque()
            for i in range(n):
                pending.append(pool.submit(job, i))
                if len(pending) >= 2 * workers:
                    take(*pending.popleft().result())
            while pending:
                take(*pending.popleft().result())
    else:
        for i in range(n):
            take(*job(i))
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, (len(prefix) + size) & 0xFFFFFFFF)
    file.write(trailer)
    return written + len(trailer)


def save_nifti_fast(path: Path, array: np.ndarray, affine: np.ndarray, phase_interval_ms: float | None,
                    description: str, image_dtype: str = "float32") -> Path:
    """`core.io.nifti.save_nifti`'s file (`nifti_file_parts`: the same header and data; int16 with
    `int16_scaling`), gzip-compressed on all cores into `path` (.nii.gz), atomically. Written as it is
    compressed; int16 data is converted chunk by chunk as the compression needs it (`ScaledInt16`)."""
    path = Path(path)
    header, data = nifti_file_parts(array, affine, phase_interval_ms, description, image_dtype, lazy=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        gzip_parallel_write(f, data, prefix=header)
    return path


# --- writing -----------------------------------------------------------------------------------------------
def _phase_interval_ms(result: Result) -> float | None:
    times = result.study.phase_times_ms
    if times is None or len(result.phases) < 2 or len(times) != result.study.n_phases:
        return None
    d = np.diff(np.asarray(times, dtype=np.float64)[result.phases])
    if not np.all(d > 0) or not np.allclose(d, d[0], rtol=0.05):
        return None
    return float(np.median(d))


def _versions() -> dict[str, str]:
    out = {"gemini_cmr": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "torch", "nibabel", "pyvista", "vtk"):
        mod = sys.modules.get(name)
        if mod is None:
            # VTK's version from `vtkmodules` (the same `__version__`): importing `vtk` loads every VTK module
            with contextlib.suppress(Exception):
                mod = __import__("vtkmodules" if name == "vtk" else name)
        v = getattr(mod, "__version__", None) or getattr(mod, "VTK_VERSION", None)
        if v:
            out[name] = str(v)
    return out


def input_fingerprint(path: str | Path) -> dict[str, Any] | None:
    """What identifies the contents of an input without reading it: the resolved path, and the size and
    latest modification time (ns) of the file, or the file count, total size and latest modification of a
    folder (hidden files and folders skipped). None when `path` does not exist."""
    p = Path(path).expanduser()
    try:
        real = p.resolve()
        if real.is_file():
            st = real.stat()
            return {"path": str(real), "files": 1, "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        if not real.is_dir():
            return None
        n = size = latest = 0
        for root, dirs, names in os.walk(real):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                if name.startswith("."):
                    continue
                with contextlib.suppress(OSError):
                    st = os.stat(os.path.join(root, name))
                    n, size, latest = n + 1, size + st.st_size, max(latest, st.st_mtime_ns)
        return {"path": str(real), "files": n, "size_bytes": size, "mtime_ns": latest}
    except OSError:
        return None


def run_info(result: Result, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contents of run.json: inputs (with `input_fingerprint`), model/adapter identity, versions,
    device, timings, warnings (the study's, then the result's), the phenotypes' plausibility and flags, and the
    automatic quality checks of the labels (`core.qc`)."""
    s = result.study
    info: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {
            "path": s.meta.source_path,
            "format": s.meta.format,
            "shape": list(s.image.shape),
            "spacing_mm": [float(v) for v in s.spacing],
            "affine": [[float(v) for v in row] for row in s.affine],
        },
        "sr_grid": {
            "shape": list(result.sr_grid.shape),
            "spacing_mm": [float(v) for v in result.sr_grid.spacing],
            "affine": [[float(v) for v in row] for row in result.sr_grid.affine],
        },
        "phases": list(result.phases),
        "ed_phase": result.ed_phase,
        "es_phase": result.es_phase,
        "model": {"id": result.model_id, "hash": "sha256", "path": result.model_path,
                  "choice": result.model_choice,
                  "roi_sr_yx": None if result.roi is None else [int(v) for v in result.roi],
                  "network_roi_sr_yx": None if getattr(result, "net_roi", None) is None
                  else [int(v) for v in result.net_roi],
                  "tta": result.tta},
        "adapter": None
        if result.adapter_id is None
        else {"id": result.adapter_id, "hash": "sha256", "path": result.adapter_path},
        "device": result.device,
        "versions": _versions(),
        "timings_s": {k: round(float(v), 4) for k, v in result.timings.items()},
        "warnings": list(s.meta.warnings) + list(result.warnings),
        "phenotypes": {"plausible": result.phenotypes.get("plausible"),
                       "flags": dict(result.phenotypes.get("flags") or {})},
        "motion_correction": motion_info(result),
        "long_axis": long_axis_info(result),
        "quality_checks": getattr(result, "qc", None),
    }
    fp = input_fingerprint(s.meta.source_path) if s.meta.source_path else None
    if fp is not None:
        info["input"]["fingerprint"] = fp
    if extra:
        info.update(extra)
    return info


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM during a short critical section (creating the temporary folder, renaming the
    outputs into place), so an interrupt cannot leave a mix of old and new outputs or an unknown temporary
    folder; a signal that arrived meanwhile is handed to the previous handler right after.

    Python runs signal handlers in the main thread only (a signal mask would not do: torch's threads
    would take the signal), so elsewhere (the app's worker threads) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if pending:
            handler = old.get(pending[0])
            if callable(handler):
                handler(pending[0], None)
            else:
                signal.raise_signal(pending[0])


# --- checks before the compute ------------------------------------------------------------------------------
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname() or "host") or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its files alone
    return True


def os_error_text(exc: OSError) -> str:
    """A short, one-line reason for an OSError (no errno numbers, no paths)."""
    known = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.EDQUOT: "disk quota exceeded", errno.EISDIR: "a folder is in the way",
             errno.ENOTDIR: "a file is in the way", errno.EIO: "input/output error"}
    return known.get(exc.errno or -1) or " ".join(str(exc.strerror or exc).split()) or type(exc).__name__


def clean_stale_temporaries(out_dir: str | Path) -> list[Path]:
    """Remove what interrupted runs of this product left: staging folders and probes inside `out_dir`
    whose process (on this host) is gone, `.meshes.old-<pid>` folders of dead processes, and legacy
    `.<name>.tmp-*` folders beside `out_dir` older than a day. Returns what was removed; never raises."""
    out_dir = Path(out_dir)
    removed: list[Path] = []
    host = _host()

    def drop(p: Path) -> None:
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)

    with contextlib.suppress(OSError):
        if out_dir.is_dir():
            for p in out_dir.iterdir():
                m = _STAGING_RE.match(p.name)
                if m and m["host"] == host and not _pid_alive(int(m["pid"])):
                    drop(p)
                m = _OLD_MESHES_RE.match(p.name)
                if m and not _pid_alive(int(m["pid"])):
                    drop(p)
    with contextlib.suppress(OSError):
        parent = out_dir.absolute().parent
        legacy = re.compile(rf"^\.{re.escape(out_dir.name)}\.tmp-[A-Za-z0-9_]{{8}}$")
        now = time.time()
        for p in parent.iterdir():
            if legacy.match(p.name) and p.is_dir() and now - p.stat().st_mtime > LEGACY_TMP_AGE_S:
                drop(p)
    for p in removed:
        log.info("removed a temporary folder left by an interrupted run: %s", p)
    return removed


def _study_folder(study_path: str | Path | None) -> Path | None:
    """The folder a later read of `study_path` looks through: the study folder itself, or the folder of a
    DICOM file (the loader reads its whole folder); None for NIfTI files, zips and non-paths."""
    if not study_path:
        return None
    p = Path(study_path).expanduser()
    try:
        if p.is_dir():
            return p.resolve()
        if p.is_file() and not p.name.lower().endswith((".nii", ".nii.gz", ".zip", ".gz")):
            return p.resolve().parent
    except OSError:
        return None
    return None


#: `sr_dtype` choices of `write_outputs`: "auto" is int16 for real studies, float32 for phantoms.
SR_DTYPES = ("auto", *IMAGE_DTYPES)


def resolve_sr_dtype(study: Any, sr_dtype: str = "auto") -> str:
    """The SR image's storage type: "auto" -> "int16" for real studies (scaled 16-bit integers, values
    within half a step of range / 65534: half the file, written faster), "float32" for phantom studies
    (`core.resources.is_phantom_study`: their HR truth is compared with the float image)."""
    if sr_dtype != "auto":
        return sr_dtype
    from gemini_cmr.core.resources import is_phantom_study

    return "float32" if is_phantom_study(study) else "int16"


def estimate_output_bytes(study: Any, n_phases: int | None = None, sr_dtype: str = "float32",
                          dicom: bool = False, dicom_compression: str = "jpeg-ls") -> int:
    """About how many bytes `write_outputs` needs at its peak for `study`: the SR image twice (its raw .nii
    and the .gz beside it, briefly; the .gz is stored almost uncompressed), compressed labels, meshes; with
    `dicom`, the SR series (JPEG-LS: about 0.8 bytes per voxel; uncompressed 2) and its 1-bit segmentations.
    Checked against the free space before the compute."""
    from gemini_cmr.core.geometry import sr_grid

    n = int(n_phases or study.n_phases)
    voxels = int(np.prod(sr_grid(study.grid).shape))
    sr_dtype = resolve_sr_dtype(study, sr_dtype)
    per_voxel = 2 * (2 if sr_dtype == "int16" else 4) + 0.3  # image (raw + gz) + compressed labels
    lr_voxels = int(np.prod(study.image.shape[1:]))
    if dicom:
        per_voxel += (1.2 if dicom_compression == "jpeg-ls" else 2.1) + 0.4
    return int(n * voxels * per_voxel + n * lr_voxels * (0.6 if dicom else 0.2) + (8 << 20))


def check_output_folder(out_dir: str | Path, study_path: str | Path | None = None,
                        need_bytes: int | None = None) -> Path:
    """Check, before any compute, that the outputs can be written to `out_dir`; changes nothing there
    (apart from removing stale temporaries, `clean_stale_temporaries`). Raises `GeminiError` (one line,
    naming the path) when: `out_dir` is a file or a broken link; an output file name inside it is a folder
    (or `meshes` a file); it lies inside the study's folder (the next read of the study would find the
    outputs); it (or, when missing, its nearest existing parent) cannot be written; less than `need_bytes`
    are free there. Returns `out_dir` with `~` expanded."""
    out = Path(out_dir).expanduser()
    if out.is_symlink() and not out.exists():
        raise GeminiError("the output path is a broken symbolic link", out)
    if out.exists() and not out.is_dir():
        raise GeminiError("output path exists and is not a folder", out)
    folder = _study_folder(study_path)
    if folder is not None:
        real = out.resolve()
        if real == folder or folder in real.parents:
            raise GeminiError(f"the output folder is inside the study folder {folder}: reading the study again "
                              "would find the outputs; choose an output folder outside it", out)
    if out.is_dir():
        for name in OUTPUT_FILES:
            if (out / name).is_dir():
                raise GeminiError("an output file name is taken by a folder; move it away or choose another "
                                  "output folder", out / name)
        meshes = out / MESHES_DIR
        if (meshes.exists() or meshes.is_symlink()) and not meshes.is_dir():
            raise GeminiError("the meshes folder's name is taken by a file; move it away or choose another "
                              "output folder", meshes)
        for sub in (DICOM_DIR, DICOM_SR_DIR, DICOM_LR_DIR):
            d = out / sub
            if (d.exists() or d.is_symlink()) and not d.is_dir():
                raise GeminiError("the name of a DICOM output folder is taken by a file; move it away or choose "
                                  "another output folder", d)
    base = out
    while not base.exists():
        if base.is_symlink():
            raise GeminiError("the output path goes through a broken symbolic link", base)
        if base.parent == base:
            break
        base = base.parent
    if not base.is_dir():
        raise GeminiError("cannot create the output folder: a file is in the way", base)
    try:
        with _signals_deferred():
            fd, probe = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=base)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise GeminiError(f"cannot write to the output folder ({os_error_text(exc)})",
                          out if base == out else base) from None
    if need_bytes:
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(base).free
            if free < need_bytes:
                raise GeminiError(f"not enough free space for the outputs: about {need_bytes / 1e6:.0f} MB "
                                  f"needed, {free / 1e6:.0f} MB free", base)
    clean_stale_temporaries(out)
    return out


# --- publishing -----------------------------------------------------------------------------------------------
def _staged_files(staging: Path) -> list[Path]:
    """The staged outputs, relative to `staging`, in publishing order: run.json last."""
    found: list[tuple[str, ...]] = []

    def walk(folder: str, rel: tuple[str, ...]) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not rel and entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, (*rel, entry.name))
                else:
                    found.append((*rel, entry.name))

    walk(os.fspath(staging), ())
    found.sort()
    last = [f for f in found if f == (RUN_JSON,)]
    return [Path(*f) for f in found if f != (RUN_JSON,)] + [Path(*f) for f in last]


def _publish(staging: Path, out_dir: Path, files: list[Path] | None = None) -> None:
    """Move the staged outputs (`files`, `_staged_files(staging)` when None) into `out_dir` (the same file
    system) with SIGINT/SIGTERM held. A staged folder whose name is free in `out_dir` moves in whole (one
    rename for the hundreds of DICOM files of a first run).

    Order: the old run.json is set aside (the folder stops looking complete), each output replaces its old
    version (kept aside in `staging/.replaced`), old meshes of ours that this run did not write are set
    aside too, and the new run.json lands last. Any error puts everything back as it was, then raises.
    Files that are not the product's are never touched."""
    with _signals_deferred():
        _publish_entries(staging, out_dir, files)


def _whole_folders(files: list[Path], out_dir: Path) -> set[Path]:
    """The outermost staged folders (relative) whose names are free in `out_dir`: each moves in with one
    rename."""
    whole: set[Path] = set()
    seen: set[Path] = set()
    for rel in files:
        for parent in reversed(list(rel.parents)[:-1]):
            if parent in seen:
                if parent in whole:
                    break
                continue
            seen.add(parent)
            if not os.path.lexists(out_dir / parent):
                whole.add(parent)
                break
    return whole


def _publish_entries(staging: Path, out_dir: Path, files: list[Path] | None = None) -> None:
    files = _staged_files(staging) if files is None else files
    whole = _whole_folders(files, out_dir)
    checked: set[Path] = set()
    for rel in files:  # conflicts first: nothing moves unless everything can
        parents = list(rel.parents)[:-1]
        if whole.intersection(parents):
            continue
        target = out_dir / rel
        if target.is_dir() and not target.is_symlink():
            raise GeminiError("an output file name is taken by a folder; move it away", target)
        for parent in parents:
            if parent in checked:
                continue
            checked.add(parent)
            d = out_dir / parent
            if (d.exists() or d.is_symlink()) and not d.is_dir():
                what = "the meshes folder's name" if parent == Path(MESHES_DIR) else "an output folder's name"
                raise GeminiError(f"{what} is taken by a file; move it away", d)
    backup = staging / ".replaced"
    backup.mkdir(exist_ok=True)
    undo: list[tuple[Path, Path]] = []  # (moved from, moved to), in order
    made: list[Path] = []

    def move(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        undo.append((src, dst))

    try:
        old_run = out_dir / RUN_JSON
        if old_run.exists() or old_run.is_symlink():
            move(old_run, backup / RUN_JSON)
        new = set(files)
        for folder in sorted(whole):
            move(staging / folder, out_dir / folder)
        for rel in files:
            if rel == Path(RUN_JSON) or whole.intersection(rel.parents):
                continue
            target = out_dir / rel
            for parent in reversed(list(rel.parents)[:-1]):
                d = out_dir / parent
                if not d.exists():
                    d.mkdir()
                    made.append(d)
            if target.exists() or target.is_symlink():
                move(target, backup / rel)
            move(staging / rel, target)
        meshes = out_dir / MESHES_DIR
        if (staging / MESHES_DIR).is_dir() and not (meshes.exists() or meshes.is_symlink()):
            meshes.mkdir()  # also when no structure was found: the folder is part of the outputs
            made.append(meshes)
        if meshes.is_dir() and not meshes.is_symlink() and Path(MESHES_DIR) not in whole:
            for p in sorted(meshes.iterdir()):
                rel = p.relative_to(out_dir)
                if rel not in new and _MESH_FILE_RE.match(p.name) and (p.is_file() or p.is_symlink()):
                    move(p, backup / rel)  # a mesh of an earlier run that this run did not write
        for p in sorted(out_dir.iterdir()):
            rel = p.relative_to(out_dir)
            if rel not in new and _LONG_AXIS_FILE_RE.match(p.name) and (p.is_file() or p.is_symlink()):
                move(p, backup / rel)  # a long-axis cut of an earlier run that this run did not write
        for sub in (DICOM_SR_DIR, DICOM_LR_DIR, DICOM_QC_DIR):
            d = out_dir / sub
            if whole.intersection([Path(sub), *Path(sub).parents]):
                continue  # moved in whole: only this run's files
            if d.is_dir() and not d.is_symlink() and not (out_dir / DICOM_DIR).is_symlink():
                for p in sorted(d.iterdir()):
                    rel = p.relative_to(out_dir)
                    if rel not in new and _DICOM_FILE_RE.match(rel.as_posix()) and (p.is_file() or p.is_symlink()):
                        move(p, backup / rel)  # a DICOM file of an earlier run that this run did not write
        move(staging / RUN_JSON, out_dir / RUN_JSON)
    except BaseException:
        for src, dst in reversed(undo):
            with contextlib.suppress(OSError):
                os.replace(dst, src)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    for sub in (DICOM_SR_DIR, DICOM_LR_DIR, DICOM_QC_DIR, DICOM_DIR):  # emptied by a run without DICOM outputs
        with contextlib.suppress(OSError):
            d = out_dir / sub
            if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
    with contextlib.suppress(OSError):
        fd = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- one file each ------------------------------------------------------------------------------------------
def write_sr_image(result: Result, path: Path, sr_dtype: str = "auto") -> Path:
    """The SR image (4D NIfTI on the SR grid), gzip-compressed on all cores; "auto": `resolve_sr_dtype`."""
    return save_nifti_fast(path, result.sr_image, result.sr_grid.affine, _phase_interval_ms(result),
                           "gemini-cmr SR image", resolve_sr_dtype(result.study, sr_dtype))


def write_sr_labels(result: Result, path: Path) -> Path:
    return save_nifti_fast(path, result.sr_labels, result.sr_grid.affine, _phase_interval_ms(result),
                           "gemini-cmr SR labels")


def write_lr_labels(result: Result, path: Path) -> Path:
    """The SR labels back on the input grid."""
    return save_nifti_fast(path, result.lr_labels, result.study.affine, _phase_interval_ms(result),
                           "gemini-cmr SR labels on the input grid")


def long_axis_outputs(result: Result) -> list[tuple[Any, str]]:
    """(long-axis input, file name) of each used long-axis input of a result: `la_<view>_sr_labels.nii.gz`
    (`_2`, `_3`, ... for a view given twice)."""
    out, seen = [], {}
    for item in getattr(result, "long_axis", None) or []:
        if not item.used or item.sr_labels is None:
            continue
        view = re.sub(r"[^a-z0-9]", "", item.view.lower()) or "la"
        seen[view] = seen.get(view, 0) + 1
        out.append((item, f"la_{view}{'' if seen[view] == 1 else f'_{seen[view]}'}_sr_labels.nii.gz"))
    return out


def write_long_axis_labels(result: Result, folder: Path) -> list[Path]:
    """The SR labels at ED and ES cut along each used long-axis input's plane, on its grid (4D NIfTI
    (x, y, 1, phase), the phases in `run.json` `long_axis[].output_phases`); sets each input's `output`."""
    paths = []
    for item, name in long_axis_outputs(result):
        save_nifti_fast(folder / name, item.sr_labels[:, None], item.cine.affine, None,
                        f"gemini-cmr SR labels on {item.view}")
        item.output = name
        paths.append(folder / name)
    return paths


def long_axis_info(result: Result) -> list[dict[str, Any]]:
    """run.json's `long_axis`: each long-axis input, used or ignored (why), and its output."""
    return [item.to_json() for item in getattr(result, "long_axis", None) or []]


def motion_info(result: Result) -> dict[str, Any]:
    """The slice misalignment correction of a result (`core.motion.MotionEstimate.to_json`, `enabled`)."""
    motion = getattr(result, "motion", None)
    if motion is None:
        return {"enabled": False, "applied": False}
    return {"enabled": True, **motion.to_json()}


def qc_image(result: Result) -> np.ndarray:
    """The run's review image (`core.qc.snapshot`): its ED and ES acquired slices with the labels' outlines,
    titled with the study and the quality checks' verdict."""
    s = result.study
    title = s.meta.patient_id or Path(s.meta.source_path or "study").name
    return qclib.snapshot(s.image, result.lr_labels, result.phases, result.ed_phase, result.es_phase,
                          s.grid.spacing[1::-1], title, getattr(result, "qc", None))


def write_qc_snapshot(result: Result, path: Path, image: np.ndarray | None = None) -> Path:
    """`qc.png` (`image`, default `qc_image(result)`); PNG written to a temporary file and renamed."""
    from PIL import Image

    img = qc_image(result) if image is None else image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=3)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_phenotypes(result: Result, folder: Path) -> list[Path]:
    """`phenotypes.json` (with `provenance`: the slice misalignment correction and the quality checks'
    verdict) and `phenotypes.csv`."""
    qc = getattr(result, "qc", None)
    provenance = {"motion_correction": motion_info(result),
                  "quality_checks": None if qc is None else {"passed": qc["passed"], "failed": list(qc["failed"])}}
    phenolib.write_json({**result.phenotypes, "provenance": provenance}, folder / PHENOTYPES_JSON)
    phenolib.write_csv(result.phenotypes, folder / PHENOTYPES_CSV)
    return [folder / PHENOTYPES_JSON, folder / PHENOTYPES_CSV]


def slicer_phases(result: Result) -> list[tuple[int, str]]:
    """(phase, file name) of the 3D Slicer segmentations: ED and ES, when they were super-resolved."""
    return [(p, name) for p, name in ((result.ed_phase, SLICER_ED), (result.es_phase, SLICER_ES))
            if p in result.phases]


def write_slicer_phase(result: Result, phase: int, path: Path) -> Path:
    """One phase of the SR labels as a 3D Slicer segmentation (names, colours, SNOMED CT terminology)."""
    return viewer_labels.write_slicer_seg(path, result.sr_labels[result.phase_row(phase)], result.sr_grid)


def write_slicer_labels(result: Result, folder: Path) -> list[Path]:
    """`sr_labels_ed.seg.nrrd` and `sr_labels_es.seg.nrrd` in `folder` (`slicer_phases`)."""
    return [write_slicer_phase(result, phase, folder / name) for phase, name in slicer_phases(result)]


def write_itksnap_labels(path: Path) -> Path:
    """`labels_itksnap.txt`: ITK-SNAP label descriptions of sr_labels/lr_labels (names and colours)."""
    return viewer_labels.write_itksnap_labels(path)


def write_itksnap_workspace(path: Path, save_location: Path | None = None) -> Path:
    """`sr.itksnap`: an ITK-SNAP workspace opening sr_image.nii.gz with sr_labels.nii.gz and the structures'
    names and colours; its paths are those of `save_location` (the folder it is published to; default the
    workspace's folder)."""
    where = Path(save_location or Path(path).parent).absolute()
    return viewer_labels.write_itksnap_workspace(path, where, SR_IMAGE, SR_LABELS)


def write_itksnap_files(folder: Path, save_location: Path | None = None) -> list[Path]:
    return [write_itksnap_labels(folder / ITKSNAP_LABELS),
            write_itksnap_workspace(folder / ITKSNAP_WORKSPACE, save_location)]


def model_name(result: Result) -> str:
    """The model's name: its folder (`resources/models/<name>/model.safetensors`) or file stem."""
    if not result.model_path:
        return "gemini-gan"
    p = Path(result.model_path)
    return p.parent.name if p.name == "model.safetensors" else (p.stem or p.name)


def dicom_wanted(result: Result, dicom: bool | None) -> bool:
    """`dicom` as asked; None: on when the input was read from DICOM."""
    return result.study.meta.dicom is not None if dicom is None else bool(dicom)


def write_dicom(result: Result, folder: Path, compression: str = "jpeg-ls",
                cancel: Cancel | None = None, atomic: bool = True, qc_rgb: np.ndarray | None = None) -> dict[str, Any]:
    """The DICOM outputs in `folder`: `dicom/sr/` (the SR series, `MR_pPP_sSSS.dcm`, and its segmentations,
    `SEG_pPP.dcm`), `dicom/lr_labels/` (segmentations of the acquired images, `SEG_pPP.dcm`; DICOM input
    only) and `dicom/qc/QC.dcm` (the review image, `qc.png`, as a Secondary Capture). Returns what run.json records of them (UIDs, transfer syntax, files, bytes, seconds). `atomic`
    False: the SR instances are written straight (`folder` is a staging folder published whole)."""
    return _write_dicom(result, folder, compression, cancel, atomic, qc_rgb)[0]


def _write_dicom(result: Result, folder: Path, compression: str,
                 cancel: Cancel | None, atomic: bool = True, qc_rgb: np.ndarray | None = None) -> tuple[dict[str, Any], list[Path]]:
    t0 = time.perf_counter()
    study = result.study
    ctx = dicom_write.dicom_context(study, model_name(result), result.model_id, __version__)
    ident = None if ctx.new_study else study.meta.dicom
    times = study.phase_times_ms
    if times is not None and len(times) != study.n_phases:
        times = None
    sr_dir, lr_dir = folder / DICOM_SR_DIR, folder / DICOM_LR_DIR
    headers = dicom_write.write_sr_series(
        sr_dir, result.sr_image, result.sr_grid, result.phases, times, ctx, compression,
        source_grid=study.grid if ident is not None else None,
        source_uids=ident.sop_instance_uids if ident is not None else None, cancel=cancel, atomic=atomic,
        source_frames=ident.frame_numbers if ident is not None else None,
        source_class=ident.sop_class_uid if ident is not None else "")
    paths = sorted(sr_dir.glob("MR_*.dcm"))
    paths += dicom_write.write_segmentations(sr_dir, result.sr_labels, headers, result.phases, ctx, "sr_labels",
                                             cancel)
    sources = dicom_write.source_images(study, result.phases, ctx)
    notes = []
    if sources is not None:
        paths += dicom_write.write_segmentations(lr_dir, result.lr_labels, sources, result.phases, ctx,
                                                 "lr_labels", cancel)
    elif ident is not None and ident.frame_numbers is not None:
        notes.append("no segmentation on the acquired slices: they are frames of multi-frame (enhanced) images; "
                     "the SR segmentation and the label files cover them")
    paths.append(dicom_write.write_quality_capture(folder / DICOM_QC, qc_image(result) if qc_rgb is None else qc_rgb,
                                                   ctx, atomic=atomic))
    seconds = time.perf_counter() - t0
    result.timings["write_dicom"] = seconds
    return {
        "study_instance_uid": ctx.study_uid,
        "frame_of_reference_uid": ctx.frame_of_reference_uid,
        "new_study": ctx.new_study,
        "series_instance_uids": dict(ctx.series_uids),
        "transfer_syntax": str(dicom_write.COMPRESSIONS[compression]),
        "files": len(paths),
        "bytes": dicom_write.file_bytes(paths),
        "seconds": round(seconds, 3),
        **({"notes": notes} if notes else {}),
    }, paths


def export_dicom(result: Result, folder: Path, compression: str = "jpeg-ls",
                 cancel: Cancel | None = None) -> dict[str, Any]:
    """`write_dicom` straight into `folder` (the app's Export: each file atomically), then our DICOM files
    there that it did not write (an earlier export with other phases) are removed; other files stay."""
    folder = Path(folder)
    before = {p for sub in (DICOM_SR_DIR, DICOM_LR_DIR, DICOM_QC_DIR) if (folder / sub).is_dir()
              for p in (folder / sub).iterdir()}
    info, paths = _write_dicom(result, folder, compression, cancel)
    for p in sorted(before - set(paths)):
        if _DICOM_FILE_RE.match(p.relative_to(folder).as_posix()) and p.is_file():
            p.unlink()
    return info


def phase_meshes(result: Result, phase: int, cancel: Cancel | None = None) -> dict[str, Any]:
    """The surfaces of one phase: the engine's when it made them, else built now (`core.mesh`)."""
    meshes = result.meshes.get(phase)
    if meshes is None:
        t = time.perf_counter()
        meshes = meshlib.phase_surfaces(result.sr_labels, result.sr_grid, result.phases, [phase],
                                        cancel=cancel)[phase]
        result.timings["meshes"] = result.timings.get("meshes", 0.0) + time.perf_counter() - t
    return meshes


def _write_rest(result: Result, tmp: Path, formats: list[str], all_phase_meshes: bool,
                cancel: Cancel | None, reserved: Callable[[], int] = lambda: 0,
                save_location: Path | None = None, qc_rgb: np.ndarray | None = None) -> None:
    """Everything but the SR image and the DICOM outputs: labels (NIfTI, Slicer, ITK-SNAP), phenotypes, qc.png,
    meshes. `save_location` is where the files will be published (the ITK-SNAP workspace's paths)."""

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("writing outputs cancelled")

    write_sr_labels(result, tmp / SR_LABELS)
    write_lr_labels(result, tmp / LR_LABELS)
    check()
    write_phenotypes(result, tmp)
    write_long_axis_labels(result, tmp)
    write_slicer_labels(result, tmp)
    write_itksnap_files(tmp, save_location or tmp)
    write_qc_snapshot(result, tmp / QC_SNAPSHOT, qc_rgb)

    meshes = dict(result.meshes)
    wanted = sorted(set(result.phases) if all_phase_meshes else {result.ed_phase, result.es_phase})
    missing = [p for p in wanted if p not in meshes and p in result.phases]
    if missing:
        t = time.perf_counter()
        meshes.update(meshlib.phase_surfaces(result.sr_labels, result.sr_grid, result.phases, missing,
                                             cancel=cancel))
        result.timings["meshes"] = result.timings.get("meshes", 0.0) + time.perf_counter() - t
    mdir = tmp / MESHES_DIR
    mdir.mkdir()
    if formats:
        with _vtk_quiet():
            _write_meshes(result, meshes, mdir, formats, all_phase_meshes, wanted, check, reserved)


@contextlib.contextmanager
def _vtk_quiet():
    """No VTK error dump on stderr while writing meshes: a failing writer raises an OSError (pyvista),
    which `write_outputs` turns into its one-line message."""
    try:
        from vtkmodules.vtkCommonCore import vtkObject
    except ImportError:
        yield
        return
    old = vtkObject.GetGlobalWarningDisplay()
    vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtkObject.SetGlobalWarningDisplay(old)


#: Upper bounds of mesh file sizes, in units of (12 x points + 16 x triangles) bytes (measured: STL 2.27,
#: PLY 1.14, VTP 2.05, OBJ 4.2-4.4).
_MESH_BYTES = {"stl": 2.5, "ply": 1.5, "vtp": 2.5, "obj": 6.0}


def _mesh_bytes(meshes: dict[str, Any], formats: Iterable[str]) -> int:
    total = 0.0
    for mesh in meshes.values():
        tri = mesh.n_cells if getattr(mesh, "is_all_triangles", True) else 4 * mesh.n_cells
        total += sum(_MESH_BYTES.get(f, 6.0) for f in formats) * (12 * mesh.n_points + 16 * tri) + 4096
    return int(total)


def _ensure_space(folder: Path, need: int, reserved: Callable[[], int]) -> None:
    """Raise ENOSPC before writing `need` bytes into `folder` when the file system has no room for them
    (and for what the SR image writer still has to write): VTK's XML writer crashes the process (a
    segmentation fault) when the disk fills up under it, instead of failing."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need + reserved() + (1 << 20):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))


def _write_meshes(result: Result, meshes: dict, mdir: Path, formats: list[str], all_phase_meshes: bool,
                  wanted: list[int], check: Callable[[], None], reserved: Callable[[], int] = lambda: 0) -> None:
    if formats:
        for phase, tag in mesh_phases(result):
            if phase in meshes:
                _ensure_space(mdir, _mesh_bytes(meshes[phase], formats), reserved)
                meshlib.write_phase_meshes(meshes[phase], mdir, tag, formats)
        check()
        if all_phase_meshes:
            series = {p: meshes[p] for p in wanted}
            need = sum(_mesh_bytes(m, list(dict.fromkeys([*formats, "vtp"]))) for m in series.values())
            _ensure_space(mdir, need, reserved)
            meshlib.write_series(series, mdir, formats, result.study.phase_times_ms)


def write_outputs(
    result: Result,
    out_dir: str | Path,
    mesh_formats: Iterable[str] | str = ("stl",),
    all_phase_meshes: bool = False,
    extra_info: dict[str, Any] | None = None,
    cancel: Cancel | None = None,
    sr_dtype: str = "auto",
    dicom: bool | None = None,
    dicom_compression: str = "jpeg-ls",
) -> list[Path]:
    """Write every output of `result` into `out_dir` (see docs/pipeline.md); returns the written paths.

    Everything goes into a staging folder inside `out_dir` first and is published file by file (a folder
    new to `out_dir` whole) at the end, run.json last (module docstring): a failure or cancellation leaves
    `out_dir` as it was (a missing `out_dir`, and the parents created for it, are removed again). OS errors (disk full, read-only, ...)
    become a one-line `GeminiError`. `sr_dtype="int16"` stores the SR image as scaled 16-bit integers
    (`core.io.nifti.nifti_file_parts`): half the float32 file; "auto" (`resolve_sr_dtype`): int16 for
    real studies, float32 for phantoms. `dicom` adds the DICOM outputs
    (`write_dicom`; None: when the input was DICOM), with the SR series compressed as `dicom_compression`
    ("jpeg-ls", lossless, or "none").
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir).expanduser()
    if sr_dtype not in SR_DTYPES:
        raise GeminiError(f"unknown SR image type {sr_dtype!r} (choose {', '.join(SR_DTYPES[:-1])} or "
                          f"{SR_DTYPES[-1]})")
    sr_dtype = resolve_sr_dtype(result.study, sr_dtype)
    try:
        formats = meshlib.parse_formats(mesh_formats)
    except ValueError as exc:
        raise GeminiError(str(exc)) from None
    if dicom_compression not in dicom_write.COMPRESSIONS:
        raise GeminiError(f"unknown DICOM compression {dicom_compression!r} (choose "
                          f"{' or '.join(dicom_write.COMPRESSIONS)})")
    with_dicom = dicom_wanted(result, dicom)
    check_output_folder(out_dir, result.study.meta.source_path)
    real = out_dir.resolve()  # through symbolic links: staging and outputs on the one file system
    staging: Path | None = None
    made: list[Path] = []

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("writing outputs cancelled")

    try:
        try:
            # An interrupt cannot fall between creating a folder and knowing it.
            with _signals_deferred():
                missing = []
                d = real
                while not d.exists():
                    missing.append(d)
                    d = d.parent
                for d in reversed(missing):
                    d.mkdir()
                    made.append(d)
                staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=real))
        except OSError as exc:
            raise GeminiError(f"cannot create the output folder ({os_error_text(exc)})", out_dir) from None
        with contextlib.suppress(OSError):
            staging.chmod(0o755)  # mkdtemp makes it private (0700)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                # The SR image is the largest file (gzip-bound): compress it while the rest is written.
                # Signals are held during submit(): one raised while it starts the worker thread
                # (Thread.start waits for it) would leave that thread unknown to the pool, so leaving the
                # block would not wait for it and it would write into `staging` while it is being removed.
                with _signals_deferred():
                    big = pool.submit(write_sr_image, result, staging / SR_IMAGE, sr_dtype)
                # While it runs, the image needs up to its raw size twice (the .nii, then the .gz beside it).
                sr_bytes = 2 * result.sr_image.size * (2 if sr_dtype == "int16" else 4)
                qc_rgb = qc_image(result)  # qc.png, and the DICOM outputs' Secondary Capture
                _write_rest(result, staging, formats, all_phase_meshes, cancel,
                            reserved=lambda: 0 if big.done() else sr_bytes, save_location=real, qc_rgb=qc_rgb)
                dicom_info = (write_dicom(result, staging, dicom_compression, cancel, atomic=False, qc_rgb=qc_rgb)
                              if with_dicom else None)
                big.result()
            check()
            result.timings["write"] = time.perf_counter() - t0
            info = run_info(result, {"sr_image_dtype": sr_dtype, "dicom": dicom_info, **(extra_info or {})})
            written = [p for p in _staged_files(staging) if p != Path(RUN_JSON)] + [Path(RUN_JSON)]
            info["outputs"] = [str(p) for p in written]
            atomic_write_text(staging / RUN_JSON, json.dumps(jsonio.jsonable(info), indent=2,
                                                             allow_nan=False) + "\n")
            check()
            _publish(staging, real, written)
        except OSError as exc:
            where = Path(exc.filename) if getattr(exc, "filename", None) else out_dir
            if staging is not None and staging in where.parents:
                where = out_dir
            reason = os_error_text(exc)
            if exc.errno is None:  # pyvista: "VTK writer failed to write file: <path>" (no errno)
                reason = "a mesh writer failed; is the disk full?" if "VTK" in str(exc) else "a writer failed"
            raise GeminiError(f"cannot write the outputs ({reason})", where) from None
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote outputs to %s", out_dir)
    return sorted(out_dir / rel for rel in written)


__all__ = ["DICOM_DIR", "DICOM_LR_DIR", "DICOM_QC", "DICOM_QC_DIR", "DICOM_SR_DIR", "ITKSNAP_LABELS", "ITKSNAP_WORKSPACE", "LR_LABELS",
           "MESHES_DIR", "MESH_FORMATS", "OUTPUT_FILES", "OUTPUT_FOLDERS", "OUTPUT_NAMES", "SLICER_ED", "SLICER_ES",
           "QC_SNAPSHOT", "SR_DTYPES", "STAGING_PREFIX", "check_output_folder", "long_axis_info", "long_axis_outputs",
           "write_long_axis_labels", "clean_stale_temporaries", "dicom_wanted",
           "estimate_output_bytes", "input_fingerprint", "model_name", "os_error_text", "PHENOTYPES_CSV",
           "PHENOTYPES_JSON", "RUN_JSON", "SR_IMAGE", "SR_LABELS", "gzip_parallel", "gzip_parallel_write", "mesh_path", "mesh_phases",
           "phase_meshes", "resolve_sr_dtype", "run_info", "save_nifti_fast", "export_dicom", "slicer_phases", "write_dicom", "write_itksnap_files",
           "write_itksnap_labels", "write_itksnap_workspace", "write_lr_labels", "write_slicer_phase",
           "write_outputs", "write_phenotypes", "qc_image", "write_qc_snapshot", "write_slicer_labels", "write_sr_image", "write_sr_labels"]
