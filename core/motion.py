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
basal slice cut by the valve plane) get no estimate (shift 0). What the slices share (the centre lines,
which slices are the ends, the mean and trend) depends smoothly on the labels, so a small change of them
moves the other slices' shifts a little, whether or not one slice gets its own. A common translation of
all slices, and a shift growing linearly through the stack, are indistinguishable from the heart's own
position and obliquity, so the shifts are reported with zero mean and no linear trend over the slices
(each weighted by its share in the fit).

Convention (as `core.synth.acquisition`): slice k shows the anatomy displaced by `shifts_mm[k]`, so the
corrected slice at pixel p takes the acquired value at p + shift (`apply_shifts`); the SR labels of the
corrected stack go onto the acquired slices with `labels_on_acquired` (`shift_labels_to_acquired` moves
labels already on the LR grid).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from gemini_cmr.core.geometry import resample, shifts_in_pixels
from gemini_cmr.core.parallel import thread_workers
from gemini_cmr.core.study import Grid, Study

log = logging.getLogger(__name__)

METHOD = "labels+image: SR labels' centroids plus LR-to-SR registration, robust straight centre line"
CLEAR_MM2 = (30.0, 50.0)  # an LV section's weight rises from 0 to 1 between these areas (mm^2) ...
CLEAR_FRACTION = (0.15, 0.45)  # ... and between these shares of the largest section of that structure
TUKEY_MM = 3.0  # residual (mm) beyond which a slice is rejected by the robust fit
END_SLICE_MM = 2.5  # the end slices (base, apex) keep an estimate below this
END_GAUGE_MM = 5.0  # ... and count in the zero mean and trend with a Tukey biweight of this scale


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
    net_roi: tuple[int, int, int, int] | None = None  # the part of `roi` the network ran on
    # the long-axis evidence (`combine_long_axis`): per view its direction, slices used, offset
    long_axis: list[dict] = field(default_factory=list)
    # the heart-finding pass's notes (`Prediction.notes`) of the estimation's prediction, whose box is reused
    heart_notes: list[str] = field(default_factory=list)

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
            **({"long_axis": self.long_axis} if self.long_axis else {}),
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


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below `lo`, 1 above `hi`, a smooth step (C1) between."""
    t = np.clip((np.asarray(x, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _biweight(r: np.ndarray, c: float) -> np.ndarray:
    """Tukey's biweight of residuals `r` at scale `c`: 1 at 0, falling smoothly to 0 at `c` and beyond."""
    r = np.abs(np.asarray(r, np.float64))
    return np.where(r < c, (1.0 - (r / c) ** 2) ** 2, 0.0)


def section_clarity(areas: np.ndarray) -> np.ndarray:
    """How clear each structure's section is on each slice (F, Z) in [0, 1], from the section areas (F, Z,
    mm^2): rising smoothly from 0 to 1 across `CLEAR_FRACTION` of the structure's largest section and across
    `CLEAR_MM2`. A section near a threshold gets a partial weight, so a small change of the labels (another
    precision, another phase) moves the estimate a little instead of switching a slice in or out."""
    areas = np.asarray(areas, np.float64)
    amax = np.maximum(areas.max(axis=1, keepdims=True), 1e-9)
    return _ramp(areas / amax, *CLEAR_FRACTION) * _ramp(areas, *CLEAR_MM2)


def fit_shifts(positions: np.ndarray, areas: np.ndarray, z: np.ndarray, c_mm: float = TUKEY_MM,
               end_mm: float = END_SLICE_MM, iters: int = 30, with_weights: bool = False) -> tuple[np.ndarray, ...]:
    """Shifts (Z, 2) and estimated (Z,) from heart positions (F, Z, 2) and section areas (F, Z);
    `with_weights`: also each slice's weight for centring other evidence on the estimate (Z,): 0 on the slices
    without an estimate and falling smoothly to 0 towards each threshold of a slice's own estimate (presence
    1/2, `c_mm`, `end_mm`), so that a slice whose estimate switches off has already lost its weight.

    Interior slices: positions = a_f + b_f z + shift_k + noise, solved jointly (Tukey biweight on each
    slice's residual, from a repeated-median start). The end slices (the base, cut by the valve plane; the
    apical cap) do not shape the centre lines: their shift is their residual to them, kept when below
    `end_mm`. Shifts and lines are known up to a common translation and trend: the shifts are given with
    zero mean and trend over the slices, each weighted by its share in the fit (an end slice by a biweight
    of its residual, `END_GAUGE_MM`).

    What the slices share (the centre lines, the end-slice role, the mean and trend) depends on the labels
    smoothly, so that a small change of them (another precision, another model) cannot move every slice at
    once by switching one slice in or out:
    - a section's weight is its clarity (`section_clarity`) times sqrt(its area share);
    - a slice's presence is its clearest section's clarity; its interior share is the presence of the
      clearest slice on its other side, whichever side has less (a slice beyond which nothing clear lies is
      an end; next to a faint end slice, a slice is partly an end itself).
    Whether a slice gets its own shift is a decision about that slice alone: it is clear (presence at least
    1/2: the area thresholds' middle) and, as an interior slice (interior share at least 1/2), its residual
    to the fit is below `c_mm`, or, as an end slice, its shift is below `end_mm`. Else its shift is 0."""
    s, est, weights = _fit_shifts(positions, areas, z, c_mm, end_mm, iters)
    return (s, est, weights) if with_weights else (s, est)


def _fit_shifts(positions: np.ndarray, areas: np.ndarray, z: np.ndarray, c_mm: float, end_mm: float,
                iters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nf, nz, _ = positions.shape
    amax = areas.max(axis=1, keepdims=True)
    clarity = section_clarity(areas)
    w0 = clarity * np.sqrt(np.clip(areas / np.maximum(amax, 1e-9), 0.0, None))
    presence = clarity.max(axis=0)
    s = np.zeros((nz, 2))
    none = (np.zeros((nz, 2)), np.zeros(nz, bool), np.zeros(nz))
    if (presence >= 0.5).sum() < 4:
        return none
    # the end role: full with 6 or more clear slices, none with 5 or fewer
    end_strength = float(np.clip(presence.sum() - 5.0, 0.0, 1.0))
    below = np.concatenate([[0.0], np.maximum.accumulate(presence)[:-1]])
    above = np.concatenate([np.maximum.accumulate(presence[::-1])[::-1][1:], [0.0]])
    interior = (1.0 - end_strength * (1.0 - np.minimum(below, above))) * (presence > 0)
    zc = (z - z.mean()) / max(float(np.ptp(z)), 1e-9)
    V = np.stack([zc, np.ones_like(zc)], axis=1)
    wi = w0 * interior[None]
    # start: the median over features of the residuals to a repeated-median line through the clear interior
    res, have = np.zeros_like(positions), np.zeros(wi.shape, bool)
    for f in range(nf):
        k = np.flatnonzero(wi[f] >= 0.5 * max(float(wi[f].max()), 1e-12))
        if len(k) < 3 or (wi[f] > 0).sum() < 3:
            wi[f] = 0.0
            continue
        a, b = _repeated_median_line(zc[k], positions[f, k])
        res[f, k] = positions[f, k] - (a[None] + np.outer(zc[k], b))
        have[f, k] = True
    for k in range(nz):
        if have[:, k].any():
            s[k] = np.median(res[have[:, k], k], axis=0)
    rw = np.ones(nz)
    pred = np.zeros_like(positions)
    fitted = np.zeros(nf, bool)
    r_slice = np.zeros(nz)
    den = np.zeros(nz)
    for _ in range(iters):
        ww = wi * rw[None]
        for f in range(nf):
            fitted[f] = (ww[f] > 0).sum() >= 3
            if not fitted[f]:
                continue
            sw = np.sqrt(ww[f])[:, None]
            coef = np.linalg.lstsq(V * sw, (positions[f] - s) * sw, rcond=None)[0]
            pred[f] = V @ coef
        # every slice's shift: its features' mean residual to the centre lines (the end slices' too)
        we = np.where(fitted[:, None], w0, 0.0)
        den = we.sum(0)
        s = np.where(den[:, None] > 0, (we[..., None] * (positions - pred)).sum(0) / np.maximum(den, 1e-12)[:, None], 0.0)
        r = np.linalg.norm(positions - pred - s[None], axis=2)
        r_slice = np.sqrt((we * r**2).sum(0) / np.maximum(den, 1e-9))
        rw = _biweight(r_slice, c_mm)
    # zero mean and trend over the slices that shape the lines, weighted by their share in the fit ...
    Vt = np.stack([z, np.ones(nz)], axis=1)

    def detrended(shifts: np.ndarray, weight: np.ndarray) -> np.ndarray:
        sw = np.sqrt(weight)[:, None]
        return shifts - Vt @ np.linalg.lstsq(Vt * sw, shifts * sw, rcond=None)[0]

    inner = presence * interior * rw * (den > 0)
    if (inner > 0).sum() < 3:
        return none
    s = detrended(s, inner)
    # ... and the end slices with their residual to the interior's lines (a biweight: a slice's weight falls
    # smoothly to 0 at `END_GAUGE_MM`)
    d_end = np.hypot(s[:, 0], s[:, 1])
    ends = presence * (1.0 - interior) * _biweight(d_end, END_GAUGE_MM)
    s = detrended(s, inner + ends * (den > 0))
    as_interior = interior >= 0.5
    est = (presence >= 0.5) & (den > 0) & np.where(as_interior, r_slice < c_mm, d_end < end_mm)
    if est.sum() < 3:
        return none
    s[~est] = 0.0
    weights = _ramp(presence, 0.5, 1.0) * (interior * rw + (1.0 - interior) * _biweight(d_end, end_mm)) * est
    return s, est, weights


# --- applying ----------------------------------------------------------------------------------------

def apply_shifts(image: np.ndarray, grid: Grid, shifts_mm: np.ndarray, order: int = 3) -> np.ndarray:
    """Corrected copy of a (T, Z, Y, X) image: slice k resampled at p + shift_k (cubic B-spline, edge
    values beyond the field of view), each phase's image in-plane on its own. This is one 3D resampling of
    the slice's (T, Y, X) cine with no shift along T but without the spline along T, which only reproduces
    the samples (to float64 rounding): the same float32 images, measured identical on the Sunnybrook and
    demo studies, in about a quarter of the time (`benchmarks/bench_motion.py`). The images are resampled
    on parallel threads (scipy.ndimage releases the GIL; `core.parallel.thread_workers`)."""
    out = np.array(image, dtype=np.float32, copy=True)
    jobs = [(t, k, di, dj) for k, (di, dj) in enumerate(shifts_in_pixels(shifts_mm, grid))
            if abs(di) >= 1e-6 or abs(dj) >= 1e-6 for t in range(out.shape[0])]

    def one(job: tuple[int, int, float, float]) -> None:
        t, k, di, dj = job
        out[t, k] = ndimage.shift(out[t, k], (-dj, -di), order=order, mode="nearest")

    workers = min(thread_workers(), len(jobs))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(one, jobs):
                pass
    else:
        for job in jobs:
            one(job)
    return out


def shift_labels_to_acquired(labels: np.ndarray, grid: Grid, shifts_mm: np.ndarray) -> np.ndarray:
    """Labels (T, Z, Y, X) of the corrected stack moved back onto the acquired slices (nearest)."""
    out = np.array(labels, copy=True)
    for k, (di, dj) in enumerate(shifts_in_pixels(shifts_mm, grid)):
        if abs(di) < 1e-6 and abs(dj) < 1e-6:
            continue
        out[:, k] = ndimage.shift(labels[:, k], (0.0, dj, di), order=0, mode="constant", cval=0)
    return out


def labels_on_acquired(sr_labels: np.ndarray, sr: Grid, grid: Grid, shifts_mm: np.ndarray | None) -> np.ndarray:
    """SR labels (T, D, H, W) of the corrected stack on the acquired slices (T, Z, Y, X): slice k's pixel p
    takes the SR labels at world(p) - shift_k, boundaries between the SR pixels
    (`core.geometry.labels_onto_slices`); `shifts_mm` None: no correction applied."""
    from gemini_cmr.core.geometry import labels_onto_slices

    return labels_onto_slices(sr_labels, sr, grid, shifts_mm)


def corrected_study(study: Study, shifts_mm: np.ndarray) -> Study:
    """A copy of `study` whose image is motion-corrected (labels, times and metadata as they were)."""
    import copy

    out = copy.copy(study)
    out.image = apply_shifts(study.image, study.grid, shifts_mm)
    return out


def accepts_keyword(fn, name: str, via_kwargs: bool = True) -> bool:
    """`fn` accepts the keyword argument `name` (a predictor with an older `predict` interface does not);
    `via_kwargs` False: only as a parameter of that name (not through `**kwargs`, which may drop it)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or (via_kwargs and p.kind is inspect.Parameter.VAR_KEYWORD) for p in params)


def predict_corrected(predictor, study: Study, shifts_mm: np.ndarray | None, **kw):
    """`predictor.predict(...)` of `study` with its slices' `shifts_mm` undone. A predictor whose `predict`
    names `shifts_mm` (`core.predict.Predictor`) undoes them as it places the stack on the SR grid (one
    in-plane interpolation, no corrected copy of the cine); any other predicts `corrected_study`."""
    if shifts_mm is None:
        return predictor.predict(study, **kw)
    if accepts_keyword(predictor.predict, "shifts_mm", via_kwargs=False):
        return predictor.predict(study, shifts_mm=np.asarray(shifts_mm, np.float64), **kw)
    return predictor.predict(corrected_study(study, shifts_mm), **kw)


def estimate_from_prediction(image: np.ndarray, grid: Grid, sr_image: np.ndarray, sr_labels: np.ndarray,
                             sr: Grid, thickness_mm: float, window_mm: float = 10.0,
                             with_weights: bool = False) -> tuple[np.ndarray, ...]:
    """Shifts (Z, 2) mm and estimated (Z,) (and with `with_weights` the slices' weights, `fit_shifts`) of the stack `image` (T', Z, Y, X: the phases of the prediction)
    from one prediction of it (SR image and labels (T', D, H, W) on `sr`). Only the box around the SR
    heart labels (plus the window and the largest shift searched) is resampled and registered."""
    from gemini_cmr.core.geometry import resample_nearest_stack

    nz, ny, nx = grid.shape
    lab = resample_nearest_stack(sr_labels, sr, grid)
    heart = (lab > 0).any(axis=0)
    if not heart.any():
        return (np.zeros((nz, 2)), np.zeros(nz, bool)) + ((np.zeros(nz),) if with_weights else ())
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
    return fit_shifts(cen + r[None], area, z, with_weights=with_weights)


# --- long-axis evidence ------------------------------------------------------------------------------
LA_STEP_MM = 0.5  # sampling step along an intersection line
LA_SEARCH_MM = 8.0  # largest 1D offset searched
LA_WINDOW_MM = 10.0  # the profiles are compared within this distance of the heart on the line
LA_MIN_WINDOW_MM = 20.0  # a line with less heart window gives no measurement
SIGMA_SA_MM = 0.7  # noise of the short-axis estimate (per component) ...
SIGMA_LA_MM = 0.7  # ... and of a long-axis profile offset, for the weighted least squares
PRIOR_TREND_MM = 2.0  # prior sd of the mean/trend the short-axis estimate cannot see (per slab length)


def _sample2d(img: np.ndarray, grid: Grid, world: np.ndarray) -> np.ndarray:
    """(T, Y, X) image of a single-slice plane of `grid` at world points (...) -> (T, ...) (linear, edge)."""
    idx = grid.world_to_index(world)
    coords = np.stack([idx[..., 1], idx[..., 0]])
    return np.stack([ndimage.map_coordinates(np.asarray(im, np.float64), coords, order=1, mode="nearest")
                     for im in img])


def _std1(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = w.sum()
    mu = (a * w).sum(axis=-1, keepdims=True) / sw
    sd = np.sqrt(((a - mu) ** 2 * w).sum(axis=-1, keepdims=True) / sw)
    return (a - mu) / np.maximum(sd, 1e-6)


def profile_offset(a: np.ndarray, b_fn, t: np.ndarray, w: np.ndarray, search_mm: float = LA_SEARCH_MM,
                   step: float = 0.25) -> tuple[float, float]:
    """The 1D offset d (mm) minimising sum_t w(t) (a(t) - b(t - d))^2 over phases, both standardised within
    w; `b_fn(t)` samples b at any positions (T, len(t)). Returns (d, quality: 1 - cost(d) / median cost)."""
    a = _std1(a, w)
    ds = np.arange(-search_mm, search_mm + 1e-9, step)
    cost = np.array([float((w * (a - _std1(b_fn(t - d), w)) ** 2).sum()) for d in ds])
    k = int(np.argmin(cost))
    d = float(ds[k])
    if 0 < k < len(ds) - 1:
        c0, c1, c2 = cost[k - 1], cost[k], cost[k + 1]
        den = c0 - 2 * c1 + c2
        if den > 1e-12:
            d += float(np.clip(0.5 * (c0 - c2) / den, -0.5, 0.5)) * step
    elif k in (0, len(ds) - 1):
        return d, 0.0  # at the edge of the search: no minimum found
    return d, float(1.0 - cost[k] / max(np.median(cost), 1e-12))


def long_axis_measurements(image: np.ndarray, grid: Grid, heart: np.ndarray, la_image: np.ndarray, la_grid: Grid,
                           thickness_mm: float) -> dict:
    """Per short-axis slice, the 1D offset between the slice and a long-axis image along their intersection
    line (`core.longaxis.intersection_lines`): image (T, Z, Y, X) and la_image (T, Y, X) the same phases;
    heart (Z, Y, X) bool, where the heart is on each slice. Each profile averages its image across the
    other acquisition's slice thickness (the short-axis slice across the long-axis slab, the long-axis image
    across the short-axis one), so both see the same box of anatomy. The offset of slice k,
    delta_k = (s_k - o) . d, relates its shift s_k and the long-axis offset o along the line direction d.
    Returns {"d_sa": (2,), "d_la": (2,), "delta": (Z,), "weight": (Z,)}."""
    from gemini_cmr.core.longaxis import intersection_lines

    nz = grid.shape[0]
    delta, weight = np.zeros(nz), np.zeros(nz)
    lines = intersection_lines(la_grid, grid)
    out = {"d_sa": np.zeros(2), "d_la": np.zeros(2), "delta": delta, "weight": weight}
    if not lines:
        return out
    d = lines[0].direction
    e = grid.directions
    a_dir = la_grid.directions
    out["d_sa"] = np.array([d @ e[:, 0], d @ e[:, 1]])
    out["d_la"] = np.array([d @ a_dir[:, 0], d @ a_dir[:, 1]])
    q_sa = np.cross(grid.normal, d)  # across the line in the short-axis plane (~ the long-axis normal)
    q_la = np.cross(la_grid.normal, d)  # across the line in the long-axis plane (~ the short-axis normal)
    la_thick = float(np.clip(la_grid.spacing[2], 2.0, 12.0))
    bands_sa = np.linspace(-la_thick / 2, la_thick / 2, 5)
    bands_la = np.linspace(-thickness_mm / 2, thickness_mm / 2, 5)
    for ln in lines:
        k = ln.slice
        if heart[k].sum() < 10:
            continue
        t = np.arange(ln.t_range[0], ln.t_range[1], LA_STEP_MM)
        if len(t) < 10:
            continue
        slice_grid = Grid((1, *grid.shape[1:]), _slice_affine(grid, k))
        # where the heart is along the line (nearest short-axis pixel), widened by the window
        idx = slice_grid.world_to_index(ln.world(t))
        ii = np.clip(np.rint(idx[:, 0]).astype(int), 0, grid.shape[2] - 1)
        jj = np.clip(np.rint(idx[:, 1]).astype(int), 0, grid.shape[1] - 1)
        on = heart[k][jj, ii]
        if not on.any():
            continue
        dist = ndimage.distance_transform_edt(~on) * LA_STEP_MM
        w = ndimage.gaussian_filter1d((dist <= LA_WINDOW_MM).astype(np.float64), 1.0 / LA_STEP_MM)
        if (dist <= LA_WINDOW_MM).sum() * LA_STEP_MM < LA_MIN_WINDOW_MM:
            continue
        a = np.mean([_sample2d(image[:, k], slice_grid, ln.world(t) + b * q_sa) for b in bands_sa], axis=0)

        def b_fn(tt, ln=ln):
            return np.mean([_sample2d(la_image, la_grid, ln.world(tt) + b * q_la) for b in bands_la], axis=0)

        off, quality = profile_offset(a, b_fn, t, w)
        if quality > 0.2:
            delta[k], weight[k] = off, min(1.0, quality / 0.5)
    return out


def _slice_affine(grid: Grid, k: int) -> np.ndarray:
    aff = grid.affine.copy()
    aff[:3, 3] = grid.index_to_world(np.array([0.0, 0.0, float(k)]))
    return aff


def combine_long_axis(shifts: np.ndarray, est: np.ndarray, z: np.ndarray, views: list[dict],
                      sigma_sa: float = SIGMA_SA_MM, sigma_la: float = SIGMA_LA_MM,
                      tukey_mm: float = TUKEY_MM, weights: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Shifts (Z, 2) on the estimated slices combining the short-axis estimate (known up to a common
    translation and a linear trend through the stack: both unknowns here, with a weak prior) with the
    long-axis measurements (`long_axis_measurements`: d . x_k - c_v = delta_k, one unknown offset c_v per
    view), by weighted least squares with a Tukey biweight on the long-axis residuals. Returns the shifts
    (zero mean over the estimated slices, weighted by `weights` (Z,) where given: `fit_shifts(with_weights=)`,
    whose weights fade before a slice's own estimate switches off, so that the switch moves no other slice)
    and c_v per view (the long-axis offset minus the stack's mean shift, along each view's line, mm)."""
    k_est = np.flatnonzero(est)
    n = len(k_est)
    wc = np.ones(n) if weights is None else np.asarray(weights, np.float64)[k_est]
    wc = wc / wc.sum() if wc.sum() > 0 else np.full(n, 1.0 / max(n, 1))
    nv = len(views)
    if n < 3 or nv == 0:
        return shifts, [0.0] * nv
    zc = (z[k_est] - z[k_est].mean()) / max(float(np.ptp(z[k_est])), 1e-9)
    # unknowns: x (n x 2), a (2), b (2), c (nv)
    nu = 2 * n + 4 + nv
    la_w = [np.asarray(v["weight"], float)[k_est].copy() for v in views]
    rob = [np.ones(n) for _ in views]
    sol = None
    for _ in range(4):
        rows, rhs, wts = [], [], []
        for i, k in enumerate(k_est):
            for c in range(2):
                r = np.zeros(nu)
                r[2 * i + c] = 1.0
                r[2 * n + c] = -1.0
                r[2 * n + 2 + c] = -zc[i]
                rows.append(r)
                rhs.append(shifts[k, c])
                wts.append(1.0 / sigma_sa)
        for c in range(4):  # weak prior on the mean and trend of the short-axis estimate
            r = np.zeros(nu)
            r[2 * n + c] = 1.0
            rows.append(r)
            rhs.append(0.0)
            wts.append(1.0 / PRIOR_TREND_MM)
        for c in range(2):  # gauge: zero (weighted) mean shift
            r = np.zeros(nu)
            r[c:2 * n:2] = wc
            rows.append(r)
            rhs.append(0.0)
            wts.append(100.0)
        for v, view in enumerate(views):
            d = np.asarray(view["d_sa"], float)
            for i, k in enumerate(k_est):
                wk = la_w[v][i] * rob[v][i]
                if wk <= 0:
                    continue
                r = np.zeros(nu)
                r[2 * i:2 * i + 2] = d
                r[2 * n + 4 + v] = -1.0
                rows.append(r)
                rhs.append(float(view["delta"][k]))
                wts.append(np.sqrt(wk) / sigma_la)
        A = np.asarray(rows) * np.asarray(wts)[:, None]
        y = np.asarray(rhs) * np.asarray(wts)
        sol = np.linalg.lstsq(A, y, rcond=None)[0]
        x = sol[: 2 * n].reshape(n, 2)
        for v, view in enumerate(views):
            d = np.asarray(view["d_sa"], float)
            res = x @ d - sol[2 * n + 4 + v] - np.asarray(view["delta"], float)[k_est]
            rob[v] = _biweight(res, tukey_mm)
    x = sol[: 2 * n].reshape(n, 2)
    out = np.zeros_like(shifts)
    out[k_est] = x - wc @ x
    return out, [float(sol[2 * n + 4 + v]) for v in range(nv)]


def long_axis_evidence(study: Study, phases: list[int], sr_labels: np.ndarray, sr: Grid, shifts: np.ndarray,
                       est: np.ndarray, long_axis: list, thickness_mm: float,
                       weights: np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
    """The short-axis estimate `shifts`/`est` of `study` combined with the long-axis cines `long_axis`
    (`core.longaxis.LongAxisCine`s checked against the stack): per view the profile offsets along its
    intersection lines with the acquired slices (`long_axis_measurements`, the prediction's phases and the
    long-axis phases matched to them), then `combine_long_axis`. Returns the shifts and one record per view
    (view, direction, slices measured, the long-axis offset along the line in its i, j axes, `offset_mm`)."""
    from gemini_cmr.core.geometry import resample_nearest_stack
    from gemini_cmr.core.longaxis import match_phases

    grid = study.grid
    heart = (resample_nearest_stack(sr_labels, sr, grid) > 0).any(axis=0)
    views, records = [], []
    for la in long_axis:
        la_ph = match_phases(la, study.n_phases, study.meta.ed_phase, study.meta.es_phase)[phases]
        m = long_axis_measurements(study.image[phases], grid, heart, la.image[la_ph], la.grid, thickness_mm)
        views.append(m)
        records.append({"view": la.view, "path": la.source_path,
                        "slices_measured": int((m["weight"] > 0).sum())})
    new, c = combine_long_axis(shifts, est, np.arange(grid.shape[0]) * float(grid.spacing[2]), views,
                               weights=weights)
    for rec, m, cv in zip(records, views, c):
        rec["offset_mm"] = [round(float(v), 3) for v in cv * m["d_la"]]
        rec["direction_la"] = [round(float(v), 4) for v in m["d_la"]]
    return new, records


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


def estimate_motion(predictor, study: Study, rounds: int = ROUNDS, cancel=None, long_axis=None) -> MotionEstimate:
    """Per-slice shifts of `study` (the LR cine as the network will see it) from `rounds` predictions of a
    few phases (`estimation_phases`), each on the stack corrected by the previous rounds. `predictor` has
    the `Predictor.predict` interface. Nothing is applied here (`corrected_study`). `long_axis`: long-axis
    cines of the study (checked against it), added as evidence (`long_axis_evidence`)."""
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
    weights = np.zeros(nz)
    timings = {"predict": 0.0, "estimate": 0.0}
    roi = net_roi = None
    heart_notes: list[str] = []
    for r in range(max(1, int(rounds))):
        if cancel is not None and cancel():
            from gemini_cmr.core.errors import Cancelled

            raise Cancelled("super-resolution cancelled")
        t = time.perf_counter()
        pred = predict_corrected(predictor, study, total if r else None, phases=phases)
        timings["predict"] += time.perf_counter() - t
        if r == 0:
            roi, net_roi = getattr(pred, "roi", None), getattr(pred, "net_roi", None)
            heart_notes = list(getattr(pred, "notes", None) or [])
            first = pred
        t = time.perf_counter()
        lr_phases = study.image[phases] if not r else apply_shifts(study.image[phases], grid, total)
        ds, e, w = estimate_from_prediction(lr_phases, grid, np.asarray(pred.sr_image),
                                            np.asarray(pred.sr_labels), pred.sr_grid, thickness, with_weights=True)
        timings["estimate"] += time.perf_counter() - t
        if r == 0:
            est, weights = e, w
        if est.sum() < 3:
            break
        total = total + np.where(est[:, None], ds, 0.0)
    timings["total"] = time.perf_counter() - t0
    if est.sum() < 3:
        return MotionEstimate(np.zeros((nz, 2)), np.zeros(nz, bool), applied=False, timings=timings,
                              note="too few slices with a clear LV section: no motion correction", roi=roi,
                              net_roi=net_roi, heart_notes=heart_notes)
    n_est = int(est.sum())
    note = f"shifts estimated on {n_est} of {nz} slices (the others, without a clear LV section, kept as acquired)"
    records: list[dict] = []
    method = METHOD
    if long_axis:
        t = time.perf_counter()
        total, records = long_axis_evidence(study, phases, np.asarray(first.sr_labels), first.sr_grid, total, est,
                                            list(long_axis), thickness, weights=weights)
        timings["long_axis"] = time.perf_counter() - t
        method = METHOD + "; long-axis profiles along the intersection lines"
        views = ", ".join(f"{r['view']} ({r['slices_measured']} slices)" for r in records)
        note += f"; long-axis evidence: {views}"
    timings["total"] = time.perf_counter() - t0
    return MotionEstimate(total, est, method=method, applied=True, note=note, timings=timings, roi=roi,
                          net_roi=net_roi, long_axis=records, heart_notes=heart_notes)
