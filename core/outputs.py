"""Everything that writes a result: file names, the writers, and atomic publishing of the outputs folder.

```python
from gemini_cmr.core.outputs import write_outputs
write_outputs(result, "out/DIR", mesh_formats=("stl",), all_phase_meshes=False, sr_dtype="float32")
```
`write_outputs` writes `sr_image.nii.gz`, `sr_labels.nii.gz`, `lr_labels.nii.gz`, `meshes/`, `phenotypes.json`,
`phenotypes.csv` and `run.json` (docs/pipeline.md) into a temporary folder beside `out_dir`, then moves
them into place with SIGINT/SIGTERM held: a failure, cancellation or interrupt leaves `out_dir` as it was.
The app's Export dialog writes single files with the same names and writers (`write_sr_image`, ...,
`mesh_path`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import signal
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
from typing import TYPE_CHECKING, Any

import numpy as np

from gemini_cmr.core import __version__
from gemini_cmr.core import mesh as meshlib
from gemini_cmr.core import phenotypes as phenolib
from gemini_cmr.core.errors import Cancelled, GeminiError
from gemini_cmr.core.io.atomic import atomic_path, atomic_write_text
from gemini_cmr.core.io.nifti import IMAGE_DTYPES, save_nifti
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
OUTPUT_NAMES = (SR_IMAGE, SR_LABELS, LR_LABELS, MESHES_DIR, PHENOTYPES_JSON, PHENOTYPES_CSV, RUN_JSON)


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
_GZ_CHUNK = 4 << 20
_GZ_SAMPLE = 128 << 10
#: A chunk whose sample deflates to more than this fraction of its size is stored, not deflated.
GZ_STORE_ABOVE = 0.85


def _deflate_chunk(chunk: memoryview, last: bool, level: int, store_above: float | None) -> bytes:
    if level > 0 and store_above is not None and len(chunk) > 2 * _GZ_SAMPLE:
        mid = len(chunk) // 2
        sample = chunk[mid:mid + _GZ_SAMPLE]
        if len(zlib.compress(sample, 1)) > store_above * len(sample):
            level = 0  # noise-like data (e.g. float32 mantissas): deflate would cost seconds for a few %
    co = zlib.compressobj(level, zlib.DEFLATED, -15)
    return co.compress(chunk) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def gzip_parallel(data: bytes, level: int = 1, workers: int | None = None,
                  store_above: float | None = GZ_STORE_ABOVE) -> bytes:
    """One standard gzip member compressed in parallel (pigz-style): independent raw-deflate chunks, each
    ended by a sync flush (byte aligned, not final) except the last, then the CRC-32 and size of the whole.
    Any gzip reader decodes it; zlib releases the GIL, so the chunks compress on all cores.

    Chunks that barely compress (a 128 KiB sample deflates to more than `store_above` of its size) are
    written as stored deflate blocks: the network's float32 SR image deflates by only ~10%, and storing
    it saves ~3.5 s of CPU per 100 MB. `store_above=None` deflates everything."""
    view = memoryview(data)
    n = max(1, -(-len(view) // _GZ_CHUNK))
    chunks = [view[i * _GZ_CHUNK:(i + 1) * _GZ_CHUNK] for i in range(n)]
    lasts = [i == n - 1 for i in range(n)]
    workers = workers or min(n, os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_deflate_chunk, chunks, lasts, [level] * n, [store_above] * n))
    else:
        parts = [_deflate_chunk(c, last, level, store_above) for c, last in zip(chunks, lasts)]
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, OS unknown
    trailer = struct.pack("<II", zlib.crc32(view) & 0xFFFFFFFF, len(view) & 0xFFFFFFFF)
    return b"".join([header, *parts, trailer])


def save_nifti_fast(path: Path, array: np.ndarray, affine: np.ndarray, phase_interval_ms: float | None,
                    description: str, image_dtype: str = "float32") -> Path:
    """`core.io.nifti.save_nifti` to an uncompressed .nii, then gzip it on all cores into `path` (.nii.gz).
    Same header and data as `save_nifti(path, ...)`; the large SR image is written ~cores x faster."""
    path = Path(path)
    raw = path.with_name(path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name + ".nii")
    save_nifti(raw, array, affine, phase_interval_ms, description, image_dtype)
    try:
        data = raw.read_bytes()
        with atomic_path(path) as tmp:
            tmp.write_bytes(gzip_parallel(data))
    finally:
        with contextlib.suppress(FileNotFoundError):
            raw.unlink()
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
            with contextlib.suppress(Exception):
                mod = __import__(name)
        v = getattr(mod, "__version__", None) or getattr(mod, "VTK_VERSION", None)
        if v:
            out[name] = str(v)
    return out


def run_info(result: Result, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contents of run.json: inputs, model/adapter identity, versions, device, timings."""
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
                  "roi_sr_yx": None if result.roi is None else [int(v) for v in result.roi]},
        "adapter": None
        if result.adapter_id is None
        else {"id": result.adapter_id, "hash": "sha256", "path": result.adapter_path},
        "device": result.device,
        "versions": _versions(),
        "timings_s": {k: round(float(v), 4) for k, v in result.timings.items()},
        "warnings": list(s.meta.warnings) + list(result.warnings),
    }
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


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Publish the finished temporary folder as `out_dir` (with SIGINT/SIGTERM held meanwhile).

    A missing or empty `out_dir` is replaced by one rename. An existing, non-empty `out_dir` keeps
    files that are not ours; each of our outputs replaces its old version by a rename (the old
    `meshes/` folder is swapped out whole).
    """
    with _signals_deferred():
        _move_entries(tmp, out_dir)


def _move_entries(tmp: Path, out_dir: Path) -> None:
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if not out_dir.is_dir():
        raise GeminiError("output path exists and is not a folder", out_dir)
    for entry in sorted(tmp.iterdir()):
        target = out_dir / entry.name
        if entry.is_dir():
            old = None
            if target.exists():
                old = out_dir / f".{entry.name}.old-{os.getpid()}"
                os.replace(target, old)
            os.replace(entry, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)
    shutil.rmtree(tmp, ignore_errors=True)


# --- one file each ------------------------------------------------------------------------------------------
def write_sr_image(result: Result, path: Path, sr_dtype: str = "float32") -> Path:
    """The SR image (4D NIfTI on the SR grid), gzip-compressed on all cores."""
    return save_nifti_fast(path, result.sr_image, result.sr_grid.affine, _phase_interval_ms(result),
                           "gemini-cmr SR image", sr_dtype)


def write_sr_labels(result: Result, path: Path) -> Path:
    return save_nifti(path, result.sr_labels, result.sr_grid.affine, _phase_interval_ms(result),
                      "gemini-cmr SR labels")


def write_lr_labels(result: Result, path: Path) -> Path:
    """The SR labels back on the input grid."""
    return save_nifti(path, result.lr_labels, result.study.affine, _phase_interval_ms(result),
                      "gemini-cmr SR labels on the input grid")


def write_phenotypes(result: Result, folder: Path) -> list[Path]:
    """`phenotypes.json` and `phenotypes.csv` in `folder`."""
    phenolib.write_json(result.phenotypes, folder / PHENOTYPES_JSON)
    phenolib.write_csv(result.phenotypes, folder / PHENOTYPES_CSV)
    return [folder / PHENOTYPES_JSON, folder / PHENOTYPES_CSV]


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
                cancel: Cancel | None) -> None:
    """Everything but the SR image: labels, phenotypes, meshes."""

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("writing outputs cancelled")

    write_sr_labels(result, tmp / SR_LABELS)
    write_lr_labels(result, tmp / LR_LABELS)
    check()
    write_phenotypes(result, tmp)

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
        for phase, tag in mesh_phases(result):
            if phase in meshes:
                meshlib.write_phase_meshes(meshes[phase], mdir, tag, formats)
        check()
        if all_phase_meshes:
            meshlib.write_series({p: meshes[p] for p in wanted}, mdir, formats, result.study.phase_times_ms)


def write_outputs(
    result: Result,
    out_dir: str | Path,
    mesh_formats: Iterable[str] | str = ("stl",),
    all_phase_meshes: bool = False,
    extra_info: dict[str, Any] | None = None,
    cancel: Cancel | None = None,
    sr_dtype: str = "float32",
) -> list[Path]:
    """Write every output of `result` into `out_dir` (see docs/pipeline.md); returns the written paths.

    Everything goes into a temporary folder next to `out_dir` first and is moved into place at the end:
    a failure or cancellation leaves `out_dir` as it was. `sr_dtype="int16"` stores the SR image as scaled
    16-bit integers (`core.io.nifti.save_nifti`): half the float32 file, for cohorts.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir).expanduser()
    if sr_dtype not in IMAGE_DTYPES:
        raise GeminiError(f"unknown SR image type {sr_dtype!r} (choose {' or '.join(IMAGE_DTYPES)})")
    try:
        formats = meshlib.parse_formats(mesh_formats)
    except ValueError as exc:
        raise GeminiError(str(exc)) from None
    if out_dir.exists() and not out_dir.is_dir():
        raise GeminiError("output path exists and is not a folder", out_dir)
    parent = out_dir.resolve().parent
    tmp: Path | None = None

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("writing outputs cancelled")

    try:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            with _signals_deferred():  # an interrupt cannot fall between creating `tmp` and knowing it
                tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
        except OSError as exc:
            raise GeminiError(f"cannot create the output folder ({exc.strerror or exc})", out_dir) from None
        with contextlib.suppress(OSError):
            tmp.chmod(0o755)  # mkdtemp makes it private (0700); the published outputs folder should not be
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The SR image is the largest file (gzip-bound): compress it while the rest is written.
            # Signals are held during submit(): one raised while it starts the worker thread (Thread.start
            # waits for it) would leave that thread unknown to the pool, so leaving the block would not
            # wait for it and it would write into `tmp` while `tmp` is being removed.
            with _signals_deferred():
                big = pool.submit(write_sr_image, result, tmp / SR_IMAGE, sr_dtype)
            _write_rest(result, tmp, formats, all_phase_meshes, cancel)
            big.result()
        check()
        result.timings["write"] = time.perf_counter() - t0
        info = run_info(result, {"sr_image_dtype": sr_dtype, **(extra_info or {})})
        info["outputs"] = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + [RUN_JSON]
        atomic_write_text(tmp / RUN_JSON, json.dumps(info, indent=2) + "\n")
        check()
        _move_into_place(tmp, out_dir)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote outputs to %s", out_dir)
    return sorted(p for p in out_dir.rglob("*") if p.is_file() and p.relative_to(out_dir).parts[0] in OUTPUT_NAMES)


__all__ = ["LR_LABELS", "MESHES_DIR", "MESH_FORMATS", "OUTPUT_NAMES", "PHENOTYPES_CSV", "PHENOTYPES_JSON",
           "RUN_JSON", "SR_IMAGE", "SR_LABELS", "gzip_parallel", "mesh_path", "mesh_phases", "phase_meshes",
           "run_info", "save_nifti_fast", "write_lr_labels", "write_outputs", "write_phenotypes", "write_sr_image",
           "write_sr_labels"]
