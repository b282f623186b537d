"""V-AMA block 1: LR rigid alignment by six anatomical landmarks (spec section 4).

Landmarks are the centroids of the LV myocardium (label 2) and the RV cavity (label 3) on the lowest,
middle and highest slices that contain each structure, in world mm. The six points of a source volume
are matched to those of a target volume by `core.geometry.kabsch` (least-squares rigid, SVD with the
reflection fix) and the source image (linear or cubic B-spline) and labels (nearest) are resampled onto
the target grid with `core.geometry.resample`. The block is used only for training.

Slice order: landmarks are ordered apex -> base whichever way the stack is stored. The apical end is the
end of the LV myocardium's slice range with more myocardial slices without RV (the RV stops short of the
LV apex); on a tie, the end with the smaller myocardial cross-section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.geometry import apply_transform, index_map, kabsch, resample, transformed_grid
from gemini_cmr.core.study import Grid

LANDMARK_LABELS = (2, 3)  # LV myocardium, RV cavity
MIN_AREA_FRACTION = 0.2  # slices with a smaller cross-section (partial-volume tips) are not used
LANDMARK_NAMES = (
    "lv_myocardium_apex", "lv_myocardium_mid", "lv_myocardium_base",
    "rv_cavity_apex", "rv_cavity_mid", "rv_cavity_base",
)


def _slice_centroids(mask: np.ndarray, min_fraction: float = 0.0) -> dict[int, np.ndarray]:
    """Per slice k containing the mask (at least `min_fraction` of its largest cross-section, so that
    partial-volume tips do not count): the (i, j, k) voxel centroid."""
    out = {}
    area = mask.reshape(mask.shape[0], -1).sum(axis=1)
    for k in np.flatnonzero((area > 0) & (area >= min_fraction * area.max())):
        jj, ii = np.nonzero(mask[k])
        out[int(k)] = np.array([ii.mean(), jj.mean(), float(k)])
    return out


def landmarks(labels: np.ndarray, grid: Grid, name: str = "", min_fraction: float = MIN_AREA_FRACTION
              ) -> np.ndarray:
    """Six landmarks (6, 3) in world mm from a (Z, Y, X) label volume on `grid` (order: LANDMARK_NAMES).

    A slice "contains" a structure when its cross-section there is at least `min_fraction` of the
    structure's largest one. Raises `DataError` naming `name` if the LV myocardium or RV cavity is missing.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or tuple(labels.shape) != tuple(grid.shape):
        raise ValueError(f"labels shape {labels.shape} does not match grid {grid.shape}")
    myo = labels == 2
    k_myo = np.flatnonzero(myo.reshape(myo.shape[0], -1).any(axis=1))
    if k_myo.size == 0:
        raise DataError("no LV myocardium (label 2) for the alignment landmarks", name or None)
    reverse = _base_is_low_k(labels, k_myo)  # then order high k -> low k (apex first)
    points = []
    for label in LANDMARK_LABELS:
        cents = _slice_centroids(labels == label, min_fraction)
        if not cents:
            raise DataError(f"no {'LV myocardium' if label == 2 else 'RV cavity'} (label {label}) "
                            "for the alignment landmarks", name or None)
        ks = sorted(cents, reverse=bool(reverse))
        chosen = [ks[0], ks[(len(ks) - 1) // 2], ks[-1]]  # apex, middle, base
        points.extend(cents[k] for k in chosen)
    return grid.index_to_world(np.stack(points))


def _base_is_low_k(labels: np.ndarray, k_myo: np.ndarray) -> bool:
    """Which end of the stack is the base: the RV stops short of the LV apex, so the apical end has
    more myocardial slices without RV; ties are broken by the smaller myocardial cross-section (apex)."""
    flat = labels.reshape(labels.shape[0], -1)
    has_rv = (flat == 3).any(axis=1)
    k_lo, k_hi = int(k_myo[0]), int(k_myo[-1])

    def run_without_rv(ks) -> int:
        n = 0
        for k in ks:
            if has_rv[k]:
                break
            n += 1
        return n

    apex_lo, apex_hi = run_without_rv(range(k_lo, k_hi + 1)), run_without_rv(range(k_hi, k_lo - 1, -1))
    if apex_lo != apex_hi:
        return apex_hi > apex_lo
    area = (flat == 2).sum(axis=1)
    return bool(area[k_lo] > area[k_hi])


@dataclass
class Alignment:
    """A rigid world-space transform (4x4) taking source anatomy onto target anatomy, with its fit."""

    transform: np.ndarray
    source_points: np.ndarray
    target_points: np.ndarray

    @property
    def rms_mm(self) -> float:
        moved = apply_transform(self.source_points, self.transform)
        return float(np.sqrt(np.mean(np.sum((moved - self.target_points) ** 2, axis=1))))

    @property
    def mirrored(self) -> bool:
        """The transform includes a reflection (stacks stored with opposite handedness)."""
        return bool(np.linalg.det(self.transform[:3, :3]) < 0)

    @property
    def rotation_deg(self) -> float:
        r = self.transform[:3, :3] @ (np.diag([-1.0, 1.0, 1.0]) if self.mirrored else np.eye(3))
        return math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))

    @property
    def translation_mm(self) -> np.ndarray:
        return self.transform[:3, 3].copy()


def rigid_from_landmarks(source_points: np.ndarray, target_points: np.ndarray, allow_mirror: bool = False
                         ) -> Alignment:
    """Least-squares rigid transform (Kabsch) from source landmarks to target landmarks; with
    `allow_mirror`, also with the source mirrored (x -> -x), keeping the better fit."""
    p, q = np.asarray(source_points, float), np.asarray(target_points, float)
    best = Alignment(kabsch(p, q), p, q)
    if allow_mirror:
        mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
        other = Alignment(kabsch(p * np.array([-1.0, 1.0, 1.0]), q) @ mirror, p, q)
        if other.rms_mm < 0.99 * best.rms_mm:  # the proper rotation on a tie (planar landmark sets)
            best = other
    return best


def align_labels(source_labels: np.ndarray, source_grid: Grid, target_labels: np.ndarray,
                 target_grid: Grid, source_name: str = "", target_name: str = "",
                 allow_mirror: bool = False) -> Alignment:
    """Rigid transform from the landmarks of two (Z, Y, X) label volumes.

    `allow_mirror=True` (stacks in their own slice frames, whose handedness says nothing about the
    patient's): the source landmarks are also fitted mirrored (x -> -x), and the better fit is kept; the
    transform then includes the reflection (`Alignment.mirrored`).
    """
    return rigid_from_landmarks(landmarks(source_labels, source_grid, source_name),
                                landmarks(target_labels, target_grid, target_name), allow_mirror)


def resample_aligned(volume: np.ndarray, source_grid: Grid, target_grid: Grid, transform: np.ndarray,
                     order: int = 1, nearest_slice: bool = False) -> np.ndarray:
    """Move `volume` ((T,) Z, Y, X on `source_grid`) by the world `transform` and sample it on `target_grid`.

    order 1 = linear, 3 = cubic B-spline (images); 0 = nearest (labels). Outside the source: 0.
    `nearest_slice=True` (order 0 or 1) interpolates only in-plane: every output voxel takes the source
    slice whose slab contains it, so thick, gapped slices are not blended through-plane.
    """
    moved = transformed_grid(source_grid, transform)
    if not nearest_slice:
        return resample(volume, moved, target_grid, order=order, cval=0.0, mode="constant")
    if order > 1:
        raise ValueError("nearest_slice resampling supports order 0 or 1")
    volume = np.asarray(volume)
    if volume.ndim == 4:
        return np.stack([resample_aligned(v, source_grid, target_grid, transform, order, True) for v in volume])
    if tuple(volume.shape) != tuple(source_grid.shape):
        raise ValueError(f"volume shape {volume.shape} does not match source grid {source_grid.shape}")
    nz, ny, nx = target_grid.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    m = index_map(moved, target_grid)
    ijk = np.stack([i, j, k], axis=-1).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    ks = np.floor(ijk[..., 2] + 0.5)
    data = volume.astype(np.float32) if order > 0 else volume
    out = ndimage.map_coordinates(data, [ks, ijk[..., 1], ijk[..., 0]], order=order, mode="constant",
                                  cval=0.0, prefilter=False)
    return out.astype(volume.dtype) if order == 0 else out
