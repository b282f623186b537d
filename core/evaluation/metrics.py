"""Evaluation metrics (spec section 5): Dice (3D volumetric and the paper's slice-wise variant), PSNR,
SSIM, and summaries (mean (sd), Bland-Altman bias and limits of agreement).

Conventions
- Label volumes are integer arrays (Z, Y, X) in the project's label convention (`core.study.STRUCTURES`).
- **3D Dice** (`dice`, `dice_per_structure`) is the primary figure: 2|A & B| / (|A| + |B|) over the
  whole volume. When a structure is absent from both volumes the result is `empty` (1.0 by default:
  perfect agreement on "nothing there").
- **Slice-wise Dice** (`slicewise_dice`) is the paper's variant (the authors' code): Dice per 2D slice
  along the slice axis, slices empty in both volumes skipped, averaged. NaN when every slice is empty.
- **PSNR** = 10 log10(data_range^2 / MSE) over the whole volume; `data_range` is always explicit
  (the same definition as `skimage.metrics.peak_signal_noise_ratio`). `slicewise_psnr` is the paper's
  variant (PSNR per 2D slice on the slices with labels, averaged); `masked_psnr` the MSE over a region
  only (e.g. near the heart, `heart_region`).
- **SSIM** follows Wang et al. 2004 with the defaults of `skimage.metrics.structural_similarity`
  (7-voxel uniform window, K1 = 0.01, K2 = 0.03, sample covariance, borders of (win-1)/2 excluded
  from the mean). `mode="3d"` uses a 7x7x7 window over the volume (primary); `mode="slicewise"`
  computes 2D SSIM per slice (7x7) and averages (the paper's variant). No scikit-image needed at run
  time; the tests check both against scikit-image on the same arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage

from gemini_cmr.core.study import STRUCTURES

__all__ = [
    "dice",
    "dice_per_structure",
    "slicewise_dice",
    "slicewise_dice_per_structure",
    "psnr",
    "slicewise_psnr",
    "masked_psnr",
    "heart_region",
    "HEART_MARGIN_MM",
    "mean_surface_distance",
    "ssim",
    "mean_sd",
    "format_mean_sd",
    "bland_altman",
]


# --- Dice -------------------------------------------------------------------------------------------
def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    return pred, truth


def dice(pred: np.ndarray, truth: np.ndarray, label: int, empty: float = 1.0) -> float:
    """3D volumetric Dice of one label: 2|P & T| / (|P| + |T|); `empty` when absent from both."""
    pred, truth = _check_pair(pred, truth)
    p = pred == label
    t = truth == label
    denom = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    if denom == 0:
        return float(empty)
    return 2.0 * int(np.count_nonzero(p & t)) / denom


def dice_per_structure(
    pred: np.ndarray, truth: np.ndarray, structures: Mapping[int, str] = STRUCTURES, empty: float = 1.0
) -> dict[str, float]:
    """3D Dice of every structure: {"lv_cavity": ..., "lv_myocardium": ..., "rv_cavity": ...}."""
    return {name: dice(pred, truth, label, empty) for label, name in structures.items()}


def slicewise_dice(pred: np.ndarray, truth: np.ndarray, label: int, axis: int = -3) -> float:
    """The paper's Dice: per 2D slice along `axis` (default the slice axis Z of (..., Z, Y, X)),
    skipping slices where the label is absent from both, averaged. NaN if no slice contains it."""
    pred, truth = _check_pair(pred, truth)
    p = np.moveaxis(pred == label, axis, 0).reshape(pred.shape[axis], -1)
    t = np.moveaxis(truth == label, axis, 0).reshape(truth.shape[axis], -1)
    inter = np.count_nonzero(p & t, axis=1)
    denom = np.count_nonzero(p, axis=1) + np.count_nonzero(t, axis=1)
    keep = denom > 0
    if not np.any(keep):
        return float("nan")
    return float(np.mean(2.0 * inter[keep] / denom[keep]))


def slicewise_dice_per_structure(
    pred: np.ndarray, truth: np.ndarray, structures: Mapping[int, str] = STRUCTURES, axis: int = -3
) -> dict[str, float]:
    return {name: slicewise_dice(pred, truth, label, axis) for label, name in structures.items()}


# --- image quality ----------------------------------------------------------------------------------
def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB over the whole array; +inf when identical."""
    pred, truth = _check_pair(pred, truth)
    if not data_range or data_range <= 0:
        raise ValueError("data_range must be positive")
    mse = float(np.mean((truth.astype(np.float64) - pred.astype(np.float64)) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def slicewise_psnr(pred: np.ndarray, truth: np.ndarray, labels: np.ndarray, data_range: float) -> float:
    """The paper's PSNR (the authors' code): PSNR per 2D slice (axis 0) over the slices where `labels`
    has any structure, averaged; NaN when no slice has labels."""
    pred, truth = _check_pair(pred, truth)
    if labels.shape != truth.shape:
        raise ValueError(f"labels {labels.shape} do not match the images {truth.shape}")
    vals = [psnr(pred[k], truth[k], data_range) for k in range(truth.shape[0]) if np.any(labels[k] > 0)]
    return float(np.mean(vals)) if vals else float("nan")


def masked_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """PSNR with the MSE over the voxels of `mask` only; NaN for an empty mask."""
    pred, truth = _check_pair(pred, truth)
    mask = np.asarray(mask, bool)
    if mask.shape != truth.shape:
        raise ValueError(f"mask {mask.shape} does not match the images {truth.shape}")
    if not mask.any():
        return float("nan")
    return psnr(pred[mask], truth[mask], data_range)


def mean_surface_distance(pred: np.ndarray, truth: np.ndarray, label: int,
                          spacing_zyx: Iterable[float]) -> float:
    """Symmetric mean surface distance (mm) between the boundaries of `label` in two volumes: the mean,
    over the boundary voxels of both, of the distance to the other's boundary. NaN when either is empty."""
    sp = tuple(float(v) for v in spacing_zyx)
    a, b = np.asarray(pred) == label, np.asarray(truth) == label
    if not a.any() or not b.any():
        return float("nan")
    sa = a & ~ndimage.binary_erosion(a, border_value=0)
    sb = b & ~ndimage.binary_erosion(b, border_value=0)
    da = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    return float((da.sum() + db.sum()) / (len(da) + len(db)))


#: "Near the heart" for `heart_region` and the evaluations' PSNR within it: 10 mm of a labelled structure.
HEART_MARGIN_MM = 10.0


def heart_region(labels: np.ndarray, spacing_zyx: Iterable[float],
                 margin_mm: float = HEART_MARGIN_MM) -> np.ndarray:
    """Voxels within `margin_mm` (Euclidean, in mm) of any labelled structure: the region where cardiac
    super-resolution can make a difference (bool, the labels' shape)."""
    heart = np.asarray(labels) > 0
    if not heart.any():
        return heart
    return ndimage.distance_transform_edt(~heart, sampling=tuple(float(v) for v in spacing_zyx)) <= margin_mm


def _ssim_nd(x: np.ndarray, y: np.ndarray, data_range: float, win_size: int) -> float:
    ndim = x.ndim
    if any(s < win_size for s in x.shape):
        raise ValueError(f"SSIM window {win_size} larger than the image {x.shape}")
    np_ = win_size**ndim
    cov_norm = np_ / (np_ - 1.0)
    filt = lambda a: ndimage.uniform_filter(a, size=win_size, mode="reflect")  # noqa: E731
    ux, uy = filt(x), filt(y)
    uxx, uyy, uxy = filt(x * x), filt(y * y), filt(x * y)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    crop = tuple(slice(pad, n - pad) for n in s.shape)
    return float(np.mean(s[crop], dtype=np.float64))


def ssim(
    pred: np.ndarray, truth: np.ndarray, data_range: float, mode: str = "3d", win_size: int = 7
) -> float:
    """Structural similarity of a (Z, Y, X) volume.

    mode="3d": one SSIM with a win^3 window (needs every dimension >= win_size);
    mode="slicewise": 2D SSIM of each slice along Z, averaged (the paper's variant).
    """
    pred, truth = _check_pair(pred, truth)
    if not data_range or data_range <= 0:
        raise ValueError("data_range must be positive")
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError("win_size must be odd and >= 3")
    x = pred.astype(np.float64)
    y = truth.astype(np.float64)
    if mode == "3d":
        return _ssim_nd(x, y, float(data_range), win_size)
    if mode == "slicewise":
        if x.ndim < 3:
            return _ssim_nd(x, y, float(data_range), win_size)
        x2 = x.reshape(-1, *x.shape[-2:])
        y2 = y.reshape(-1, *y.shape[-2:])
        return float(np.mean([_ssim_nd(a, b, float(data_range), win_size) for a, b in zip(x2, y2)]))
    raise ValueError(f"unknown SSIM mode {mode!r} (use '3d' or 'slicewise')")


# --- summaries --------------------------------------------------------------------------------------
def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value), ignoring NaN."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), sd


def format_mean_sd(values: Iterable[float], digits: int = 2) -> str:
    """'0.87 (0.03)' as in the paper's tables; 'n/a' when there is no finite value."""
    m, s = mean_sd(values)
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ({s:.{digits}f})"


def bland_altman(pred: Iterable[float], truth: Iterable[float]) -> dict[str, float]:
    """Agreement of paired measurements: bias = mean(pred - truth), limits = bias +/- 1.96 sd."""
    p = np.asarray([float(x) for x in pred], dtype=np.float64)
    t = np.asarray([float(x) for x in truth], dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError("bland_altman needs paired values of equal length")
    d = p - t
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "bias": nan, "sd": nan, "loa_low": nan, "loa_high": nan}
    bias = float(np.mean(d))
    sd = float(np.std(d, ddof=1)) if n > 1 else 0.0
    return {"n": n, "bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}
