"""The end-to-end engine shared by the CLI and the app: study -> (V-AMA) -> Gemini-GAN -> results.

```python
from gemini_cmr.core.engine import SuperResolver, write_outputs
sr = SuperResolver(model=None, adapter=None, device="auto")   # loads the model (and adapter) once
result = sr.run(study, phases="all", meshes="ed_es", progress=cb, cancel=cb)
write_outputs(result, "out/DIR", mesh_formats=("stl",), all_phase_meshes=False)
```

Stages (each timed in `Result.timings`, seconds): `adapt` (V-AMA, only with an adapter), `predict`
(Gemini-GAN on every requested phase: SR image + SR labels on `sr_grid(study.grid)`; the predictor's
own `preprocess`/`model` split is kept as `predict_preprocess`/`predict_model`), `lr_labels` (SR labels
resampled back onto the input grid, nearest neighbour by world coordinates), `phenotypes`, `meshes`.
`write_outputs` adds `write`.

Phases: `"all"`, `"ed,es"` or a list of 0-based phase indices. With `"ed,es"`, ED and ES come from the
study (`StudyMeta.ed_phase/es_phase`) when known; when they are not, every phase is predicted (the
LV cavity volume curve is needed to find ED and ES) and the result keeps all of them: asking for
`"ed,es"` then costs as much as `"all"` (a warning says so).
ED/ES of the result: the study's when known, else max/min of the SR LV cavity volume curve
(see `core.phenotypes`, which reports both).
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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core import __version__
from gemini_cmr.core import mesh as meshlib
from gemini_cmr.core import phenotypes as phenolib
from gemini_cmr.core.errors import Cancelled, GeminiError, ModelError, StudyError
from gemini_cmr.core.geometry import resample_nearest_stack
from gemini_cmr.core.io.atomic import atomic_path, atomic_write_text
from gemini_cmr.core.io.nifti import IMAGE_DTYPES, save_nifti
from gemini_cmr.core.study import Grid, Study

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

OUTPUT_NAMES = (
    "sr_image.nii.gz", "sr_labels.nii.gz", "lr_labels.nii.gz", "meshes",
    "phenotypes.json", "phenotypes.csv", "run.json",
)  # fmt: skip

# Share of the progress bar given to each stage (the model dominates).
_SPAN = {"adapt": (0.0, 0.1), "predict": (0.1, 0.8), "lr_labels": (0.8, 0.83), "phenotypes": (0.83, 0.85),
         "meshes": (0.85, 1.0)}


@dataclass
class Result:
    """Everything one run produced; arrays are (T', D, H, W) over `phases` (study phase indices)."""

    study: Study
    sr_grid: Grid
    phases: list[int]
    sr_image: np.ndarray
    sr_labels: np.ndarray
    lr_labels: np.ndarray  # (T', Z, Y, X) on study.grid
    ed_phase: int
    es_phase: int
    meshes: dict[int, dict[str, Any]]  # {phase: {structure: pyvista.PolyData}}
    phenotypes: dict[str, Any]
    timings: dict[str, float]
    model_id: str
    adapter_id: str | None = None
    device: str = "cpu"
    model_path: str | None = None
    adapter_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    model_choice: str = ""  # why this model (model=None: chosen per study, issue 14)
    roi: tuple[int, int, int, int] | None = None  # SR in-plane box the network ran on (None: whole FOV)

    def phase_row(self, phase: int) -> int:
        """Row of the result arrays holding study phase `phase`."""
        try:
            return self.phases.index(int(phase))
        except ValueError:
            raise KeyError(f"phase {phase} was not super-resolved (have {self.phases})") from None


def _sub(progress: Progress | None, stage: str) -> Progress | None:
    if progress is None:
        return None
    lo, hi = _SPAN[stage]

    def cb(fraction: float, message: str) -> None:
        progress(lo + (hi - lo) * min(1.0, max(0.0, float(fraction))), message)

    return cb


def parse_phases(phases: str | Sequence[int] | None, study: Study) -> tuple[list[int], bool]:
    """Resolve a phase request to (sorted phase list, ed_es_requested). Raises StudyError when invalid."""
    n = study.n_phases
    where = study.meta.source_path or None
    if phases is None or (isinstance(phases, str) and phases.strip().lower() == "all"):
        return list(range(n)), False
    if isinstance(phases, str):
        text = phases.strip().lower().replace(" ", "")
        if text in ("ed,es", "es,ed", "edes", "ed_es"):
            ed, es = study.meta.ed_phase, study.meta.es_phase
            if ed is not None and es is not None and 0 <= ed < n and 0 <= es < n:
                return sorted({int(ed), int(es)}), True
            return list(range(n)), True
        try:
            phases = [int(p) for p in text.split(",") if p]
        except ValueError:
            raise StudyError(f"invalid phases {phases!r}: use 'all', 'ed,es' or a list like '0,7'", where) from None
    out = sorted({int(p) for p in phases})
    bad = [p for p in out if not 0 <= p < n]
    if bad or not out:
        raise StudyError(f"invalid phases {bad or out} for a cine with {n} phases (0-{n - 1})", where)
    return out, False


class SuperResolver:
    """Holds a loaded Gemini-GAN predictor (and optionally a V-AMA adapter) and runs studies through them.

    `model`: None (bundled model), a path, or an object with the `Predictor` interface
    (`predict`, `model_id`, `device`). `adapter`: None, a path, or an object with the `Adapter` interface.
    """

    def __init__(self, model: Any = None, adapter: Any = None, device: str = "auto", batch_size: int | None = None):
        t0 = time.perf_counter()
        # model=None without an adapter: chosen per study at run() (`core.resources.default_model_for`:
        # phantom model for phantoms, ACDC model for real studies); the phantom model is loaded first.
        self._auto = model is None and adapter is None
        self._predictors: dict[str, Any] = {}
        self._load_kw = {"device": device, **({} if batch_size is None else {"batch_size": batch_size})}
        self.model_choice = "explicit model" if model is not None else "bundled phantom model"
        if model is not None and hasattr(model, "predict"):
            self.predictor = model
            self.model_path = str(getattr(getattr(model, "loaded", None), "weights_path", "") or "") or None
        else:
            from gemini_cmr.core.predict import Predictor

            kw = {} if batch_size is None else {"batch_size": batch_size}
            self.predictor = Predictor.load(model, device=device, **kw)
            self.model_path = str(self.predictor.loaded.weights_path)
            if self._auto:
                from gemini_cmr.core.resources import bundled_model_path

                self._predictors[str(bundled_model_path())] = self.predictor
        self.load_timings = {"load_model": time.perf_counter() - t0}
        self.adapter = None
        self.adapter_path: str | None = None
        if adapter is not None:
            t1 = time.perf_counter()
            if hasattr(adapter, "adapt"):
                self.adapter = adapter
                self.adapter_path = str(getattr(adapter, "path", "") or "") or None
            else:
                from gemini_cmr.core.models.vama import Adapter  # lazy: only when an adapter is used

                dev = str(getattr(self.predictor, "device", "cpu"))
                self.adapter = Adapter.load(adapter, device=dev)
                self.adapter_path = str(adapter)
            self._check_adapter()
            self.load_timings["load_adapter"] = time.perf_counter() - t1

    # --- identity ---------------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return str(self.predictor.model_id)

    @property
    def adapter_id(self) -> str | None:
        return None if self.adapter is None else str(self.adapter.adapter_id)

    @property
    def device(self) -> str:
        return str(getattr(self.predictor, "device", "cpu"))

    def _check_adapter(self) -> None:
        cfg = getattr(self.adapter, "config", None) or {}
        wanted = cfg.get("gemini_model_id")
        where = self.adapter_path
        if not wanted:
            log.warning("the V-AMA adapter does not say which Gemini-GAN model it was trained for")
            return
        if str(wanted) != self.model_id:
            raise ModelError(
                f"this V-AMA adapter was trained for Gemini-GAN model {str(wanted)[:12]}, "
                f"not the model in use ({self.model_id[:12]})",
                where,
            )

    def _choose_model(self, study: Study) -> None:
        from gemini_cmr.core.predict import Predictor
        from gemini_cmr.core.resources import default_model_for

        path, reason = default_model_for(study)
        key = str(path)
        if key not in self._predictors:
            t0 = time.perf_counter()
            self._predictors[key] = Predictor.load(path, **self._load_kw)
            self.load_timings["load_model"] = self.load_timings.get("load_model", 0.0) + time.perf_counter() - t0
        self.predictor = self._predictors[key]
        self.model_path = str(self.predictor.loaded.weights_path)
        self.model_choice = reason
        log.info("model %s (%s): %s", path.name, self.model_id[:12], reason)

    # --- the pipeline -----------------------------------------------------------------------------------
    def run(
        self,
        study: Study,
        phases: str | Sequence[int] | None = "all",
        meshes: str = "ed_es",
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> Result:
        """Super-resolve, segment, back-project, measure and mesh `study`. Raises `Cancelled`/`GeminiError`."""
        t_start = time.perf_counter()
        if meshes not in ("ed_es", "all", "none"):
            raise ValueError(f"meshes must be 'ed_es', 'all' or 'none', not {meshes!r}")
        study.validate()
        timings: dict[str, float] = dict(self.load_timings)
        warnings: list[str] = []

        def check() -> None:
            if cancel is not None and cancel():
                raise Cancelled("super-resolution cancelled")

        if self._auto:
            self._choose_model(study)
        phase_list, ed_es_only = parse_phases(phases, study)
        if ed_es_only and len(phase_list) == study.n_phases and study.n_phases > 2:
            warnings.append("ED/ES not known from the study: predicted every phase to find them")
        check()

        source = study
        if self.adapter is not None:
            t = time.perf_counter()
            source = self.adapter.adapt(study, progress=_sub(progress, "adapt"), cancel=cancel)
            timings["adapt"] = time.perf_counter() - t
            check()

        t = time.perf_counter()
        pred = self.predictor.predict(source, phases=phase_list, progress=_sub(progress, "predict"), cancel=cancel)
        timings["predict"] = time.perf_counter() - t
        for k, v in (getattr(pred, "timings", None) or {}).items():
            if k != "total":
                timings[f"predict_{k}"] = float(v)
        if list(pred.phases) != phase_list:
            raise GeminiError(f"the predictor returned phases {pred.phases}, expected {phase_list}")
        sr = pred.sr_grid
        sr_labels = np.asarray(pred.sr_labels, dtype=np.uint8)
        sr_image = np.asarray(pred.sr_image, dtype=np.float32)
        check()

        t = time.perf_counter()
        lr_grid = study.grid
        lr_labels = resample_nearest_stack(sr_labels, sr, lr_grid).astype(np.uint8, copy=False)
        timings["lr_labels"] = time.perf_counter() - t
        if progress:
            progress(_SPAN["lr_labels"][1], "labels back on the input grid")
        check()

        t = time.perf_counter()
        phen = phenolib.compute_phenotypes(
            sr_labels, sr, phases=phase_list, meta=study.meta,
            lr_labels=study.labels if study.has_labels else None,
            lr_grid=lr_grid, lr_phases=study.labelled_phases,
        )  # fmt: skip
        ed, es = int(phen["ed_phase"]), int(phen["es_phase"])
        timings["phenotypes"] = time.perf_counter() - t
        if progress:
            progress(_SPAN["phenotypes"][1], "phenotypes")
        check()

        t = time.perf_counter()
        wanted = {"ed_es": sorted({ed, es}), "all": phase_list, "none": []}[meshes]
        surfaces = meshlib.phase_surfaces(
            sr_labels, sr, phase_list, select=wanted, progress=_sub(progress, "meshes"), cancel=cancel
        )
        timings["meshes"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        if progress:
            progress(1.0, "done")
        return Result(
            study=study, sr_grid=sr, phases=phase_list, sr_image=sr_image, sr_labels=sr_labels,
            lr_labels=lr_labels, ed_phase=ed, es_phase=es, meshes=surfaces, phenotypes=phen,
            timings=timings, model_id=self.model_id, adapter_id=self.adapter_id, device=self.device,
            model_path=self.model_path, adapter_path=self.adapter_path, warnings=warnings,
            model_choice=self.model_choice, roi=getattr(pred, "roi", None),
        )  # fmt: skip


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
                  "choice": getattr(result, "model_choice", ""),
                  "roi_sr_yx": None if getattr(result, "roi", None) is None else [int(v) for v in result.roi]},
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


def _write_rest(result: Result, tmp: Path, formats: list[str], all_phase_meshes: bool, dt: float | None,
                cancel: Cancel | None) -> None:
    """Everything but the SR image: labels, phenotypes, meshes."""

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("writing outputs cancelled")

    sr_aff = result.sr_grid.affine
    save_nifti(tmp / "sr_labels.nii.gz", result.sr_labels, sr_aff, dt, "gemini-cmr SR labels")
    save_nifti(tmp / "lr_labels.nii.gz", result.lr_labels, result.study.affine, dt,
               "gemini-cmr SR labels on the input grid")
    check()
    phenolib.write_json(result.phenotypes, tmp / "phenotypes.json")
    phenolib.write_csv(result.phenotypes, tmp / "phenotypes.csv")

    meshes = dict(result.meshes)
    wanted = sorted(set(result.phases) if all_phase_meshes else {result.ed_phase, result.es_phase})
    missing = [p for p in wanted if p not in meshes and p in result.phases]
    if missing:
        t = time.perf_counter()
        meshes.update(meshlib.phase_surfaces(result.sr_labels, result.sr_grid, result.phases, missing,
                                             cancel=cancel))
        result.timings["meshes"] = result.timings.get("meshes", 0.0) + time.perf_counter() - t
    mdir = tmp / "meshes"
    mdir.mkdir()
    if formats:
        for tag, phase in (("ed", result.ed_phase), ("es", result.es_phase)):
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
        dt = _phase_interval_ms(result)
        sr_aff = result.sr_grid.affine
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The SR image is the largest file (gzip-bound): compress it while the rest is written.
            # Signals are held during submit(): one raised while it starts the worker thread (Thread.start
            # waits for it) would leave that thread unknown to the pool, so leaving the block would not
            # wait for it and it would write into `tmp` while `tmp` is being removed.
            with _signals_deferred():
                big = pool.submit(save_nifti_fast, tmp / "sr_image.nii.gz", result.sr_image, sr_aff, dt,
                                  "gemini-cmr SR image", sr_dtype)
            _write_rest(result, tmp, formats, all_phase_meshes, dt, cancel)
            big.result()
        check()
        result.timings["write"] = time.perf_counter() - t0
        info = run_info(result, {"sr_image_dtype": sr_dtype, **(extra_info or {})})
        info["outputs"] = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + ["run.json"]
        atomic_write_text(tmp / "run.json", json.dumps(info, indent=2) + "\n")
        check()
        _move_into_place(tmp, out_dir)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote outputs to %s", out_dir)
    return sorted(p for p in out_dir.rglob("*") if p.is_file() and p.relative_to(out_dir).parts[0] in OUTPUT_NAMES)


__all__ = ["Result", "SuperResolver", "parse_phases", "run_info", "write_outputs"]
