"""Evaluations of the slice misalignment correction (`core.motion`) and of through-plane shape.

- `evaluate_motion_phantoms` (`gemini-cmr evaluate motion --data DIR`): phantoms of a paired dataset whose
  manifest records the simulator's breath-hold shifts (`phantom.shifts.inplane_mm`, written by
  `gemini-cmr synth`). Per subject, the engine with and without correction at ED and ES: the shift error
  (`shift_errors`: per slice, |estimate - truth| after removing the mean error over the estimated slices,
  which no method can observe; `..._observable_` also without the error's linear trend through the stack,
  which the short-axis stack alone cannot show), 3D Dice and symmetric mean surface distance to the HR truth labels, and
  the PSNR within 10 mm of the heart against the cubic B-spline interpolation of the LR stack.
- `dropped_slices` (`gemini-cmr evaluate dropped-slices --data ACDC`): real stacks with manual labels on the
  acquired slices. Every other slice is removed (the even ones are kept), the rest super-resolved, and the
  labels at each removed slice that has a kept neighbour on both sides are scored against its manual labels:
  the SR labels (nearest SR slice to the removed slice's centre), the product's labels of the nearest kept
  slice (the one above), and shape-based interpolation of the two kept neighbours' labels (mean signed
  distance). Dice is pooled over all scored slices and phases (2 sum|P and T| / sum(|P| + |T|)).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.evaluation import metrics
from gemini_cmr.core.evaluation.paired import PairedSubject, labelled_subjects
from gemini_cmr.core.geometry import resample, resample_nearest_stack
from gemini_cmr.core.longaxis import load_long_axis
from gemini_cmr.core.study import STRUCTURES, Grid, Study

Say = Callable[[str], None]
MODES = {"on": (True,), "off": (False,), "both": (True, False)}


class WithMotion:
    """A `SuperResolver` whose `run` always uses `motion_correction=on` (for the evaluations' callers)."""

    def __init__(self, resolver, on: bool):
        self.resolver, self.on = resolver, bool(on)

    def __getattr__(self, name: str):
        return getattr(self.resolver, name)

    def run(self, study: Study, *args, **kwargs):
        return self.resolver.run(study, *args, motion_correction=self.on, **kwargs)


# --- shifts --------------------------------------------------------------------------------------------
def shift_errors(estimate: np.ndarray, truth: np.ndarray, slices: np.ndarray,
                 positions: np.ndarray | None = None) -> np.ndarray:
    """Per-slice error norms (mm) of in-plane shift estimates (Z, 2) on the `slices` (bool or indices),
    after removing the mean error over them (a common translation of all slices is unobservable). With
    `positions` (Z,) (the slices' positions through the stack, mm), the error's linear trend through the
    stack is removed too: from a short-axis stack alone a shift growing linearly through the stack cannot be
    told from the heart's own obliquity (`core.motion`), so this is the error on what the stack can show."""
    idx = np.flatnonzero(slices) if np.asarray(slices).dtype == bool else np.asarray(slices, int)
    if len(idx) == 0:
        return np.zeros(0)
    e = np.asarray(estimate, np.float64)[idx] - np.asarray(truth, np.float64)[idx]
    if positions is None or len(idx) < 3:
        return np.linalg.norm(e - e.mean(axis=0), axis=1)
    z = np.asarray(positions, np.float64)[idx]
    V = np.stack([z - z.mean(), np.ones(len(idx))], axis=1)
    return np.linalg.norm(e - V @ np.linalg.lstsq(V, e, rcond=None)[0], axis=1)


def _truth_shifts(root: Path, entry: dict, n_slices: int) -> np.ndarray | None:
    """The simulator's in-plane shifts of a phantom subject (its `phantom` record, inline or a JSON file)."""
    info = entry.get("phantom") or {}
    if isinstance(info, str):
        import json

        path = Path(root) / info
        info = json.loads(path.read_text()) if path.is_file() else {}
    shifts = ((info or {}).get("shifts") or {}).get("inplane_mm")
    if shifts is None:
        return None
    arr = np.asarray(shifts, dtype=np.float64)
    return arr if arr.shape == (n_slices, 2) else None


# --- phantoms against the truth -----------------------------------------------------------------------
def subject_long_axis(subject: PairedSubject, views: Iterable[str]) -> list:
    """The phantom's long-axis cines of `views` (written by `gemini-cmr synth --long-axis`), in that order;
    a view the subject lacks is a `DataError` naming the manifest."""
    have = subject.entry.get("long_axis") or {}
    out = []
    for v in views:
        if v not in have:
            raise DataError(f"subject {subject.id} has no {v} long-axis cine (it has: "
                            f"{', '.join(sorted(have)) or 'none'}; write them with `gemini-cmr synth --long-axis`)",
                            subject.root / "manifest.json")
        out.append(load_long_axis(subject.root / have[v]["image"])[0])
    return out


def evaluate_motion_subject(subject: PairedSubject, resolver, modes: Iterable[bool] = (True, False),
                            long_axis_views: Iterable[str] = ()) -> dict[str, Any]:
    """One phantom: per mode ("on"/"off") and phase (ED, ES): Dice 3D, mean surface distance (mm), PSNR
    within 10 mm of the heart; the B-spline PSNR near the heart; the shift errors of the estimate.
    `long_axis_views` (e.g. ("4ch", "2ch")): the subject's long-axis cines given to the product as inputs
    (evidence for the correction)."""
    ed, es = subject.phases["ED"], subject.phases["ES"]
    phases = sorted({ed, es})
    study = subject.study()
    study.labels = None  # the estimate must not see the LR truth
    long_axis = subject_long_axis(subject, long_axis_views)
    truth_shifts = _truth_shifts(subject.root, subject.entry, study.n_slices)
    sp = subject.sr.spacing[::-1]
    out: dict[str, Any] = {"id": subject.id, "long_axis_inputs": list(long_axis_views), "modes": {}}
    # shift errors on the slices with LV in the LR truth labels (all modes), and on the slices the
    # correction estimated (its first mode's; the same slices for the other modes)
    lv_slices = ((subject.lr_labels == 1).any(axis=(0, 2, 3)) if subject.lr_labels is not None
                 else np.ones(study.n_slices, bool))
    estimated = None
    for on in modes:
        t0 = time.perf_counter()
        res = resolver.run(study, phases=phases, meshes="none", motion_correction=on,
                           **({"long_axis": long_axis} if long_axis else {}))
        row: dict[str, Any] = {"seconds": time.perf_counter() - t0, "phases": {}}
        for tag, t in (("ED", ed), ("ES", es)):
            img, lab = subject.truth(t)
            r = res.phase_row(t)
            rng = float(img.max() - img.min()) or 1.0
            near = metrics.heart_region(lab, sp)
            row["phases"][tag] = {
                "dice_3d": metrics.dice_per_structure(res.sr_labels[r], lab),
                "msd_mm": {k: metrics.mean_surface_distance(res.sr_labels[r], lab, v, sp)
                           for v, k in STRUCTURES.items()},
                "psnr_heart": metrics.masked_psnr(res.sr_image[r], img, near, rng),
            }
            if on == next(iter(modes)):
                bspline = resample(subject.lr_image[t], subject.lr, subject.sr, order=3, mode="nearest")
                out.setdefault("bspline", {})[tag] = metrics.masked_psnr(bspline, img, near, rng)
        motion = res.motion
        if motion is not None:
            row["timings"] = dict(motion.timings)
            row["estimated"] = [bool(v) for v in motion.estimated]
            row["shifts_mm"] = np.round(motion.shifts_mm, 3).tolist()
            row["long_axis"] = [{"view": r["view"], "slices_measured": r["slices_measured"]}
                                for r in motion.long_axis]
        if truth_shifts is not None:
            applied = motion is not None and motion.applied
            est = motion.shifts_mm if applied else np.zeros_like(truth_shifts)
            if applied:
                estimated = motion.estimated
            row["shift_errors_mm"] = shift_errors(est, truth_shifts, lv_slices).tolist()
            if estimated is not None:
                row["shift_errors_estimated_mm"] = shift_errors(est, truth_shifts, estimated).tolist()
                z = np.arange(study.n_slices) * float(study.grid.spacing[2])
                row["shift_errors_observable_mm"] = shift_errors(est, truth_shifts, estimated, z).tolist()
                row["estimated_slices"] = [int(k) for k in np.flatnonzero(estimated)]
        out["modes"]["on" if on else "off"] = row
    if truth_shifts is not None:
        out["truth_shifts_mm"] = truth_shifts.tolist()
    return out


def evaluate_motion_phantoms(data: str | Path, resolver, split: str = "test", limit: int | None = None,
                             modes: Iterable[bool] = (True, False), say: Say | None = None,
                             long_axis_views: Iterable[str] = ()) -> dict[str, Any]:
    """`evaluate_motion_subject` over a paired dataset's split, with a summary (`summarise_motion`);
    `long_axis_views`: long-axis cines given as inputs (every subject must have them)."""
    data = Path(data).expanduser()
    entries, _ = labelled_subjects(data, split)
    if limit:
        entries = entries[: max(1, int(limit))]
    views = tuple(long_axis_views)
    rows = []
    for entry in entries:
        row = evaluate_motion_subject(PairedSubject(data, entry), resolver, tuple(modes), views)
        rows.append(row)
        if say:
            say(format_motion_row(row))
    return {"data": str(data), "split": split, "n": len(rows), "model_id": resolver.model_id,
            "long_axis_inputs": list(views), "summary": summarise_motion(rows), "subjects": rows}


def summarise_motion(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled median per-slice shift error (mm; without correction the estimate is 0) on the slices with LV
    and on the estimated slices, and per mode and phase the mean Dice, surface distance and PSNR near the
    heart (and B-spline's)."""
    out: dict[str, Any] = {}
    for mode in ("on", "off"):
        have = [r["modes"][mode] for r in rows if mode in r["modes"]]
        if not have:
            continue
        errs = np.concatenate([np.asarray(h.get("shift_errors_mm", []), float) for h in have]) if have else []
        m: dict[str, Any] = {"shift_error_median_mm": float(np.median(errs)) if len(errs) else math.nan,
                             "shift_error_slices": len(errs)}
        ee = [np.asarray(h["shift_errors_estimated_mm"], float) for h in have if "shift_errors_estimated_mm" in h]
        if ee:
            ee = np.concatenate(ee)
            m["shift_error_estimated_median_mm"] = float(np.median(ee)) if len(ee) else math.nan
            m["shift_error_estimated_slices"] = len(ee)
        eo = [np.asarray(h["shift_errors_observable_mm"], float) for h in have if "shift_errors_observable_mm" in h]
        if eo:
            eo = np.concatenate(eo)
            m["shift_error_observable_median_mm"] = float(np.median(eo)) if len(eo) else math.nan
        for tag in ("ED", "ES"):
            ph = [h["phases"][tag] for h in have]
            m[tag] = {
                "dice_3d": {k: float(np.nanmean([p["dice_3d"][k] for p in ph])) for k in STRUCTURES.values()},
                "msd_mm": {k: float(np.nanmean([p["msd_mm"][k] for p in ph])) for k in STRUCTURES.values()},
                "psnr_heart": float(np.mean([p["psnr_heart"] for p in ph])),
            }
        m["seconds"] = float(np.mean([h["seconds"] for h in have]))
        out[mode] = m
    out["bspline_psnr_heart"] = {tag: float(np.mean([r["bspline"][tag] for r in rows if "bspline" in r]))
                                 for tag in ("ED", "ES")}
    return out


def format_motion_row(row: dict[str, Any]) -> str:
    parts = [row["id"]]
    for mode, r in row["modes"].items():
        e = r.get("shift_errors_mm") or []
        med = f"{np.median(e):.2f}" if e else "n/a"
        d = r["phases"]["ED"]["dice_3d"]
        parts.append(f"{mode}: shift err {med} mm, ED Dice {'/'.join(f'{d[k]:.3f}' for k in STRUCTURES.values())}, "
                     f"PSNR heart ED {r['phases']['ED']['psnr_heart']:.2f}")
    parts.append(f"B-spline {row['bspline']['ED']:.2f}")
    return "  ".join(parts)


def format_motion_summary(s: dict[str, Any]) -> str:
    names = list(STRUCTURES.values())
    lines = ["| | shift error, median mm (LV slices; estimated slices; the same without the trend) | Dice ED LV/myo/RV | Dice ES LV/myo/RV | surface distance ED (mm) "
             "| PSNR <= 10 mm of heart ED / ES (dB) |", "|---|---|---|---|---|---|"]
    for mode, label in (("off", "without correction"), ("on", "with correction")):
        if mode not in s:
            continue
        m = s[mode]
        lines.append(
            f"| {label} | {m['shift_error_median_mm']:.2f} (n={m['shift_error_slices']}); "
            f"{m.get('shift_error_estimated_median_mm', math.nan):.2f} (n={m.get('shift_error_estimated_slices', 0)}); "
            f"{m.get('shift_error_observable_median_mm', math.nan):.2f} | "
            + "/".join(f"{m['ED']['dice_3d'][k]:.3f}" for k in names) + " | "
            + "/".join(f"{m['ES']['dice_3d'][k]:.3f}" for k in names) + " | "
            + "/".join(f"{m['ED']['msd_mm'][k]:.2f}" for k in names) + " | "
            + f"{m['ED']['psnr_heart']:.2f} / {m['ES']['psnr_heart']:.2f} |")
    b = s["bspline_psnr_heart"]
    lines.append(f"| cubic B-spline | | | | | {b['ED']:.2f} / {b['ES']:.2f} |")
    return "\n".join(lines)


# --- dropped slices on real stacks --------------------------------------------------------------------
def keep_every_other(study: Study) -> tuple[Study, np.ndarray, np.ndarray]:
    """(the study with the even slices only (twice the slice spacing), kept indices, removed indices that
    have a kept neighbour on both sides)."""
    nz = study.n_slices
    kept = np.arange(0, nz, 2)
    removed = np.arange(1, nz - 1, 2)
    aff = study.affine.copy()
    aff[:3, 2] *= 2.0
    out = copy.copy(study)
    out.meta = copy.deepcopy(study.meta)
    out.image = np.ascontiguousarray(study.image[:, kept])
    out.labels = None
    out.labelled_phases = []
    out.affine = aff
    return out, kept, removed


def shape_interpolate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label slice midway between label slices a and b (Y, X): per structure the mean of the two signed
    distance maps (negative inside), the structure with the most negative mean where any is negative."""
    best = np.full(a.shape, 1e-9)
    out = np.zeros(a.shape, np.uint8)
    for v in STRUCTURES:
        sd = 0.5 * (_signed_distance(a == v) + _signed_distance(b == v))
        take = sd < best
        out[take] = v
        best = np.minimum(best, sd)
    return out


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, 1e3)
    return np.where(mask, 0.5 - ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(~mask) - 0.5)


class DiceAccumulator:
    """Pooled Dice per structure: 2 sum |P and T| / sum (|P| + |T|) over everything added."""

    def __init__(self):
        self.inter = dict.fromkeys(STRUCTURES.values(), 0)
        self.total = dict.fromkeys(STRUCTURES.values(), 0)

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        for v, k in STRUCTURES.items():
            p, t = pred == v, truth == v
            self.inter[k] += int((p & t).sum())
            self.total[k] += int(p.sum() + t.sum())

    def dice(self) -> dict[str, float]:
        d = {k: (2.0 * self.inter[k] / self.total[k]) if self.total[k] else math.nan for k in self.inter}
        d["mean"] = float(np.nanmean(list(d.values())))
        return d

    def merge(self, other: DiceAccumulator) -> None:
        for k in self.inter:
            self.inter[k] += other.inter[k]
            self.total[k] += other.total[k]

    def to_json(self) -> dict[str, Any]:
        return {"intersection": dict(self.inter), "total": dict(self.total)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DiceAccumulator:
        """The accumulator `to_json` wrote."""
        a = cls()
        for k in a.inter:
            a.inter[k] = int(d["intersection"][k])
            a.total[k] = int(d["total"][k])
        return a


METHODS = ("sr", "nearest", "shape_interpolation", "manual_nearest", "manual_shape_interpolation")


def dropped_slices_study(resolver, study: Study, motion_correction: bool, acquired: bool = False
                         ) -> dict[str, DiceAccumulator]:
    """Pooled-Dice accumulators (`METHODS`) at the removed slices of one study with manual labels at ED and
    ES (`keep_every_other`; the product run on the kept slices at ED and ES, meshes off). "manual_nearest" and
    "manual_shape_interpolation" take the kept slices' manual labels instead of the product's (no model: what
    perfect labels of the kept slices give with those interpolations). `acquired`: also
    "acquired", the product's labels of the same slices from a run on the whole stack (the slices not
    removed): the reference that acquiring the slices gives."""
    ed, es = study.meta.ed_phase, study.meta.es_phase
    phases = sorted({int(ed), int(es)})
    kept_study, kept, removed = keep_every_other(study)
    acc = {m: DiceAccumulator() for m in METHODS + (("acquired",) if acquired else ())}
    if len(removed) == 0:
        return acc
    if acquired:
        whole = resolver.run(study, phases=phases, meshes="none", motion_correction=motion_correction)
        for t in phases:
            for k in removed:
                acc["acquired"].add(whole.lr_labels[whole.phase_row(t)][k], study.labels[t, k])
    res = resolver.run(kept_study, phases=phases, meshes="none", motion_correction=motion_correction)
    full = Grid(study.grid.shape, study.affine)
    sr_on_full = resample_nearest_stack(res.sr_labels, res.sr_grid, full)
    pos = {int(k): i for i, k in enumerate(kept)}
    for t in phases:
        row = res.phase_row(t)
        lr = res.lr_labels[row]  # the product's labels of the kept slices (as acquired)
        for k in removed:
            truth = study.labels[t, k]
            above, below = lr[pos[int(k) - 1]], lr[pos[int(k) + 1]]
            acc["sr"].add(sr_on_full[row, k], truth)
            acc["nearest"].add(above, truth)
            acc["shape_interpolation"].add(shape_interpolate(above, below), truth)
            m_above, m_below = study.labels[t, int(k) - 1], study.labels[t, int(k) + 1]
            acc["manual_nearest"].add(m_above, truth)
            acc["manual_shape_interpolation"].add(shape_interpolate(m_above, m_below), truth)
    return acc


def dropped_slices(resolver, studies: Iterable[tuple[str, Callable[[], Study]]], modes: Iterable[bool] = (True, False),
                   say: Say | None = None, acquired: bool = False) -> dict[str, Any]:
    """`dropped_slices_study` over (name, loader) pairs for each motion-correction mode: pooled Dice per
    method and mode, and per study."""
    return dropped_slices_folds([(None, resolver, studies)], modes, say, acquired)


def dropped_slices_folds(groups: Iterable[tuple[int | None, Any, Iterable[tuple[str, Callable[[], Study]]]]],
                         modes: Iterable[bool] = (True, False), say: Say | None = None, acquired: bool = False
                         ) -> dict[str, Any]:
    """`dropped_slices` over (fold, resolver, studies) groups, e.g. each cross-validation fold's patients
    scored by the model that never saw them: Dice pooled over every group's removed slices ("summary"), and
    per fold ("folds": model id, count, pooled Dice and the voxel counts behind it, `DiceAccumulator.to_json`, so
    folds scored in separate runs can be pooled exactly; fold None = one ungrouped set). `acquired`:
    the "acquired" reference too (`dropped_slices_study`)."""
    modes = list(modes)
    keys = ["on" if m else "off" for m in modes]
    methods = METHODS + (("acquired",) if acquired else ())
    pooled = {key: {k: DiceAccumulator() for k in methods} for key in keys}
    rows: list[dict[str, Any]] = []
    folds: dict[str, Any] = {}
    ids: list[str] = []
    for fold, resolver, studies in groups:
        own = {key: {k: DiceAccumulator() for k in methods} for key in keys}
        n = 0
        for name, load in studies:
            study = load()
            row: dict[str, Any] = {"subject": name}
            if fold is not None:
                row["fold"] = fold
            for m, key in zip(modes, keys):
                t0 = time.perf_counter()
                acc = dropped_slices_study(resolver, study, m, acquired)
                row[key] = {k: a.dice() for k, a in acc.items()}
                row[f"{key}_seconds"] = time.perf_counter() - t0
                for k, a in acc.items():
                    pooled[key][k].merge(a)
                    own[key][k].merge(a)
            rows.append(row)
            n += 1
            if say:
                say(format_dropped_row(row))
        ids.append(resolver.model_id)
        if fold is not None:
            folds[str(fold)] = {"model_id": resolver.model_id, "n": n,
                                "summary": {key: {k: a.dice() for k, a in accs.items()} for key, accs in own.items()},
                                "counts": {key: {k: a.to_json() for k, a in accs.items()} for key, accs in own.items()}}
    summary = {key: {k: a.dice() for k, a in accs.items()} for key, accs in pooled.items()}
    out: dict[str, Any] = {"n": len(rows), "model_id": ids[0] if len(set(ids)) == 1 else ",".join(ids),
                           "summary": summary, "rows": rows}
    if folds:
        out["folds"] = folds
    return out


def format_dropped_row(row: dict[str, Any]) -> str:
    parts = [row["subject"]]
    for mode in ("on", "off"):
        if mode in row:
            d = row[mode]
            parts.append(f"{mode}: SR {d['sr']['mean']:.3f} nearest {d['nearest']['mean']:.3f} "
                         f"shape {d['shape_interpolation']['mean']:.3f} "
                         f"manual shape {d['manual_shape_interpolation']['mean']:.3f}"
                         + (f" acquired {d['acquired']['mean']:.3f}" if "acquired" in d else "")
                         + f" ({row[f'{mode}_seconds']:.1f} s)")
    return "  ".join(parts)


def format_dropped_summary(summary: dict[str, Any]) -> str:
    names = list(STRUCTURES.values())
    lines = ["| at the removed slices | motion correction | LV | myo | RV | mean |", "|---|---|---|---|---|---|"]
    label = {"nearest": "product's labels of the kept slices, nearest slice",
             "shape_interpolation": "the same, shape-based interpolation",
             "sr": "product's SR labels",
             "manual_nearest": "reference: the kept slices' manual labels, nearest slice",
             "manual_shape_interpolation": "reference: the kept slices' manual labels, shape-based interpolation",
             "acquired": "reference: the product's labels with these slices acquired (the whole stack)"}
    for method in ("nearest", "shape_interpolation", "sr", "manual_nearest", "manual_shape_interpolation", "acquired"):
        for mode in ("off", "on"):
            if mode not in summary or method not in summary[mode]:
                continue
            d = summary[mode][method]
            lines.append(f"| {label[method]} | {mode} | " + " | ".join(f"{d[k]:.3f}" for k in names)
                         + f" | {d['mean']:.3f} |")
    return "\n".join(lines)


def acdc_patients(data: str | Path, patients: Iterable[str] | None = None, split: str | None = None
                  ) -> list[tuple[str, Callable[[], Study]]]:
    """(patient id, loader) of an ACDC training folder: the named patients (`patient011` or `11`), else
    `split` ('val' = numbers divisible by 5, 'train', 'fold1' = number % 5 == 1, ...), else all."""
    from gemini_cmr.core.io.layouts import acdc_subjects, load_acdc

    subjects = acdc_subjects(Path(str(data).removeprefix("acdc:")).expanduser())
    if patients:
        want = {f"patient{int(p.removeprefix('patient')):03d}" for p in patients}
        chosen = [(sid, f) for sid, f, _ in subjects if sid in want]
    elif split and split.startswith("fold"):
        r = int(split[4:])
        chosen = [(sid, f) for sid, f, _ in subjects if int(sid[7:]) % 5 == r]
    elif split:
        chosen = [(sid, f) for sid, f, sp in subjects if sp == split]
    else:
        chosen = [(sid, f) for sid, f, _ in subjects]
    return [(sid, lambda f=f: load_acdc(f)) for sid, f in chosen]


__all__ = ["DiceAccumulator", "METHODS", "MODES", "WithMotion", "acdc_patients", "dropped_slices",
           "dropped_slices_folds", "dropped_slices_study", "evaluate_motion_phantoms", "evaluate_motion_subject", "format_dropped_summary",
           "format_motion_summary", "keep_every_other", "shape_interpolate", "shift_errors", "summarise_motion"]
