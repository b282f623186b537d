"""Interpolation baselines: the LR stack resampled onto the SR grid by world coordinates.

Images: `core.geometry.resample` with order 0 (nearest neighbour), 1 (linear) or 3 (cubic B-spline), edge
values extended outside the LR slab. Labels, where the LR labels exist, by the same interpolation: nearest
neighbour resamples the label map itself; linear and B-spline resample each structure's one-hot map and take
the per-voxel argmax over the K maps (first class on ties).
"""

from __future__ import annotations

import numpy as np

from gemini_cmr.core.geometry import resample
from gemini_cmr.core.study import Grid

ORDERS = {"nearest": 0, "linear": 1, "bspline": 3}


def interpolate_image(lr_image: np.ndarray, lr: Grid, sr: Grid, order: int) -> np.ndarray:
    """(Z, Y, X) LR image -> (D, H, W) float32 on the SR grid."""
    return resample(np.asarray(lr_image, np.float32), lr, sr, order=order, mode="nearest").astype(np.float32)


def interpolate_labels(lr_labels: np.ndarray, lr: Grid, sr: Grid, order: int, n_classes: int = 4) -> np.ndarray:
    """(Z, Y, X) LR labels -> (D, H, W) uint8 on the SR grid, by the same interpolation as the image."""
    lab = np.rint(np.asarray(lr_labels)).astype(np.uint8)
    if order == 0:
        return resample(lab, lr, sr, order=0, mode="nearest").astype(np.uint8)
    best = None
    out = None
    for k in range(n_classes):
        p = resample((lab == k).astype(np.float32), lr, sr, order=order, mode="nearest")
        if best is None:
            best, out = p, np.zeros(p.shape, np.uint8)
        else:
            better = p > best
            out[better] = k
            best = np.maximum(best, p)
    return out
