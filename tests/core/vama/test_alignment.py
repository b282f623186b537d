"""V-AMA rigid alignment: six landmarks, Kabsch, resampling (spec section 4, block 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.geometry import apply_transform, kabsch, rotation_matrix, transformed_grid
from gemini_cmr.core.study import Grid
from gemini_cmr.core.vama.alignment import (
    LANDMARK_NAMES,
    align_labels,
    landmarks,
    resample_aligned,
    rigid_from_landmarks,
)
from tests.core.vama.conftest import SHAPE, make_anatomy, random_affine


def _rigid(rng: np.random.Generator, max_angle: float = 40.0, max_shift: float = 30.0) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation_matrix(rng.normal(size=3), rng.uniform(-max_angle, max_angle))
    t[:3, 3] = rng.uniform(-max_shift, max_shift, 3)
    return t


def _angle_between(r1: np.ndarray, r2: np.ndarray) -> float:
    r = r1.T @ r2
    return math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def test_landmarks_are_centroids_in_world_mm():
    labels = np.zeros((5, 20, 20), np.uint8)
    labels[1:4, 5:7, 5:7] = 2  # myocardium on slices 1..3, centred at (i, j) = (5.5, 5.5)
    labels[1, 5:7, 5:9] = 2  # a bigger cross-section on slice 1 -> slice 1 is the base
    labels[0:5, 12:14, 10:12] = 3  # RV on every slice, centred at (10.5, 12.5)
    aff = np.diag([2.0, 2.0, 8.0, 1.0])
    aff[:3, 3] = [10, -5, 3]
    grid = Grid(labels.shape, aff)
    pts = landmarks(labels, grid)
    assert pts.shape == (6, 3) and len(LANDMARK_NAMES) == 6
    # apex -> base: myocardium apex is slice 3, base slice 1 (larger area)
    jj, ii = np.nonzero(labels[1] == 2)
    myo_base = grid.index_to_world(np.array([ii.mean(), jj.mean(), 1]))
    np.testing.assert_allclose(pts[0], grid.index_to_world(np.array([5.5, 5.5, 3])))
    np.testing.assert_allclose(pts[1], grid.index_to_world(np.array([5.5, 5.5, 2])))
    np.testing.assert_allclose(pts[2], myo_base)
    np.testing.assert_allclose(pts[3], grid.index_to_world(np.array([10.5, 12.5, 4])))
    np.testing.assert_allclose(pts[4], grid.index_to_world(np.array([10.5, 12.5, 2])))
    np.testing.assert_allclose(pts[5], grid.index_to_world(np.array([10.5, 12.5, 0])))


def test_landmark_order_does_not_depend_on_slice_storage_order():
    rng = np.random.default_rng(3)
    labels = make_anatomy(rng, 1)[0]
    aff = random_affine(rng)
    grid = Grid(labels.shape, aff)
    # the same anatomy stored base-first: reverse k and move the origin to the last slice
    flipped_aff = aff.copy()
    flipped_aff[:3, 2] = -aff[:3, 2]
    flipped_aff[:3, 3] = aff[:3, 3] + aff[:3, 2] * (labels.shape[0] - 1)
    np.testing.assert_allclose(landmarks(labels[::-1], Grid(labels.shape, flipped_aff)),
                               landmarks(labels, grid), atol=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_known_rigid_transforms_are_recovered(seed):
    """The same anatomy moved by a known rigid transform: recovered to < 0.1 mm and < 0.1 degree."""
    rng = np.random.default_rng(seed)
    labels = make_anatomy(rng, 1)[0]
    target_grid = Grid(labels.shape, random_affine(rng))
    truth = _rigid(rng)
    # the source is the target anatomy moved by inv(truth): aligning source -> target must give `truth`
    source_grid = transformed_grid(target_grid, np.linalg.inv(truth))
    al = align_labels(labels, source_grid, labels, target_grid)
    assert _angle_between(al.transform[:3, :3], truth[:3, :3]) < 0.1
    probe = target_grid.voxel_centres().reshape(-1, 3)[::97]
    err = np.linalg.norm(apply_transform(probe, al.transform) - apply_transform(probe, truth), axis=1)
    assert err.max() < 0.1
    assert np.linalg.norm(al.translation_mm - truth[:3, 3]) < 0.1
    assert al.rms_mm < 1e-6


def test_kabsch_reflection_fix_and_point_recovery():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(6, 3)) * 30
    truth = _rigid(rng, 170, 50)
    al = rigid_from_landmarks(pts, apply_transform(pts, truth))
    np.testing.assert_allclose(al.transform, truth, atol=1e-9)
    mirrored = pts * np.array([-1.0, 1.0, 1.0])  # a reflection is not a rotation: det must stay +1
    t = kabsch(pts, mirrored)
    assert np.linalg.det(t[:3, :3]) == pytest.approx(1.0)


def test_resampling_after_alignment_restores_the_target():
    """Labels (nearest) and image (linear and cubic B-spline) of a moved study land back on the target."""
    rng = np.random.default_rng(5)
    labels = make_anatomy(rng, 1)[0]
    target_grid = Grid(labels.shape, random_affine(rng))
    truth = _rigid(rng, 25, 10)
    source_grid = transformed_grid(target_grid, np.linalg.inv(truth))
    al = align_labels(labels, source_grid, labels, target_grid)
    back = resample_aligned(labels, source_grid, target_grid, al.transform, order=0)
    assert back.dtype == labels.dtype
    # the outermost voxels sit exactly on the source's edge, where round-off may fall outside (-> 0)
    inner = (slice(1, -1),) * 3
    assert np.array_equal(back[inner], labels[inner])
    image = labels.astype(np.float32) * 100 + 7
    for order in (1, 3):
        moved = resample_aligned(image, source_grid, target_grid, al.transform, order=order)
        assert np.abs(moved - image)[inner].max() < 1e-2
    four_d = resample_aligned(np.stack([image, image]), source_grid, target_grid, al.transform, order=1)
    assert four_d.shape == (2, *SHAPE)


def test_missing_structure_is_a_data_error_naming_the_study():
    labels = np.zeros(SHAPE, np.uint8)
    labels[2, 10:15, 10:15] = 2
    with pytest.raises(DataError, match="study-x.*RV cavity"):
        landmarks(labels, Grid(SHAPE, np.eye(4)), "study-x")
    with pytest.raises(DataError, match="LV myocardium"):
        landmarks(np.zeros(SHAPE, np.uint8), Grid(SHAPE, np.eye(4)), "study-y")
