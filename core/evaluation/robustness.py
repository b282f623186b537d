"""Robustness to the ways other scanners and sites acquire: one labelled study perturbed, super-resolved, scored.

Each perturbation changes the input only as another acquisition of the same anatomy would
(`PERTURBATIONS`): in-plane pixel size (a scanner's reconstruction matrix; coarser pixels are blurred before
sampling, as a smaller acquisition matrix is), a tighter field of view, the stored orientation (rows and
columns transposed or reversed, the world geometry kept), the intensity scale, contrast (gamma), a smooth
bias field (surface-coil shading), Rician noise, twice the slice spacing and breath-hold offsets between slices
(with the slice motion correction's recovery of them: `shift_error_mm`, and `shift_error_observable_mm`
without the offsets' linear trend through the stack, which a short-axis stack alone cannot show). The
perturbed study goes through
the whole pipeline (`SuperResolver.run`, the labelled phases); its labels on its own acquired grid are
brought back to the original grid (nearest pixel, world coordinates) and scored against the study's labels
there: 3D Dice per structure on the scored slices (the contoured slices where the study has partial contours,
`meta.extra["contour_slices"]`; else every slice; only the slices the perturbed stack kept), for the
structures its labels hold. The unperturbed run (`none`) is the reference of every paired difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from gemini_cmr.core.evaluation.metrics import dice
from gemini_cmr.core.evaluation.motion import shift_errors
from gemini_cmr.core.geometry import inplane_nearest, inplane_resample, sr_grid
from gemini_cmr.core.qc import failed_names
from gemini_cmr.core.study import STRUCTURES, Study
from gemini_cmr.core.synth.appearance import add_rician_normal

Say = Callable[[str], None]
SEED = 0
FOV_MM = 200.0  # the tight field of view, centred on the labelled heart


@dataclass
class Perturbed:
    """A perturbed copy of a study; `back` maps one phase's labels on its grid, (Z', Y', X'), to the
    original grid (Z, Y, X); `slices`: the original slices it kept."""

    study: Study
    back: Callable[[np.ndarray], np.ndarray]
    slices: np.ndarray
    shifts_mm: np.ndarray | None = None  # (Z, 2) in-plane displacement added to each slice (i, j axes), if any


def _copy(study: Study, image: np.ndarray, affine: np.ndarray) -> Study:
    """The study with another image and affine (no labels: the perturbed input carries none)."""
    return replace(study, image=np.ascontiguousarray(image, dtype=np.float32), affine=affine, labels=None,
                   labelled_phases=list(study.labelled_phases), meta=replace(study.meta, dicom=None))


def _same_grid(study: Study, image: np.ndarray) -> Perturbed:
    return Perturbed(_copy(study, image, study.affine), lambda lab: lab, np.arange(study.n_slices))


def _scale99(study: Study) -> float:
    return float(np.percentile(study.image, 99.5)) or 1.0


def pixel_size(mm: float) -> Callable[[Study], Perturbed]:
    """In-plane pixels of `mm` over the same field of view and slices; coarser than the original: a
    Gaussian of sigma 0.5 sqrt(f^2 - 1) original pixels first (f = mm / original pixel), as a smaller
    acquisition matrix would see the anatomy."""

    def make(study: Study) -> Perturbed:
        lr = study.grid
        dst = sr_grid(lr, inplane_mm=mm, through_mm=float(lr.spacing[2]))
        image = study.image
        f = mm / float(np.mean(lr.spacing[:2]))
        if f > 1:
            sigma = 0.5 * math.sqrt(f * f - 1)
            image = ndimage.gaussian_filter(image, (0, 0, sigma, sigma), mode="nearest")
        out = inplane_resample(image, lr, dst, order=1)
        return Perturbed(_copy(study, out, dst.affine), lambda lab: inplane_nearest(lab, dst, lr),
                         np.arange(study.n_slices))

    return make


def field_of_view(mm: float = FOV_MM) -> Callable[[Study], Perturbed]:
    """A square field of view of `mm` centred on the labelled heart (its labels' in-plane centre over the
    labelled phases), within the original one."""

    def make(study: Study) -> Perturbed:
        nz, ny, nx = study.grid.shape
        sx, sy = study.grid.spacing[:2]
        ys, xs = np.nonzero(study.labels[study.labelled_phases].any(axis=(0, 1)))
        cy, cx = (float(ys.mean()), float(xs.mean())) if ys.size else (ny / 2, nx / 2)
        hy, hx = min(ny, round(mm / sy)), min(nx, round(mm / sx))
        y0 = int(np.clip(round(cy - hy / 2), 0, ny - hy))
        x0 = int(np.clip(round(cx - hx / 2), 0, nx - hx))
        affine = study.affine.copy()
        affine[:3, 3] = study.grid.index_to_world(np.array([x0, y0, 0], dtype=np.float64))

        def back(lab: np.ndarray) -> np.ndarray:
            out = np.zeros((nz, ny, nx), dtype=lab.dtype)
            out[:, y0:y0 + hy, x0:x0 + hx] = lab
            return out

        return Perturbed(_copy(study, study.image[..., y0:y0 + hy, x0:x0 + hx], affine), back, np.arange(nz))

    return make


def transposed(study: Study) -> Perturbed:
    """Rows and columns swapped in storage (columns 0 and 1 of the affine swapped: the same world)."""
    affine = study.affine.copy()
    affine[:, [0, 1]] = affine[:, [1, 0]]
    return Perturbed(_copy(study, study.image.swapaxes(-1, -2), affine), lambda lab: lab.swapaxes(-1, -2),
                     np.arange(study.n_slices))


def reversed_axes(rows: bool, cols: bool) -> Callable[[Study], Perturbed]:
    """Rows and/or columns stored in reverse order (the affine follows: the same world)."""

    def make(study: Study) -> Perturbed:
        _, ny, nx = study.grid.shape
        flip = np.eye(4)
        if rows:
            flip[1, 1], flip[1, 3] = -1, ny - 1
        if cols:
            flip[0, 0], flip[0, 3] = -1, nx - 1
        sl = (..., slice(None, None, -1) if rows else slice(None), slice(None, None, -1) if cols else slice(None))
        return Perturbed(_copy(study, study.image[sl], study.affine @ flip), lambda lab: lab[sl],
                         np.arange(study.n_slices))

    return make


#: rows with added slice offsets: the median per-slice error of the estimate and of no correction, each plain
#: (mean removed) and without the trend through the stack (`shift_errors` with the slice positions)
SHIFT_FIELDS = ("shift_error_mm", "shift_error_observable_mm", "shift_error_uncorrected_mm",
                "shift_error_observable_uncorrected_mm")


def _moved(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`a` (..., Y, X) with its content moved by whole pixels (dy rows, dx columns), zeros coming in."""
    out = np.zeros_like(a)
    ny, nx = a.shape[-2:]
    src_y, dst_y = slice(max(0, -dy), ny - max(0, dy)), slice(max(0, dy), ny - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), nx - max(0, dx)), slice(max(0, dx), nx - max(0, -dx))
    out[..., dst_y, dst_x] = a[..., src_y, src_x]
    return out


def slice_shifts(mm: float) -> Callable[[Study], Perturbed]:
    """Every slice's content moved in-plane by its own whole-pixel offset of up to `mm` along each axis (fixed
    seed; the same in all phases of a slice, as a breath-hold offset is): the misalignment the slice motion
    correction is there for. The offsets in mm along the stack's i and j axes are `Perturbed.shifts_mm`."""

    def make(study: Study) -> Perturbed:
        sx, sy = (float(v) for v in study.grid.spacing[:2])
        rng = np.random.default_rng(SEED)
        nz = study.n_slices
        dy = rng.integers(-round(mm / sy), round(mm / sy) + 1, nz)
        dx = rng.integers(-round(mm / sx), round(mm / sx) + 1, nz)
        image = np.stack([_moved(study.image[:, k], int(dy[k]), int(dx[k])) for k in range(nz)], axis=1)

        def back(lab: np.ndarray) -> np.ndarray:
            return np.stack([_moved(lab[k], -int(dy[k]), -int(dx[k])) for k in range(nz)])

        return Perturbed(_copy(study, image, study.affine), back, np.arange(nz),
                         shifts_mm=np.stack([dx * sx, dy * sy], axis=1).astype(np.float64))

    return make


def intensity_scale(factor: float) -> Callable[[Study], Perturbed]:
    """Every intensity times `factor` (another scanner's or rescale's units)."""
    return lambda study: _same_grid(study, study.image * factor)


def gamma(g: float) -> Callable[[Study], Perturbed]:
    """Contrast: (I / p)^g x p, p the study's 99.5th percentile."""

    def make(study: Study) -> Perturbed:
        p = _scale99(study)
        return _same_grid(study, np.power(np.clip(study.image, 0, None) / p, g) * p)

    return make


def bias_field(strength: float) -> Callable[[Study], Perturbed]:
    """A smooth multiplicative shading across the field of view, from 1 / (1 + s) in one corner to 1 + s in
    the opposite one (linear in log intensity along the diagonal)."""

    def make(study: Study) -> Perturbed:
        _, ny, nx = study.grid.shape
        u = (np.arange(ny)[:, None] / max(ny - 1, 1) + np.arange(nx)[None, :] / max(nx - 1, 1)) - 1.0
        return _same_grid(study, study.image * np.exp(math.log1p(strength) * u).astype(np.float32))

    return make


def rician_noise(fraction: float) -> Callable[[Study], Perturbed]:
    """Rician noise of sigma `fraction` x the 99.5th percentile (fixed seed)."""

    def make(study: Study) -> Perturbed:
        sigma = fraction * _scale99(study)
        return _same_grid(study, add_rician_normal(study.image, sigma, np.random.default_rng(SEED)))

    return make


def every_other_slice(study: Study) -> Perturbed:
    """Twice the slice spacing: the even slices kept (the odd ones are not scored)."""
    nz = study.n_slices
    affine = study.affine.copy()
    affine[:3, 2] *= 2

    def back(lab: np.ndarray) -> np.ndarray:
        out = np.zeros((nz,) + lab.shape[1:], dtype=lab.dtype)
        out[::2] = lab
        return out

    return Perturbed(_copy(study, study.image[:, ::2], affine), back, np.arange(0, nz, 2))


def _none(study: Study) -> Perturbed:
    return _same_grid(study, study.image)


#: name -> (what it is, make). Pixel sizes span clinical reconstructions (UK Biobank 1.8 mm; many sites
#: interpolate to finer matrices); the intensity changes are larger than one vendor's drift.
PERTURBATIONS: dict[str, tuple[str, Callable[[Study], Perturbed]]] = {
    "none": ("the study as acquired (the reference)", _none),
    "pixel_1.0mm": ("in-plane pixels of 1.0 mm (finer reconstruction matrix)", pixel_size(1.0)),
    "pixel_1.8mm": ("in-plane pixels of 1.8 mm", pixel_size(1.8)),
    "pixel_2.4mm": ("in-plane pixels of 2.4 mm", pixel_size(2.4)),
    "fov_200mm": (f"a {FOV_MM:.0f} mm field of view centred on the heart", field_of_view(FOV_MM)),
    "transposed": ("rows and columns swapped in storage", transposed),
    "rows_reversed": ("rows stored bottom to top", reversed_axes(True, False)),
    "rotated_180": ("rows and columns stored in reverse", reversed_axes(True, True)),
    "scale_x100": ("intensities x 100", intensity_scale(100.0)),
    "gamma_0.6": ("contrast: gamma 0.6", gamma(0.6)),
    "gamma_1.6": ("contrast: gamma 1.6", gamma(1.6)),
    "bias_40pc": ("bias field, x1/1.4 to x1.4 across the field of view", bias_field(0.4)),
    "noise_5pc": ("Rician noise, sigma 5% of the 99.5th percentile", rician_noise(0.05)),
    "noise_10pc": ("Rician noise, sigma 10%", rician_noise(0.10)),
    "slices_x2": ("every other slice (twice the spacing)", every_other_slice),
    "shifts_4mm": ("every slice moved in-plane by up to 4 mm along each axis (breath-hold offsets)",
                   slice_shifts(4.0)),
}


def scored_slices(study: Study, t: int) -> np.ndarray:
    """The slices of phase t whose labels count: the contoured ones where the study has partial contours,
    else all."""
    pairs = study.meta.extra.get("contour_slices")
    if pairs:
        return np.array(sorted({int(k) for tt, k in pairs if int(tt) == t}), dtype=np.int64)
    return np.arange(study.n_slices)


def score_phase(pred: np.ndarray, truth: np.ndarray, slices: np.ndarray) -> dict[str, float]:
    """Dice per structure over `slices` (NaN for a structure absent from the truth there)."""
    p, t = pred[slices], truth[slices]
    return {name: (dice(p, t, label) if (t == label).any() else float("nan")) for label, name in STRUCTURES.items()}


def evaluate_study(resolver, study: Study, name: str, perturbations: Iterable[str], say: Say | None = None
                   ) -> list[dict[str, Any]]:
    """One row per perturbation and labelled phase: Dice per structure on the original grid,
    `reference` (the unperturbed run's Dice on the same slices: the pair for a perturbation that keeps fewer
    slices) and `qc_failed` (the automatic quality checks, `core.qc`, that failed for that phase or the
    run). `none` runs first whether named or not."""
    if study.labels is None or not study.labelled_phases:
        raise ValueError(f"{name}: the study has no labels to score against")
    rows = []
    reference: dict[int, np.ndarray] = {}
    reference_shifts = None
    for key in ["none", *(k for k in dict.fromkeys(perturbations) if k != "none")]:
        _, make = PERTURBATIONS[key]
        pert = make(study)
        res = resolver.run(pert.study, phases=list(study.labelled_phases), meshes="none")
        motion = getattr(res, "motion", None)
        if key == "none":
            reference_shifts = None if motion is None else np.asarray(motion.shifts_mm, np.float64)
        shift = dict.fromkeys(SHIFT_FIELDS) if pert.shifts_mm is not None else {}
        if shift and motion is not None and reference_shifts is not None:
            # the added offsets, recovered: this run's estimate less the unperturbed run's (the study's own),
            # and without correction (an estimate of 0), each plain and without the trend through the stack
            ok = np.asarray(motion.estimated, bool)
            found = np.asarray(motion.shifts_mm) - reference_shifts
            z = np.arange(study.n_slices) * float(study.grid.spacing[2])
            for field, estimate, positions in zip(SHIFT_FIELDS, (found, found, 0 * found, 0 * found), (None, z, None, z)):
                errors = shift_errors(estimate, pert.shifts_mm, ok, positions)
                shift[field] = float(np.median(errors)) if errors.size else None
        for i, t in enumerate(res.phases):
            pred = pert.back(np.asarray(res.lr_labels[i]))
            if key == "none":
                reference[int(t)] = pred
            slices = np.intersect1d(scored_slices(study, t), pert.slices)
            row = {"study": name, "perturbation": key, "phase": int(t), "slices": int(slices.size),
                   "model_id": res.model_id, **score_phase(pred, study.labels[t], slices),
                   "reference": score_phase(reference[int(t)], study.labels[t], slices),
                   "qc_failed": failed_names(getattr(res, "qc", None), int(t)),
                   **shift}
            rows.append(row)
            if say:
                say(format_row(row))
    return rows


def format_row(row: dict[str, Any]) -> str:
    d = ", ".join(f"{k} {row[k]:.3f}" for k in STRUCTURES.values() if not math.isnan(row[k]))
    return f"{row['study']} {row['perturbation']:14s} phase {row['phase']:2d} ({row['slices']} slices): {d}"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per perturbation and structure: mean Dice, the mean paired difference against `none` (same study, phase
    and slices) with its standard error, and the worst difference; per perturbation the rows whose quality
    checks failed (`qc_flagged`)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(r["perturbation"] for r in rows):
        sub = [r for r in rows if r["perturbation"] == key]
        entry: dict[str, Any] = {"what": PERTURBATIONS[key][0], "n": len(sub),
                                 "qc_flagged": sum(bool(r.get("qc_failed")) for r in sub)}
        for name in SHIFT_FIELDS:
            errs = [r[name] for r in sub if r.get(name) is not None]
            if errs:
                entry[name + "_median"] = float(np.median(errs))
        for name in STRUCTURES.values():
            vals = np.array([r[name] for r in sub], dtype=np.float64)
            diffs = np.array([r[name] - r["reference"][name] for r in sub], dtype=np.float64)
            vals, diffs = vals[np.isfinite(vals)], diffs[np.isfinite(diffs)]
            if not vals.size:
                continue
            d: dict[str, float] = {"mean": float(vals.mean()), "min": float(vals.min())}
            if diffs.size and key != "none":
                d.update(diff=float(diffs.mean()), worst_diff=float(diffs.min()),
                         se=float(diffs.std(ddof=1) / math.sqrt(diffs.size)) if diffs.size > 1 else float("nan"))
            entry[name] = d
        out[key] = entry
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown: one row per perturbation, mean Dice and the paired difference against `none` per structure,
    and how many of its rows failed a quality check."""
    names = [n for n in STRUCTURES.values() if any(n in e for e in summary.values())]
    shifts = any("shift_error_mm_median" in e for e in summary.values())
    lines = ["| perturbation | " + " | ".join(f"{n} Dice (diff, worst)" for n in names) + " | quality checks failed |"
             + (" shift error mm, median (without the trend; uncorrected: both) |" if shifts else ""),
             "|---|" + "---|" * (len(names) + 1 + shifts)]
    for key, e in summary.items():
        cells = []
        for n in names:
            d = e.get(n)
            if d is None:
                cells.append("-")
            elif "diff" in d:
                cells.append(f"{d['mean']:.3f} ({d['diff']:+.3f}, {d['worst_diff']:+.3f})")
            else:
                cells.append(f"{d['mean']:.3f}")
        cells.append(f"{e.get('qc_flagged', 0)} of {e['n']}")
        if shifts:
            m = [e.get(f"{k}_median") for k in SHIFT_FIELDS]
            cells.append("-" if m[0] is None else
                         f"{m[0]:.2f} ({m[1]:.2f}; {m[2]:.2f}, {m[3]:.2f})" if None not in m else f"{m[0]:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["PERTURBATIONS", "Perturbed", "evaluate_study", "every_other_slice", "field_of_view", "format_row",
           "format_summary", "gamma", "pixel_size", "reversed_axes", "score_phase", "scored_slices",
           "summarise", "transposed"]
