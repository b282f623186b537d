"""Label post-processing a model may ask for in its config.json (`"inference"` section).

`{"inference": {"roi_mm": 176}}` (`core.predict.Predictor`): the network runs on a heart-centred box of
that size found by a first whole-field-of-view pass (`heart_roi`), as the model was trained on crops;
`"roi_margin_mm": M` runs the network only on the part of that box within M mm of the heart the first pass
found (`fit_heart_box`; the intensity scale still comes from the whole box, as in training).
`{"inference": {"keep_largest_heart_component": true, "heart_component_by": "size" | "myocardium" |
"ventricle"}}`: in every phase, only one 3D connected component of the heart (all labels > 0 together, face
connectivity) is kept, the largest, the one with the most LV myocardium or the one most like the two
ventricles (LV cavity walled by myocardium, RV beside it); everything else becomes background. Used by the ACDC model, which sees whole fields of view at inference but heart-centred crops in
training, so that isolated false positives in the chest wall or abdomen do not enter volumes and meshes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage


def keep_largest_heart_component(labels: np.ndarray, by: str = "size") -> np.ndarray:
    """(D, H, W) labels -> the same with only one connected heart component (labels > 0): the largest
    (`by="size"`), the one holding the most LV myocardium (`by="myocardium"`), or the one that looks most
    like the two ventricles (`by="ventricle"`): its walled LV cavity voxels (myocardium within
    `VENTRICLE_WALL_PX` pixels in their slice) times one plus its septal RV voxels (RV cavity within
    `VENTRICLE_WALL_PX` pixels of myocardium). A solid blob of false myocardium never wins over a real
    ventricle (no walled cavity), nor does a false "cavity" with myocardium along its edge but no RV beside
    it (a whole-field pass may paint the liver or stomach so, with as many walled voxels as the heart);
    where no component has RV beside myocardium, the walled LV cavity alone decides. The most myocardium
    where no component has walled voxels. Computed on the labels' bounding box (and the filter's reach):
    the same result as on the whole array, several times faster for a heart in a whole field of view."""
    fg = labels > 0
    box = _bounding_box(fg, (0, VENTRICLE_WALL_PX, VENTRICLE_WALL_PX))
    if box is None:
        return labels
    if any(b.stop - b.start < n for b, n in zip(box, labels.shape, strict=True)):
        part = _keep_heart_component(labels[box], by)
        if part is None:
            return labels
        out = np.zeros_like(labels)
        out[box] = part
        return out
    part = _keep_heart_component(labels, by)
    return labels if part is None else part


def _bounding_box(mask: np.ndarray, margin: tuple[int, ...]) -> tuple[slice, ...] | None:
    """Slices of the bounding box of `mask`, grown by `margin` per axis within the array; None if empty."""
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hit):
            return None
        out.append(slice(max(0, int(hit[0]) - margin[axis]), min(mask.shape[axis], int(hit[-1]) + 1 + margin[axis])))
    return tuple(out)


def _keep_heart_component(labels: np.ndarray, by: str) -> np.ndarray | None:
    """`keep_largest_heart_component` on an array that holds all the labels; None when there is at most one
    component (nothing to remove)."""
    cc, n = ndimage.label(labels > 0)
    if n <= 1:
        return None
    if by == "ventricle":
        near_myocardium = ndimage.maximum_filter(labels == 2, size=(1, 2 * VENTRICLE_WALL_PX + 1,
                                                                    2 * VENTRICLE_WALL_PX + 1))
        walled = np.bincount(cc.ravel(), weights=((labels == 1) & near_myocardium).ravel(), minlength=n + 1)
        walled[0] = 0
        if not walled.any():
            return _keep_heart_component(labels, "myocardium")
        septal = np.bincount(cc.ravel(), weights=((labels == 3) & near_myocardium).ravel(), minlength=n + 1)
        sizes = walled * (1.0 + septal)
    else:
        sizes = np.bincount(cc.ravel(), weights=(labels == 2).ravel() if by == "myocardium" else None)
    sizes[0] = 0
    return np.where(cc == int(sizes.argmax()), labels, 0).astype(labels.dtype)


# `keep_largest_heart_component(by="ventricle")`: how near (pixels, in-plane) myocardium must be to an LV
# cavity voxel for that voxel to count as walled.
VENTRICLE_WALL_PX = 2


# `cine_motion_map`: the in-plane Gaussian (mm) on the cine's first temporal harmonic, and how far its peak must
# stand above its median (as a multiple of the median); `motion_map_centre`: the part of the map's maximum above
# which pixels weigh in the centre.
MOTION_SIGMA_MM = 10.0
MOTION_CONTRAST = 0.25
MOTION_LEVEL = 0.5
# `core.predict`: a heart found by the whole-field pass whose in-plane extent has a mean `cine_motion_map` below
# this is not taken (the pass painted a heart into still tissue, as noise in the field of view can make it do);
# the heart is found again where the cine beats. On every ACDC case and every second Sunnybrook phase the
# shipped model's heart averages 0.33 or more; where noise misled the pass, 0.00-0.12 (docs/real-data.md).
HEART_MOTION_MIN = 0.2


def cine_motion_map(image: np.ndarray, grid) -> np.ndarray | None:
    """Where a cine (T, Z, Y, X) on `grid` moves, (Y, X) from 0 to 1: the magnitude of its first temporal
    harmonic (the classic cardiac locator: the heart is what beats), averaged over slices, smoothed in-plane
    by `MOTION_SIGMA_MM`, less its median (most of a field of view does not beat; noise raises the whole map)
    and scaled to a maximum of 1. With two phases (ED and ES only) the harmonic is their absolute difference.
    None for a single phase, or where nothing stands out: the peak less than `MOTION_CONTRAST` times the
    median above it (a cine of noise alone)."""
    image = np.asarray(image)
    t = image.shape[0]
    if t < 2 or image.ndim != 4:
        return None
    angle = 2 * np.pi * np.arange(t) / t
    w = np.stack([np.cos(angle), np.sin(angle)]).astype(np.float32)
    cs = np.tensordot(w, image.astype(np.float32, copy=False), axes=(1, 0))  # (2, Z, Y, X)
    h1 = np.hypot(cs[0], cs[1]).mean(axis=0)
    sx, sy = (float(v) for v in grid.spacing[:2])
    h1 = ndimage.gaussian_filter(h1, (MOTION_SIGMA_MM / sy, MOTION_SIGMA_MM / sx), mode="constant")
    floor = float(np.median(h1))
    top = float(h1.max()) - floor
    if not np.isfinite(top) or top <= 1e-6 * float(np.abs(image).mean()) or top < MOTION_CONTRAST * floor:
        return None
    return np.clip((h1 - floor) / top, 0.0, 1.0)


def motion_map_centre(motion: np.ndarray, grid) -> np.ndarray:
    """World position (x, y, z; z the stack's middle) of a `cine_motion_map`'s pixels at or above
    `MOTION_LEVEL`, weighted by it."""
    weight = np.where(motion >= MOTION_LEVEL, motion, 0.0)
    jj, ii = np.nonzero(weight)
    wv = weight[jj, ii]
    centre = np.array([np.dot(ii, wv) / wv.sum(), np.dot(jj, wv) / wv.sum(), (grid.shape[0] - 1) / 2])
    return grid.index_to_world(centre)


def cine_motion_centre(image: np.ndarray, grid) -> np.ndarray | None:
    """`motion_map_centre` of the cine's `cine_motion_map`; None where there is no map."""
    m = cine_motion_map(image, grid)
    return None if m is None else motion_map_centre(m, grid)


def heart_roi(labels: np.ndarray, spacing_yx: tuple[float, float] | np.ndarray, size_mm: float
              ) -> tuple[int, int, int, int] | None:
    """In-plane box (y0, y1, x0, x1) of about `size_mm` x `size_mm` centred on the heart (labels > 0) of
    (D, H, W) labels with in-plane spacing (y, x) in mm, moved to lie inside the grid (the whole extent
    along an axis shorter than the box). None when there is no heart."""
    fg = labels > 0
    if not fg.any():
        return None
    yy, xx = np.nonzero(fg.any(axis=0))
    return box_around((float(yy.mean()), float(xx.mean())), spacing_yx, size_mm, labels.shape[1:])


def box_around(centre_yx: tuple[float, float], spacing_yx, size_mm: float, shape_yx
               ) -> tuple[int, int, int, int]:
    """In-plane box (y0, y1, x0, x1) of about `size_mm` square centred on the pixel position `centre_yx`,
    moved to lie inside a grid of in-plane `shape_yx` (the whole extent along an axis shorter than it)."""
    out: list[int] = []
    for c, sp, n in ((centre_yx[0], spacing_yx[0], int(shape_yx[-2])),
                     (centre_yx[1], spacing_yx[1], int(shape_yx[-1]))):
        size = min(n, max(1, int(round(size_mm / float(sp)))))
        start = int(round(c - size / 2))
        start = min(max(start, 0), n - size)
        out += [start, start + size]
    return out[0], out[1], out[2], out[3]


def fit_heart_box(labels: np.ndarray, spacing_yx: tuple[float, float] | np.ndarray, margin_mm: float,
                  within: tuple[int, int, int, int], multiple: int = 1) -> tuple[int, int, int, int]:
    """The part of the in-plane box `within` (y0, y1, x0, x1) that holds the heart (labels > 0 on any slice
    of the (D, H, W) `labels`) with `margin_mm` around it on every side, grown evenly to a multiple of
    `multiple` pixels (what the network pads to anyway) and moved inside `within`; `within` itself when it
    holds no heart or is smaller."""
    y0w, y1w, x0w, x1w = (int(v) for v in within)
    fg = (labels[:, y0w:y1w, x0w:x1w] > 0).any(axis=0)
    if not fg.any():
        return y0w, y1w, x0w, x1w
    out: list[int] = []
    for axis, sp, w0, w1 in ((1, spacing_yx[0], y0w, y1w), (0, spacing_yx[1], x0w, x1w)):
        idx = np.nonzero(fg.any(axis=axis))[0]
        pad = int(np.ceil(float(margin_mm) / float(sp)))
        lo, hi = w0 + int(idx[0]) - pad, w0 + int(idx[-1]) + 1 + pad
        size = -(-(hi - lo) // multiple) * multiple
        if size >= w1 - w0:
            out += [w0, w1]
            continue
        lo -= (size - (hi - lo)) // 2
        lo = min(max(lo, w0), w1 - size)
        out += [lo, lo + size]
    return out[0], out[1], out[2], out[3]


def postprocess_labels(labels: np.ndarray, config: Mapping[str, Any]) -> np.ndarray:
    """Apply what the model config's `inference` section asks for to (b, D, H, W) labels (in place).
    Only the labelled voxels (> 0) decide the result and background stays background, so any in-plane
    box holding every labelled voxel gives the same labels as the whole field (`core.predict` runs it on
    the heart box)."""
    inf = config.get("inference") or {}
    if inf.get("keep_largest_heart_component"):
        for i in range(labels.shape[0]):
            labels[i] = keep_largest_heart_component(labels[i], inf.get("heart_component_by", "size"))
    return labels
