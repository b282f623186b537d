"""Slice misalignment (breath-hold) correction of a short-axis cine stack, from the stack alone.

Each acquired slice is one breath-hold, so its anatomy is displaced in-plane by one translation, the same
in every phase. The estimate combines two measurements per slice k (all in the slice plane, mm along the
stack's i and j axes):

- `r_k`, the translation that best maps the acquired slice onto the network's output at that slice (the SR
  image averaged over the slice profile and resampled onto the LR pixels; weighted Lucas-Kanade on the
  image gradients, phases jointly, in a window of `window_mm` around the SR heart labels). The network
  reconstructs one smooth 3D heart from the whole stack, so its output is (largely) aligned.
- `n_k`, the centroid of the network's LV labels at that slice (LV cavity + myocardium, and LV cavity; per
  phase), i.e. where the network put the heart.

`q_k = n_k + r_k` is where the heart lies in the acquired slice. A smooth through-plane model of the heart
(one straight centre line per structure and phase, fitted jointly with the shifts, Tukey biweight per
slice, initialised by a repeated-median line) takes the anatomy's own course; the residual is the shift.
Slices with little or no LV (above the base, below the apex) and slices the robust fit rejects (e.g. a
basal slice cut by the valve plane) get no estimate (shift 0). A common translation of all slices, and a
shift growing linearly through the stack, are indistinguishable from the heart's own position and
obliquity, so the shifts are reported with zero mean and no linear trend over the estimated slices.

Convention (as `core.synth.acquisition`): slice k shows the anatomy displaced by `shifts_mm[k]`, so the
corrected slice at pixel p takes the acquired value at p + shift (`apply_shifts`); the SR labels of the
corrected stack go onto the acquired slices with `labels_on_acquired` (`shift_labels_to_acquired` moves
labels already on the LR grid).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from gemini_cmr.core.geometry import resample
from gemini_cmr.core.study import Grid, Study

log = logging.getLogger(__name__)

METHOD = "labels+image: SR labels' centroids plus LR-to-SR registration, robust straight centre line"
MIN_AREA_MM2 = 40.0  # smallest LV section used (mm^2)
MIN_AREA_FRACTION = 0.3  # ... and at least this share of the largest section of that structure
TUKEY_MM = 3.0  # residual (mm) beyond which a slice is rejected by the robust fit
END_SLICE_MM = 2.5  # the end slices (base, apex) keep an estimate only below this


@dataclass
class MotionEstimate:
    """Per-slice in-plane translations (mm along the stack's i and j axes) and how they were found."""

    shifts_mm: np.ndarray  # (Z, 2)
    estimated: np.ndarray  # (Z,) bool: False = no estimate for this slice (shift 0)
    method: str = METHOD
    applied: bool = False
    note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # The heart box (SR rows y0:y1, columns x0:x1) the estimation's prediction ran on, for models with
    # heart-region inference: the prediction of the corrected stack reuses it (`Predictor.predict(roi=)`).
    roi: tuple[int, int, int, int] | None = None

    @classmethod
    def none(cls, n_slices: int, note: str) -> MotionEstimate:
        return cls(np.zeros((n_slices, 2)), np.zeros(n_slices, bool), note=note)

    @property
    def magnitude_mm(self) -> np.ndarray:
        return np.linalg.norm(self.shifts_mm, axis=1)

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "applied": bool(self.applied),
            "shifts_mm": np.round(self.shifts_mm, 3).tolist(),
            "axes": "in-plane translation of each acquired slice along the image columns (i) and rows (j), mm",
            "estimated": [bool(v) for v in self.estimated],
            "max_shift_mm": round(float(self.magnitude_mm.max(initial=0.0)), 3),
            "note": self.note,
        }


# --- measurements ------------------------------------------------------------------------------------
def label_centroids(labels: np.ndarray, grid: Grid, structures=((1, 2), (1,))) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (F, Z, 2) in mm along i, j and areas (F, Z) in mm^2 of each structure (a tuple of label
    values) in each phase of (T, Z, Y, X) labels; F = T x len(structures), phase-major."""
    labels = np.asarray(labels)
    _, _, ny, nx = labels.shape
    sx, sy = float(grid.spacing[0]), float(grid.spacing[1])
    ii = np.arange(nx, dtype=np.float64)
    jj = np.arange(ny, dtype=np.float64)
    cents, areas = [], []
    for lab in labels:
        for values in structures:
            m = np.isin(lab, values)
            a = m.sum(axis=(1, 2)).astype(np.float64)
            ci = (m.sum(axis=1) @ ii) / np.maximum(a, 1.0) * sx
            cj = (m.sum(axis=2) @ jj) / np.maximum(a, 1.0) * sy
            cents.append(np.stack([ci, cj], axis=1))
            areas.append(a * sx * sy)
    return np.asarray(cents), np.asarray(areas)


def slab_reference(sr_image: np.ndarray, sr: Grid, lr: Grid, thickness_mm: float) -> np.ndarray:
    """The SR image (T, D, H, W) seen by each LR slice: averaged over the slice profile (box of
    `thickness_mm`) and resampled (linear) onto the LR pixels -> (T, Z, Y, X) float32."""
    sr_step = float(sr.spacing[2])
    n = max(1, int(round(thickness_mm / sr_step)))
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * thickness_mm
    out = np.zeros((len(sr_image), *lr.shape), np.float32)
    for off in offsets:
        aff = lr.affine.copy()
        aff[:3, 3] += lr.normal * off
        out += resample(sr_image, sr, Grid(lr.shape, aff), order=1, mode="nearest")
    return out / len(offsets)


def _standardise(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = w.sum()
    mu = (img * w).sum(axis=(-2, -1), keepdims=True) / sw
    sd = np.sqrt(((img - mu) ** 2 * w).sum(axis=(-2, -1), keepdims=True) / sw)
    return (img - mu) / np.maximum(sd, 1e-6)


def register_translation(moving: np.ndarray, ref: np.ndarray, weight: np.ndarray, max_px: float = 4.0,
                         iters: int = 20) -> np.ndarray:
    """Translation d (pixels, (di, dj)) minimising sum_t sum_x w(x) (moving_t(x + d) - ref_t(x))^2, both
    standardised within the weight; moving, ref (T, Y, X). Integer search then Gauss-Newton."""
    w = weight.astype(np.float64)
    if w.sum() < 10:
        return np.zeros(2)
    ref = _standardise(ref.astype(np.float64), w)
    mov = _standardise(moving.astype(np.float64), w)

    def warp(d: np.ndarray) -> np.ndarray:
        return ndimage.shift(mov, (0.0, -d[1], -d[0]), order=1, mode="nearest")

    best, best_cost = np.zeros(2), np.inf
    r = int(np.ceil(max_px))
    for dj in range(-r, r + 1):
        for di in range(-r, r + 1):
            if di * di + dj * dj > max_px * max_px:
                continue
            c = float((w * (np.roll(mov, (-dj, -di), axis=(1, 2)) - ref) ** 2).sum())
            if c < best_cost:
                best, best_cost = np.array([di, dj], float), c
    d = best
    for _ in range(iters):
        m = warp(d)
        gj, gi = np.gradient(m, axis=(1, 2))
        e = m - ref
        a11 = (w * gi * gi).sum()
        a12 = (w * gi * gj).sum()
        a22 = (w * gj * gj).sum()
        b1 = (w * gi * e).sum()
        b2 = (w * gj * e).sum()
        det = a11 * a22 - a12 * a12
        if det <= 1e-9:
            break
        step = -np.array([a22 * b1 - a12 * b2, a11 * b2 - a12 * b1]) / det
        d = d + step
        if np.hypot(*step) < 1e-3:
            break
    if np.hypot(*d) > max_px + 1.0:
        return best
    return d


# --- the smooth model --------------------------------------------------------------------------------
def _repeated_median_line(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    slopes = []
    for a in range(len(z)):
        d = [(y[b] - y[a]) / (z[b] - z[a]) for b in range(len(z)) if b != a]
        slopes.append(np.median(d, axis=0))
    b = np.median(slopes, axis=0)
    a = np.median(y - np.outer(z, b), axis=0)
    return a, b


def fit_shifts(positions: np.ndarray, areas: np.ndarray, z: np.ndarray,
               c_mm: float = TUKEY_MM, end_mm: float = END_SLICE_MM, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Shifts (Z, 2) and estimated (Z,) from heart positions (F, Z, 2) and section areas (F, Z).

    Interior slices: positions = a_f + b_f z + shift_k + noise, solved jointly (Tukey biweight on each
    slice's residual, from a repeated-median start). The first and last slice with LV (the base, cut by the
    valve plane; the apical cap) do not shape the centre lines: their shift is their residual to them, kept
    when below `end_mm`. Zero mean and linear trend over the estimated slices."""
    nf, nz, _ = positions.shape
    amax = areas.max(axis=1, keepdims=True)
    use = (areas >= MIN_AREA_FRACTION * amax) & (areas >= MIN_AREA_MM2)
    w0 = np.where(use, np.sqrt(areas / np.maximum(amax, 1e-9)), 0.0)
    support = w0.sum(0)
    k_heart = np.flatnonzero(support > 0)
    s = np.zeros((nz, 2))
    est = np.zeros(nz, bool)
    if len(k_heart) < 4:
        return s, est
    ends = np.zeros(nz, bool)
    if len(k_heart) >= 6:
        ends[[k_heart[0], k_heart[-1]]] = True
    inner = (support > 0) & ~ends
    zc = (z - z.mean()) / max(float(np.ptp(z)), 1e-9)
    V = np.stack([zc, np.ones_like(zc)], axis=1)
    wi = np.where(inner[None], w0, 0.0)
    # start: the median over features of the residuals to a repeated-median line through the interior
    res, have = np.zeros_like(positions), np.zeros(wi.shape, bool)
    for f in range(nf):
        k = np.flatnonzero(wi[f] > 0)
        if len(k) < 3:
            wi[f] = 0.0
            continue
        a, b = _repeated_median_line(zc[k], positions[f, k])
        res[f, k] = positions[f, k] - (a[None] + np.outer(zc[k], b))
        have[f, k] = True
    for k in range(nz):
        if have[:, k].any():
            s[k] = np.median(res[have[:, k], k], axis=0)
    rw = np.ones_like(wi)
    pred = np.zeros_like(positions)
    fitted = np.zeros(nf, bool)
    for _ in range(iters):
        ww = wi * rw
        for f in range(nf):
            fitted[f] = (ww[f] > 0).sum() >= 3
            if not fitted[f]:
                continue
            sw = np.sqrt(ww[f])[:, None]
            coef = np.linalg.lstsq(V * sw, (positions[f] - s) * sw, rcond=None)[0]
            pred[f] = V @ coef
        r = np.linalg.norm(positions - pred - s[None], axis=2)
        r_slice = np.sqrt((wi * r**2).sum(0) / np.maximum(wi.sum(0), 1e-9))
        rw = np.where(r_slice[None] < c_mm, (1.0 - (r_slice[None] / c_mm) ** 2) ** 2, 0.0) * np.ones_like(wi)
        ww = wi * rw
        den = ww.sum(0)
        s = np.where(den[:, None] > 0,
                     (ww[..., None] * (positions - pred)).sum(0) / np.maximum(den, 1e-12)[:, None], 0.0)
    est = inner & (den > 0)
    if est.sum() < 3:
        return np.zeros((nz, 2)), np.zeros(nz, bool)
    # the end slices against the interior's centre lines
    we = np.where(fitted[:, None], w0, 0.0)
    for k in np.flatnonzero(ends):
        if we[:, k].sum() <= 0:
            continue
        sk = (we[:, k, None] * (positions[:, k] - pred[:, k])).sum(0) / we[:, k].sum()
        if np.hypot(*sk) < end_mm:
            s[k], est[k] = sk, True
    s[~est] = 0.0
    Vt = np.stack([z[est], np.ones(int(est.sum()))], axis=1)
    s[est] -= Vt @ np.linalg.lstsq(Vt, s[est], rcond=None)[0]
    return s, est


# --- applying ----------------------------------------------------------------------------------------
def shift_px(shifts_mm: np.ndarray, grid: Grid) -> np.ndarray:
    return np.asarray(shifts_mm, np.float64) / np.asarray(grid.spacing[:2], np.float64)[None]


def apply_shifts(image: np.ndarray, grid: Grid, shifts_mm: np.ndarray, order: int = 3) -> np.ndarray:
    """Corrected copy of a (T, Z, Y, X) image: slice k resampled at p + shift_k (cubic B-spline, edge
    values beyond the field of view)."""
    out = np.array(image, dtype=np.float32, copy=True)
    for k, (di, dj) in enumerate(shift_px(shifts_mm, grid)):
        if abs(di) < 1e-6 and abs(dj) < 1e-6:
            continue
        out[:, k] = ndimage.shift(out[:, k], (0.0, -dj, -di), order=order, mode="nearest")
    return out


def shift_labels_to_acquired(labels: np.ndarray, grid: Grid, shifts_mm: np.ndarray) -> np.ndarray:
    """Labels (T, Z, Y, X) of the corrected stack moved back onto the acquired slices (nearest)."""
    out = np.array(labels, copy=True)
    for k, (di, dj) in enumerate(shift_px(shifts_mm, grid)):
        if abs(di) < 1e-6 and abs(dj) < 1e-6:
            continue
        out[:, k] = ndimage.shift(labels[:, k], (0.0, dj, di), order=0, mode="constant", cval=0)
    return out


def labels_on_acquired(sr_labels: np.ndarray, sr: Grid, grid: Grid, shifts_mm: np.ndarray) -> np.ndarray:
    """SR labels (T, D, H, W) of the corrected stack on the acquired slices (T, Z, Y, X): slice k's pixel p
    takes the SR label nearest to world(p) - shift_k (one nearest-neighbour step)."""
    from gemini_cmr.core.geometry import resample_nearest_stack

    nz, ny, nx = grid.shape
    out = np.zeros((len(sr_labels), nz, ny, nx), np.uint8)
    d = grid.directions
    for k in range(nz):
        aff = grid.affine.copy()
        aff[:3, 3] = grid.index_to_world(np.array([0.0, 0.0, float(k)])) - d[:, :2] @ np.asarray(shifts_mm[k], float)
        out[:, k] = resample_nearest_stack(sr_labels, sr, Grid((1, ny, nx), aff))[:, 0]
    return out


def corrected_study(study: Study, shifts_mm: np.ndarray) -> Study:
    """A copy of `study` whose image is motion-corrected (labels, times and metadata as they were)."""
    import copy

    out = copy.copy(study)
    out.image = apply_shifts(study.image, study.grid, shifts_mm)
    return out


def estimate_from_prediction(image: np.ndarray, grid: Grid, sr_image: np.ndarray, sr_labels: np.ndarray,
                             sr: Grid, thickness_mm: float, window_mm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Shifts (Z, 2) mm and estimated (Z,) of the stack `image` (T', Z, Y, X: the phases of the prediction)
    from one prediction of it (SR image and labels (T', D, H, W) on `sr`). Only the box around the SR
    heart labels (plus the window and the largest shift searched) is resampled and registered."""
    from gemini_cmr.core.geometry import resample_nearest_stack

    nz, ny, nx = grid.shape
    lab = resample_nearest_stack(sr_labels, sr, grid)
    heart = (lab > 0).any(axis=0)
    if not heart.any():
        return np.zeros((nz, 2)), np.zeros(nz, bool)
    px = float(np.mean(grid.spacing[:2]))
    it = max(1, int(round(window_mm / px)))
    margin = it + 8
    jj = np.flatnonzero(heart.any(axis=(0, 2)))
    ii = np.flatnonzero(heart.any(axis=(0, 1)))
    j0, j1 = max(0, jj[0] - margin), min(ny, jj[-1] + margin + 1)
    i0, i1 = max(0, ii[0] - margin), min(nx, ii[-1] + margin + 1)
    aff = grid.affine.copy()
    aff[:3, 3] = grid.index_to_world(np.array([float(i0), float(j0), 0.0]))
    box = Grid((nz, j1 - j0, i1 - i0), aff)
    ref = slab_reference(sr_image, sr, box, thickness_mm)
    img = np.asarray(image)[:, :, j0:j1, i0:i1]
    hb = heart[:, j0:j1, i0:i1]
    r = np.zeros((nz, 2))
    for k in range(nz):
        if hb[k].sum() < 10:
            continue
        win = ndimage.binary_dilation(hb[k], iterations=it)
        wk = ndimage.gaussian_filter(win.astype(np.float64), 1.0)
        r[k] = register_translation(img[:, k], ref[:, k], wk) * grid.spacing[:2]
    cen, area = label_centroids(lab, grid)
    z = np.arange(nz) * float(grid.spacing[2])
    return fit_shifts(cen + r[None], area, z)


# --- the engine's entry point ------------------------------------------------------------------------
MIN_SLICES = 4  # fewer slices cannot separate the heart's course from the shifts
ESTIMATION_PHASES = 2  # phases predicted for the estimate (the shifts are the same in every phase)
ROUNDS = 1  # estimate (2: correct, predict again, refine: 0.78 against 0.86 mm, twice the time)


def default_enabled(study: Study) -> bool:
    """Motion correction by default: on for every study (phantoms included: their slices are shifted
    like real breath-holds); `--no-motion-correction` / `motion_correction=False` turns it off."""
    return True


def estimation_phases(study: Study, n: int | None = None) -> list[int]:
    """Up to `n` phases spread over the cycle, ED and ES (when the study states them) among them."""
    t = study.n_phases
    n = ESTIMATION_PHASES if n is None else int(n)
    chosen = {int(p) for p in (study.meta.ed_phase, study.meta.es_phase) if p is not None and 0 <= p < t}
    for p in np.linspace(0, t, n, endpoint=False):
        if len(chosen) >= n:
            break
        chosen.add(int(p))
    return sorted(chosen)


def estimate_motion(predictor, study: Study, rounds: int = ROUNDS, cancel=None) -> MotionEstimate:
    """Per-slice shifts of `study` (the LR cine as the network will see it) from `rounds` predictions of a
    few phases (`estimation_phases`), each on the stack corrected by the previous rounds. `predictor` has
    the `Predictor.predict` interface. Nothing is applied here (`corrected_study`)."""
    import time

    nz = study.n_slices
    if nz < MIN_SLICES:
        what = "single-slice stack" if nz == 1 else f"{nz}-slice stack"
        return MotionEstimate.none(nz, f"{what}: no motion correction (needs at least {MIN_SLICES} slices)")
    t0 = time.perf_counter()
    phases = estimation_phases(study)
    grid = study.grid
    thickness = float(study.meta.slice_thickness_mm or 0.0) or float(grid.spacing[2])
    thickness = min(thickness, float(grid.spacing[2]))
    total = np.zeros((nz, 2))
    est = np.zeros(nz, bool)
    timings = {"predict": 0.0, "estimate": 0.0}
    current = study
    roi = None
    for r in range(max(1, int(rounds))):
        if cancel is not None and cancel():
            from gemini_cmr.core.errors import Cancelled

            raise Cancelled("super-resolution cancelled")
        t = time.perf_counter()
        pred = predictor.predict(current, phases=phases)
        timings["predict"] += time.perf_counter() - t
        if r == 0:
            roi = getattr(pred, "roi", None)
        t = time.perf_counter()
        ds, e = estimate_from_prediction(current.image[phases], grid, np.asarray(pred.sr_image),
                                         np.asarray(pred.sr_labels), pred.sr_grid, thickness)
        timings["estimate"] += time.perf_counter() - t
        if r == 0:
            est = e
        if est.sum() < 3:
            break
        total = total + np.where(est[:, None], ds, 0.0)
        if r + 1 < rounds:
            current = corrected_study(study, total)
    timings["total"] = time.perf_counter() - t0
    if est.sum() < 3:
        return MotionEstimate(np.zeros((nz, 2)), np.zeros(nz, bool), applied=False, timings=timings,
                              note="too few slices with a clear LV section: no motion correction", roi=roi)
    n_est = int(est.sum())
    note = f"shifts estimated on {n_est} of {nz} slices (the others, without a clear LV section, kept as acquired)"
    return MotionEstimate(total, est, applied=True, note=note, timings=timings, roi=roi)
