"""Automatic quality checks of a run's labels: signs, without any ground truth, that a segmentation failed.

A cohort user cannot look at every study; these checks say which ones to look at. They read the labels on the
acquired slices (`Result.lr_labels`, the grid the user's images and the manual conventions live on) and the
volume-time curves, and test what every manual segmentation of a short-axis cine satisfies:

- `lv_ring`: on every LV slice but the two at the ends of the LV (base and apex, where the outflow tract opens
  the ring and the cavity ends), the LV cavity is walled by myocardium: the pixels just outside the cavity (one
  pixel, 4-connected) are myocardium. Fails when the least walled of those slices has under `RING_MIN` of its
  rim on myocardium (a cavity painted into the blood pool of another chamber, the stomach or the liver);
- `lv_continuous`: the LV cavity has no missing slice between its first and its last (a slice skipped by the
  network, or two separate "hearts");
- `rv_beside_lv`: the RV cavity lies beside the LV myocardium (within `RV_GAP_MM`) on the slices holding both;
  fails when fewer than `RV_BESIDE_MIN` of them do (an RV painted into the stomach or a vessel);
- `heart_beats` (cines of two phases or more): the labelled heart lies where the cine beats: the
  `core.postprocess.cine_motion_map` averages at least `HEART_MOTION_MIN` over the heart's in-plane extent at
  ED (a heart painted into still tissue; the heart-finding pass makes the same test before it keeps a heart);
- `myo_conserved` (ED and ES both super-resolved): the myocardium is nearly incompressible, so its volume at
  ES lies within `MYO_ES_ED` times its volume at ED (manual ACDC labels: 0.89-1.47 times);
- `lv_curve_smooth` (cines of at least `CURVE_MIN_PHASES` phases): no phase's LV cavity volume departs from
  the mean of its two neighbours in time by more than `CURVE_JUMP_MAX` of the end-diastolic volume (a phase
  where the segmentation jumped: a slice lost or a structure swapped).

The anatomical checks run at ED and ES. Every limit lies well outside what the manual labels of the 100 ACDC
training patients and clean runs of the three Sunnybrook GE cines show (all of them pass); how well a failed
check finds a failed segmentation is measured in docs/real-data.md ("Quality checks").

`snapshot` draws a run's ED and ES slices with their labels' outlines into one small image (`qc.png` among the
outputs), so a cohort's studies can be looked through quickly, the flagged ones first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from gemini_cmr.core.postprocess import HEART_MOTION_MIN, cine_motion_map
from gemini_cmr.core.study import LABEL_OF

QC_VERSION = 1
RING_MIN = 0.5  # fraction of the cavity's rim on myocardium, least walled inner LV slice
RV_GAP_MM = 5.0  # RV cavity within this distance of the LV myocardium counts as beside it
RV_BESIDE_MIN = 0.5  # fraction of the slices holding RV and LV myocardium where they are beside each other
CURVE_JUMP_MAX = 0.2  # largest departure of one phase's LV volume from its neighbours' mean, x EDV
MYO_ES_ED = (0.7, 1.8)  # plausible myocardial volume at ES over that at ED
CURVE_MIN_PHASES = 10  # the departure grows with the time between phases: not judged on coarser cines

_CROSS = ndimage.generate_binary_structure(2, 1)
LV, MYO, RV = LABEL_OF["lv_cavity"], LABEL_OF["lv_myocardium"], LABEL_OF["rv_cavity"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    value: float
    limit: float
    phase: int | None  # study phase index; None for a check of the whole run (`heart_beats`, `myo_conserved`,
    #                    `lv_curve_smooth`)
    message: str  # empty when ok


def rim_on_myocardium(labels2d: np.ndarray) -> float:
    """Fraction of the one-pixel (4-connected) rim around a slice's LV cavity that is LV myocardium; NaN
    without cavity."""
    cav = labels2d == LV
    if not cav.any():
        return float("nan")
    rim = ndimage.binary_dilation(cav, _CROSS) & ~cav
    return float((labels2d[rim] == MYO).mean()) if rim.any() else 1.0


def lv_slices(labels: np.ndarray) -> np.ndarray:
    """Indices of the slices of a (Z, Y, X) phase holding LV cavity."""
    return np.flatnonzero((labels == LV).any(axis=(1, 2)))


def ring_check(labels: np.ndarray, phase: int) -> Check:
    """`lv_ring` of one phase (Z, Y, X)."""
    z = lv_slices(labels)
    inner = z[(z > z.min()) & (z < z.max())] if z.size else z
    if not inner.size:
        return Check("lv_ring", True, float("nan"), RING_MIN, phase, "")
    rims = [rim_on_myocardium(labels[k]) for k in inner]
    worst = int(inner[int(np.argmin(rims))])
    value = float(min(rims))
    ok = value >= RING_MIN
    msg = "" if ok else (f"phase {phase}: the LV cavity of slice {worst} is walled by myocardium on only "
                         f"{100 * value:.0f}% of its rim")
    return Check("lv_ring", ok, value, RING_MIN, phase, msg)


def continuity_check(labels: np.ndarray, phase: int) -> Check:
    """`lv_continuous` of one phase: the number of slices without LV cavity inside the LV's slice range."""
    z = lv_slices(labels)
    gaps = int(z.max() - z.min() + 1 - z.size) if z.size else 0
    ok = gaps == 0
    missing = sorted(set(range(int(z.min()), int(z.max()) + 1)) - set(z.tolist())) if not ok else []
    msg = "" if ok else (f"phase {phase}: no LV cavity on slice{'s' if gaps > 1 else ''} "
                         f"{', '.join(map(str, missing))} between LV slices {int(z.min())} and {int(z.max())}")
    return Check("lv_continuous", ok, float(gaps), 0.0, phase, msg)


def rv_check(labels: np.ndarray, phase: int, spacing_yx: Sequence[float]) -> Check:
    """`rv_beside_lv` of one phase: the fraction of slices holding RV cavity and LV myocardium where the RV
    comes within `RV_GAP_MM` of the myocardium."""
    both = [k for k in range(labels.shape[0]) if (labels[k] == RV).any() and (labels[k] == MYO).any()]
    if not both:
        return Check("rv_beside_lv", True, float("nan"), RV_BESIDE_MIN, phase, "")
    sy, sx = (float(s) for s in spacing_yx)
    near = 0
    for k in both:
        dist = ndimage.distance_transform_edt(labels[k] != MYO, sampling=(sy, sx))
        near += bool((dist[labels[k] == RV] <= RV_GAP_MM).any())
    value = near / len(both)
    ok = value >= RV_BESIDE_MIN
    msg = "" if ok else (f"phase {phase}: the RV cavity is beside the LV myocardium on only {near} of the "
                         f"{len(both)} slices holding both")
    return Check("rv_beside_lv", ok, float(value), RV_BESIDE_MIN, phase, msg)


def beating_check(labels: np.ndarray, phase: int, motion: np.ndarray | None) -> Check | None:
    """`heart_beats`: the mean of a `cine_motion_map` (Y, X) over the in-plane extent of the heart in one phase's
    labels (Z, Y, X); None without a map (a single phase, a cine where nothing stands out) or without a heart."""
    fg = (labels > 0).any(axis=0)
    if motion is None or not fg.any():
        return None
    value = float(motion[fg].mean())
    ok = value >= HEART_MOTION_MIN
    msg = "" if ok else (f"phase {phase}: the labelled heart lies where the cine hardly moves ({value:.2f} of the "
                         f"beating region's motion, at least {HEART_MOTION_MIN:g} expected)")
    return Check("heart_beats", ok, value, HEART_MOTION_MIN, None, msg)  # where the heart is: the whole run


def myocardium_check(myo_ml: Sequence[float], phases: Sequence[int], ed: int, es: int) -> Check | None:
    """`myo_conserved`: the myocardial volume at ES over that at ED within `MYO_ES_ED`; None when ED = ES, either
    was not super-resolved or there is no myocardium at ED."""
    phases = [int(p) for p in phases]
    if ed == es or ed not in phases or es not in phases:
        return None
    v_ed, v_es = float(myo_ml[phases.index(ed)]), float(myo_ml[phases.index(es)])
    if not v_ed > 0 or not np.isfinite(v_es):
        return None
    value = v_es / v_ed
    lo, hi = MYO_ES_ED
    ok = lo <= value <= hi
    msg = "" if ok else (f"the myocardial volume at ES (phase {es}, {v_es:.0f} mL) is {value:.2f} times that at ED "
                         f"(phase {ed}, {v_ed:.0f} mL); the myocardium keeps its volume ({lo:g}-{hi:g} expected)")
    return Check("myo_conserved", ok, value, hi if value > hi else lo, None, msg)


def curve_check(lv_ml: Sequence[float], phases: Sequence[int]) -> Check | None:
    """`lv_curve_smooth` over a cine (cyclic); None for fewer than `CURVE_MIN_PHASES` phases."""
    v = np.asarray(lv_ml, dtype=np.float64)
    if v.size < CURVE_MIN_PHASES or not np.isfinite(v).all() or v.max() <= 0:
        return None
    jump = np.abs(v - 0.5 * (np.roll(v, 1) + np.roll(v, -1))) / v.max()
    i = int(np.argmax(jump))
    value = float(jump[i])
    ok = value <= CURVE_JUMP_MAX
    msg = "" if ok else (f"phase {int(phases[i])}: the LV cavity volume ({v[i]:.0f} mL) departs from its "
                         f"neighbours' in time by {100 * value:.0f}% of the end-diastolic volume")
    return Check("lv_curve_smooth", ok, value, CURVE_JUMP_MAX, None, msg)


def assess_labels(lr_labels: np.ndarray, phases: Sequence[int], spacing_yx: Sequence[float],
                  check_phases: Sequence[int], curves: Mapping[str, Sequence[float]] | None = None,
                  image: np.ndarray | None = None, grid=None) -> dict[str, Any]:
    """The quality checks of a run: `lr_labels` (T', Z, Y, X) over study phases `phases`, the anatomical checks
    at `check_phases` (ED and ES; `heart_beats` at the first of them, with the whole cine `image` (T, Z, Y, X)
    on `grid`), and on the volume curves (`curves`: mL per phase of `phases` by structure, as
    `core.phenotypes` computes them) the myocardium between ED and ES and the LV cavity curve.
    Returns {"version", "passed", "checks": [Check as dict, ...], "failed": [message, ...]}."""
    checks: list[Check] = []
    motion = cine_motion_map(image, grid) if image is not None and grid is not None else None
    for i, p in enumerate(dict.fromkeys(int(p) for p in check_phases)):
        if p not in phases:
            continue
        lab = np.asarray(lr_labels[list(phases).index(p)])
        checks += [ring_check(lab, p), continuity_check(lab, p), rv_check(lab, p, spacing_yx)]
        beats = beating_check(lab, p, motion) if i == 0 else None
        if beats is not None:
            checks.append(beats)
    curves = curves or {}
    ed_es = [int(p) for p in dict.fromkeys(check_phases)]
    extra = [myocardium_check(curves["lv_myocardium"], phases, ed_es[0], ed_es[-1])
             if "lv_myocardium" in curves and ed_es else None,
             curve_check(curves["lv_cavity"], phases) if "lv_cavity" in curves else None]
    checks += [c for c in extra if c is not None]
    failed = [c.message for c in checks if not c.ok]
    return {"version": QC_VERSION, "passed": not failed, "checks": [_plain(asdict(c)) for c in checks],
            "failed": failed}


def failed_names(qc: Mapping[str, Any] | None, phase: int | None = None) -> list[str]:
    """The names of the failed checks of a QC result (sorted, once each); with `phase`, those of that phase and
    those of the whole run."""
    return sorted({c["name"] for c in (qc or {}).get("checks", [])
                   if not c.get("ok", True) and (phase is None or c.get("phase") in (None, int(phase)))})


def warning_lines(qc: Mapping[str, Any] | None) -> list[str]:
    """The user-facing warnings of a QC result: one per failed check."""
    return [f"quality check: {m}; look at this segmentation before using its numbers" for m in (qc or {}).get("failed", [])]


SNAPSHOT_TILE_PX = 112  # each slice's heart crop in the snapshot
SNAPSHOT_MAX_SLICES = 16
SNAPSHOT_MARGIN_MM = 15.0


def snapshot(image: np.ndarray, lr_labels: np.ndarray, phases: Sequence[int], ed: int, es: int,
             spacing_yx: Sequence[float], title: str = "", qc: Mapping[str, Any] | None = None) -> np.ndarray:
    """A review image of a run (H, W, 3 uint8): one row per ED and ES, one tile per acquired slice (evenly
    chosen when there are more than `SNAPSHOT_MAX_SLICES`), each the same square crop around the labelled heart
    (`SNAPSHOT_MARGIN_MM` around it), the image windowed from its 1st to 99.5th percentile there with the labels'
    outlines in their colours, the arrays as stored (rows down, columns right); above, `title` and the quality
    checks' verdict (failed checks in red)."""
    from PIL import Image, ImageDraw

    from gemini_cmr.core.study import LABEL_COLOURS

    rows = [(name, p) for name, p in (("ED", ed), ("ES", es)) if p in phases]
    if not rows:
        raise ValueError("neither ED nor ES was super-resolved")
    z_n, ny, nx = lr_labels.shape[1:]
    labs = {p: np.asarray(lr_labels[list(phases).index(p)]) for _, p in rows}
    fg = np.any([labs[p] > 0 for _, p in rows], axis=(0, 1))
    sy, sx = (float(v) for v in spacing_yx)
    if fg.any():
        ys, xs = np.nonzero(fg)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        half_mm = max((ys.max() - ys.min() + 1) * sy, (xs.max() - xs.min() + 1) * sx) / 2 + SNAPSHOT_MARGIN_MM
    else:
        cy, cx, half_mm = (ny - 1) / 2, (nx - 1) / 2, min(ny * sy, nx * sx) / 2
    y0, y1 = int(max(0, round(cy - half_mm / sy))), int(min(ny, round(cy + half_mm / sy) + 1))
    x0, x1 = int(max(0, round(cx - half_mm / sx))), int(min(nx, round(cx + half_mm / sx) + 1))
    zs = np.unique(np.linspace(0, z_n - 1, min(z_n, SNAPSHOT_MAX_SLICES)).round().astype(int))
    crops = np.stack([np.asarray(image[p][:, y0:y1, x0:x1], dtype=np.float32) for _, p in rows])
    lo, hi = np.percentile(crops, [1.0, 99.5]) if crops.size else (0.0, 1.0)
    scale = 255.0 / max(float(hi - lo), 1e-6)
    # tile size: the crop's physical aspect kept, its longer side SNAPSHOT_TILE_PX
    h_mm, w_mm = (y1 - y0) * sy, (x1 - x0) * sx
    th = max(1, round(SNAPSHOT_TILE_PX * min(1.0, h_mm / w_mm)))
    tw = max(1, round(SNAPSHOT_TILE_PX * min(1.0, w_mm / h_mm)))
    head, gap = 30, 2
    out = np.zeros((head + len(rows) * (th + gap), len(zs) * (tw + gap), 3), np.uint8)
    for r, (_, p) in enumerate(rows):
        for c, z in enumerate(zs):
            grey = np.clip((crops[r, z] - lo) * scale, 0, 255).astype(np.uint8)
            tile = np.asarray(Image.fromarray(grey).resize((tw, th), Image.BILINEAR))
            tile = np.repeat(tile[..., None], 3, axis=2)
            lab = np.asarray(Image.fromarray(labs[p][z, y0:y1, x0:x1]).resize((tw, th), Image.NEAREST))
            for value, colour in LABEL_COLOURS.items():
                m = lab == value
                edge = m & ~ndimage.binary_erosion(m, _CROSS, border_value=0)
                tile[edge] = colour
            top, left = head + r * (th + gap), c * (tw + gap)
            out[top:top + th, left:left + tw] = tile
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    failed = failed_names(qc)
    verdict = ("quality checks: " + ("failed " + ", ".join(failed) if failed else "passed")) if qc else ""
    draw.text((4, 2), "  ".join(t for t in (title, " / ".join(f"{n} phase {p}" for n, p in rows)) if t),
              fill=(230, 230, 230))
    draw.text((4, 15), verdict, fill=(255, 90, 90) if failed else (120, 220, 120))
    for r, (name, _) in enumerate(rows):
        draw.text((3, head + r * (th + gap) + 2), name, fill=(255, 255, 0))
    return np.asarray(img)


def _plain(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


__all__ = ["CURVE_JUMP_MAX", "HEART_MOTION_MIN", "MYO_ES_ED", "QC_VERSION", "RING_MIN", "RV_BESIDE_MIN", "RV_GAP_MM",
           "Check", "assess_labels", "beating_check", "continuity_check", "curve_check", "failed_names",
           "myocardium_check", "rim_on_myocardium", "ring_check", "rv_check", "snapshot", "warning_lines"]
