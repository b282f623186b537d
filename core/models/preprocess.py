"""Pre-processing shared by training (`core.train.data`) and inference (`core.predict`).

- Intensity normalisation: every cine is divided by the 99.5th percentile of its LR image (all phases,
  all slices); the SR image is multiplied back by the same scale, so outputs are in the input's units.
- Depth: a slab of Dz SR slices is centred in the network depth D (zero padding) when Dz <= D, else
  covered by overlapping windows of D slices (stride D // 2, last window flush with the slab end) that are
  blended with triangular weights.
- In-plane: zero padding (symmetric) to a multiple of 16 (2**poolings).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_PERCENTILE = 99.5


def intensity_scale(lr_image: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """The normalisation divisor of a cine: its `percentile`-th intensity (> 0)."""
    a = np.asarray(lr_image, dtype=np.float32)
    finite = np.isfinite(a)
    v = float(np.percentile(a if finite.all() else a[finite], percentile)) if a.size else 1.0
    if not math.isfinite(v) or v <= 1e-6:
        v = float(np.max(np.abs(a))) if a.size else 1.0
    return v if v > 1e-6 else 1.0


def depth_windows(n_slices: int, depth: int) -> list[tuple[int, int]]:
    """(source start, destination offset) per window: source slices [start, start+depth) -> window
    positions [offset, offset+min(depth, n_slices)). One centred window when the slab fits."""
    if n_slices <= depth:
        return [(0, (depth - n_slices) // 2)]
    stride = max(1, depth // 2)
    n = math.ceil((n_slices - depth) / stride) + 1
    starts = sorted({min(i * stride, n_slices - depth) for i in range(n)})
    return [(s, 0) for s in starts]


def window_weights(depth: int) -> np.ndarray:
    """Triangular blending weights (depth,), > 0 everywhere."""
    z = np.arange(depth, dtype=np.float32)
    return np.minimum(z + 1, depth - z) / ((depth + 1) / 2)


def pad_amounts(size: int, multiple: int) -> tuple[int, int]:
    total = (-size) % multiple
    return total // 2, total - total // 2
