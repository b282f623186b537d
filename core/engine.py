"""The end-to-end engine shared by the CLI and the app: study -> (V-AMA) -> Gemini-GAN -> results.

```python
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.outputs import write_outputs
sr = SuperResolver(model=None, adapter=None, device="auto")   # loads the model (and adapter) once
result = sr.run(study, phases="all", meshes="ed_es", progress=cb, cancel=cb)
write_outputs(result, "out/DIR", mesh_formats=("stl",), all_phase_meshes=False)   # core.outputs
```

Stages (each timed in `Result.timings`, seconds): `adapt` (V-AMA, only with an adapter), `motion` (slice
misalignment correction, `core.motion`: per-slice shifts estimated from a first pass on a few phases and
undone before the network runs; `Result.motion`; off with `motion_correction=False`), `predict`
(Gemini-GAN on every requested phase: SR image + SR labels on `sr_grid(study.grid)`; the predictor's
own `preprocess`/`model` split is kept as `predict_preprocess`/`predict_model`), `lr_labels` (SR labels
back onto the input grid, on the acquired (shifted) slices, each class smoothed in-plane and interpolated
linearly: `core.geometry.labels_onto_slices`), `phenotypes`, `meshes`.
`core.outputs.write_outputs` adds `write`.

Phases: `"all"`, `"ed,es"` or a list of 0-based phase indices. With `"ed,es"`, ED and ES come from the
study (`StudyMeta.ed_phase/es_phase`) when known; when they are not, every phase is predicted (the
LV cavity volume curve is needed to find ED and ES) and the result keeps all of them: asking for
`"ed,es"` then costs as much as `"all"` (a warning says so).
ED/ES of the result: the study's when known, else max/min of the SR LV cavity volume curve
(see `core.phenotypes`, which reports both).

`Result.warnings` holds what the user must see besides the study's own warnings (`study.meta.warnings`):
the engine's notes (among them the heart-finding pass's, `Prediction.notes`: a heart found again where the
cine beats, no heart found) and one line per phenotype flag (`core.phenotypes.flag_messages`: implausible values,
empty structures, values that cannot be computed) and per failed quality check of the labels (`core.qc`, all
of them in `Result.qc`). The CLI prints both on stderr, the app shows them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gemini_cmr.core import longaxis as longaxislib
from gemini_cmr.core import mesh as meshlib
from gemini_cmr.core import motion as motionlib
from gemini_cmr.core import phenotypes as phenolib
from gemini_cmr.core import qc as qclib
from gemini_cmr.core.errors import Cancelled, GeminiError, ModelError, StudyError
from gemini_cmr.core.study import Grid, Study

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

# Share of the progress bar given to each stage (the model dominates).
_SPAN = {"adapt": (0.0, 0.1), "predict": (0.1, 0.8), "lr_labels": (0.8, 0.83), "phenotypes": (0.83, 0.85),
         "meshes": (0.85, 1.0)}


@dataclass
class Preview:
    """Part of a super-resolution while it runs (`SuperResolver.run(preview=)`): `sr_image`/`sr_labels`
    (T', D, H, W) on `sr_grid` for `phases`, of which only the rows of the phases in `done` are final."""

    sr_grid: Grid
    phases: list[int]
    sr_image: np.ndarray
    sr_labels: np.ndarray
    done: list[int]


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
    model_choice: str = ""  # why this model (model=None: chosen per study)
    roi: tuple[int, int, int, int] | None = None  # SR in-plane heart box (None: whole FOV)
    net_roi: tuple[int, int, int, int] | None = None  # the part of `roi` the network ran on
    # slice misalignment correction (`core.motion.MotionEstimate`); None when it was turned off
    motion: Any = None
    # long-axis inputs (`core.longaxis.LongAxisInput`): used or ignored (why), the SR labels cut along each plane
    long_axis: list = field(default_factory=list)
    tta: str = "off"  # test-time augmentation of the labels: "off", "ed_es" (those two phases) or "all"
    qc: dict[str, Any] | None = None  # the automatic quality checks of the labels (`core.qc.assess_labels`)

    def phase_row(self, phase: int) -> int:
        """Row of the result arrays holding study phase `phase`."""
        try:
            return self.phases.index(int(phase))
        except ValueError:
            raise KeyError(f"phase {phase} was not super-resolved (have {self.phases})") from None


TTA_MODES = ("off", "ed_es", "all")


def tta_mode_of(tta: bool | str | None) -> str:
    """`SuperResolver.run`'s `tta` argument -> one of `TTA_MODES` (True = "all", False/None = "off")."""
    if tta is None or tta is False:
        return "off"
    if tta is True:
        return "all"
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
    return str(tta)


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
        motion_correction: bool | None = None,
        long_axis: Sequence[Any] | None = None,
        tta: bool | str = False,
        first: Sequence[int] = (),
        preview: Callable[[Preview], None] | None = None,
    ) -> Result:
        """Super-resolve, segment, back-project, measure and mesh `study`. Raises `Cancelled`/`GeminiError`.

        `motion_correction`: estimate and undo the per-slice breath-hold shifts first (`core.motion`);
        None = `core.motion.default_enabled(study)`.
        `long_axis`: long-axis cines of the same study (`core.longaxis.LongAxisCine`, or `LongAxisInput`s
        already ignored): each is checked against the stack (`core.longaxis.validate_long_axis`; a bad one is
        ignored with a warning naming its file), used as evidence by the motion correction, and the SR labels
        at ED and ES are cut along its plane (`Result.long_axis`).
        `tta`: test-time augmentation of the main prediction (`Predictor.predict(tta=True)`: labels from the
        class scores averaged over the in-plane mirrorings): True or "all" = every phase (4x the network
        time), "ed_es" = the ED and ES phases only, predicted again with it once they are known (the
        phases the clinical numbers come from; a 20-phase cine costs 1.4x), False or "off"; `Result.tta`.
        `first`: phases the network runs before the others (e.g. the one on screen); `preview(Preview)`: called
        on this thread after each batch of phases of the main prediction with the SR image and labels being
        filled and the phases whose rows are final (the same arrays end in the `Result` when no TTA or
        adapter changes them), so a viewer can show those phases before the whole cine is done."""
        t_start = time.perf_counter()
        if meshes not in ("ed_es", "all", "none"):
            raise ValueError(f"meshes must be 'ed_es', 'all' or 'none', not {meshes!r}")
        study.validate()
        timings: dict[str, float] = dict(self.load_timings)
        warnings: list[str] = []

        def check() -> None:
            if cancel is not None and cancel():
                raise Cancelled("super-resolution cancelled")

        la_inputs = longaxislib.validate_long_axis(list(long_axis or []), study)
        for item in la_inputs:
            if item.used:
                warnings.extend(item.notes)
            else:
                warnings.append(f"long-axis input ignored: {item.reason}")
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

        motion = None
        if motionlib.default_enabled(study) if motion_correction is None else motion_correction:
            t = time.perf_counter()
            if progress:
                progress(_SPAN["predict"][0], "estimating slice misalignment")
            used_la = [item.cine for item in la_inputs if item.used]
            motion = motionlib.estimate_motion(self.predictor, source, cancel=cancel, long_axis=used_la)
            warnings.extend(motion.heart_notes)
            for rec in motion.long_axis:  # the long-axis acquisitions' own offsets: the cuts overlay them
                for item in la_inputs:
                    if item.used and item.cine.source_path == rec["path"] and item.cine.view == rec["view"]:
                        item.offset_mm = np.asarray(rec["offset_mm"], float)
            if not motion.applied:
                warnings.append(motion.note)
            timings["motion"] = time.perf_counter() - t
            check()

        t = time.perf_counter()
        reuse = {"roi": motion.roi, "net_roi": motion.net_roi} if motion is not None and motion.roi is not None else {}
        tta_mode = tta_mode_of(tta)
        if tta_mode == "all":
            reuse["tta"] = True
        if preview is not None and motionlib.accepts_keyword(self.predictor.predict, "on_chunk"):
            def on_chunk(part, done: list[int]) -> None:
                preview(Preview(part.sr_grid, list(part.phases), part.sr_image, part.sr_labels, done))

            reuse.update(first=[int(p) for p in first], on_chunk=on_chunk)
        # the shifts are undone as the predictor places the stack on the SR grid (`core.motion.predict_corrected`)
        shifts = motion.shifts_mm if motion is not None and motion.applied else None  # the acquired slices' shifts
        pred = motionlib.predict_corrected(self.predictor, source, shifts, phases=phase_list,
                                           progress=_sub(progress, "predict"), cancel=cancel, **reuse)
        timings["predict"] = time.perf_counter() - t
        warnings.extend(n for n in (getattr(pred, "notes", None) or []) if n not in warnings)
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
        lr_labels = motionlib.labels_on_acquired(sr_labels, sr, lr_grid, shifts)
        timings["lr_labels"] = time.perf_counter() - t
        if progress:
            progress(_SPAN["lr_labels"][1], "labels back on the input grid")
        check()

        def phenotypes() -> dict[str, Any]:
            return phenolib.compute_phenotypes(
                sr_labels, sr, phases=phase_list, meta=study.meta,
                lr_labels=study.labels if study.has_labels else None,
                lr_grid=lr_grid, lr_phases=study.labelled_phases,
            )  # fmt: skip

        t = time.perf_counter()
        phen = phenotypes()
        timings["phenotypes"] = time.perf_counter() - t
        ed, es = int(phen["ed_phase"]), int(phen["es_phase"])
        if tta_mode == "ed_es":
            done: set[int] = set()
            t = time.perf_counter()
            # ED/ES computed from the volumes may move once their labels change: at most once more
            for _ in range(2):
                todo = [p for p in dict.fromkeys((ed, es)) if p in phase_list and p not in done]
                if not todo:
                    break
                check()
                again = motionlib.predict_corrected(
                    self.predictor, source, shifts, phases=todo, tta=True,
                    **({"roi": pred.roi, "net_roi": getattr(pred, "net_roi", None)} if getattr(pred, "roi", None) else {}))
                rows = [phase_list.index(p) for p in todo]
                sr_labels[rows] = np.asarray(again.sr_labels, dtype=np.uint8)
                done.update(todo)
                lr_labels[rows] = motionlib.labels_on_acquired(sr_labels[rows], sr, lr_grid, shifts)
                phen = phenotypes()
                ed, es = int(phen["ed_phase"]), int(phen["es_phase"])
            timings["predict_tta"] = time.perf_counter() - t
        # Implausible or unavailable values (core.phenotypes.assess) reach the user as warnings too.
        warnings.extend(phenolib.flag_messages(phen))
        t = time.perf_counter()
        quality = qclib.assess_labels(lr_labels, phase_list, lr_grid.spacing[1::-1], (ed, es),
                                      phen.get("volume_curves_ml"), study.image, lr_grid)
        warnings.extend(qclib.warning_lines(quality))
        timings["qc"] = time.perf_counter() - t
        if progress:
            progress(_SPAN["phenotypes"][1], "phenotypes")
        check()

        cut_phases = [p for p in dict.fromkeys((ed, es)) if p in phase_list]
        if any(item.used for item in la_inputs) and cut_phases:
            t = time.perf_counter()
            rows = [phase_list.index(p) for p in cut_phases]
            for item in la_inputs:
                if item.used:
                    longaxislib.cut_result_labels(item, sr_labels, sr, rows, cut_phases)
            timings["long_axis"] = time.perf_counter() - t

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
            net_roi=getattr(pred, "net_roi", None), motion=motion, long_axis=la_inputs,
            tta=tta_mode, qc=quality,
        )  # fmt: skip


__all__ = ["TTA_MODES", "Preview", "Result", "SuperResolver", "parse_phases", "tta_mode_of"]
