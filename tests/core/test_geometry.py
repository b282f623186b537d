"""Geometry with hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_cmr.core.geometry import (
    apply_transform,
    kabsch,
    nearest_slice_indices,
    place_on_sr_grid,
    resample,
    rotation_matrix,
    sr_grid,
)
from gemini_cmr.core.study import Grid, Study, StudyError


def lr_grid(shape=(10, 32, 40), spacing=(1.8, 1.8, 10.0), origin=(-30.0, -20.0, -45.0)):
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = origin
    return Grid(shape, aff)


def oblique_grid(shape, spacing, angle_deg):
    """A grid rotated by `angle_deg` about (1, 2, 3), origin (10, -5, 3)."""
    aff = np.eye(4)
    aff[:3, :3] = rotation_matrix([1, 2, 3], angle_deg) @ np.diag(spacing)
    aff[:3, 3] = [10, -5, 3]
    return Grid(shape, aff)


def test_index_world_round_trip_and_hand_values():
    g = lr_grid()
    assert np.allclose(g.spacing, [1.8, 1.8, 10.0])
    # voxel (i=2, j=3, k=4) -> x = -30 + 2*1.8, y = -20 + 3*1.8, z = -45 + 40
    assert np.allclose(g.index_to_world([2, 3, 4]), [-26.4, -14.6, -5.0])
    pts = np.random.default_rng(0).uniform(-50, 50, (20, 3))
    assert np.allclose(g.index_to_world(g.world_to_index(pts)), pts)
    vc = g.voxel_centres()
    assert vc.shape == (10, 32, 40, 3)
    assert np.allclose(vc[4, 3, 2], [-26.4, -14.6, -5.0])  # array order (k, j, i)
    assert np.allclose(g.normal, [0, 0, 1])
    assert g.voxel_volume_ml == pytest.approx(1.8 * 1.8 * 10 / 1000)


def test_sr_grid_covers_slab_hand_computed():
    g = lr_grid()  # 10 slices x 10 mm: slab 100 mm -> 50 SR slices of 2 mm
    s = sr_grid(g)
    assert s.shape == (50, math_ceil(32 * 1.8 / 1.25), math_ceil(40 * 1.8 / 1.25))
    assert np.allclose(s.spacing, [1.25, 1.25, 2.0])
    # first SR slice centre = first LR slice centre - 5 mm + 1 mm
    assert np.isclose(s.index_to_world([0, 0, 0])[2], -45.0 - 5.0 + 1.0)
    assert np.isclose(s.index_to_world([0, 0, 49])[2], -45.0 + 90.0 + 5.0 - 1.0)
    # SR and LR FOV share their centre
    assert np.allclose(s.centre(), g.centre())


def math_ceil(v):
    import math

    return math.ceil(v - 1e-6)


def test_sr_grid_keeps_oblique_orientation():
    g = oblique_grid((9, 40, 40), [1.5, 1.5, 8.0], 35.0)
    s = sr_grid(g)
    assert np.allclose(s.directions, g.directions)
    assert np.allclose(s.normal, g.normal)
    assert np.allclose(s.centre(), g.centre())


def test_nearest_slice_placement_uses_only_acquired_slices():
    g = lr_grid(shape=(4, 16, 16), spacing=(2.5, 2.5, 10.0), origin=(0, 0, 0))
    s = sr_grid(g)
    assert s.shape[0] == 20
    idx = nearest_slice_indices(g, s)
    assert list(idx) == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    vol = np.stack([np.full((16, 16), float(k + 1)) for k in range(4)])
    placed = place_on_sr_grid(vol, g, s, order=1)
    # interior of each SR slice holds exactly the value of its LR slice: no through-plane mixing
    centre = placed[:, 8, 8]
    assert np.allclose(centre, np.repeat([1.0, 2.0, 3.0, 4.0], 5))


def test_placement_keeps_the_field_of_view_edge():
    """The SR grid's edge rows and columns fall up to half an LR pixel outside the edge pixel centres
    (here 100 x 1.8 mm -> 144 x 1.25 mm: -0.15 LR px): they take the edge value, not 0; an SR grid wider
    than the LR field of view is 0 beyond it."""
    g = lr_grid(shape=(2, 100, 100), spacing=(1.8, 1.8, 10.0), origin=(0, 0, 0))
    s = sr_grid(g)
    vol = np.full((2, 100, 100), 7.0, np.float32)
    placed = place_on_sr_grid(vol, g, s, order=1)
    assert placed.shape[1:] == (144, 144)
    assert np.allclose(placed, 7.0)  # every SR pixel lies inside the LR field of view
    labels = place_on_sr_grid(np.full((2, 100, 100), 3, np.uint8), g, s, order=0)
    assert labels.dtype == np.uint8 and (labels == 3).all()
    wide = Grid((s.shape[0], 160, 160), s.affine.copy())  # 20 SR pixels more in x and y: outside the LR FOV
    out = place_on_sr_grid(vol, g, wide, order=1)
    assert np.allclose(out[:, :144, :144], 7.0) and np.allclose(out[:, 150:, :], 0.0) and np.allclose(out[:, :, 150:], 0.0)


def test_fast_bilinear_placement_matches_map_coordinates():
    """float32 stacks take one torch.grid_sample call; float64 ones scipy's map_coordinates per slice:
    the same values (oblique grid, several phases)."""
    from gemini_cmr.core.geometry import inplane_resample

    g = oblique_grid((5, 30, 26), [1.7, 1.9, 8.0], 25.0)
    s = sr_grid(g)
    vol = np.random.default_rng(1).random((3, 5, 30, 26)) * 100
    fast = inplane_resample(vol.astype(np.float32), g, s)
    ref = inplane_resample(vol, g, s)
    assert fast.dtype == np.float32 and ref.dtype == np.float64 and fast.shape == (3, 5, *s.shape[1:])
    np.testing.assert_allclose(fast, ref, atol=2e-3)


def test_device_placement_matches_the_numpy_placement():
    """`place_on_sr_grid_torch` (the GPU predictor's placement, here on the CPU): the same SR stacks as
    `place_on_sr_grid`, on an oblique grid and on an SR grid wider than the LR field of view (zeros)."""
    import torch

    from gemini_cmr.core.geometry import place_on_sr_grid_torch

    g = oblique_grid((5, 30, 26), [1.7, 1.9, 8.0], 25.0)
    s = sr_grid(g)
    vol = (np.random.default_rng(2).random((3, 5, 30, 26)) * 100).astype(np.float32)
    for dst in (s, Grid((s.shape[0], s.shape[1] + 12, s.shape[2] + 12), s.affine.copy())):
        ref = place_on_sr_grid(vol, g, dst)
        out = place_on_sr_grid_torch(torch.from_numpy(vol), g, dst)
        assert out.dtype == torch.float32 and tuple(out.shape) == ref.shape
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-4)
    assert (ref == 0).any()  # the wider grid reaches beyond the field of view
    with pytest.raises(ValueError, match="2 x 2"):
        place_on_sr_grid_torch(torch.zeros((1, 5, 1, 26)), Grid((5, 1, 26), g.affine), s)


def test_resample_nearest_stack_equals_per_volume_resampling():
    """The engine's labels back on the input grid: the same voxels as `resample(order=0)` per phase, on an
    oblique SR -> LR pair (the LR grid reaching beyond the SR one: cval there)."""
    from gemini_cmr.core.geometry import resample_nearest_stack

    g = oblique_grid((6, 30, 26), [1.7, 1.9, 8.0], 25.0)
    s = sr_grid(g)
    labels = np.random.default_rng(3).integers(0, 4, size=(3, *s.shape)).astype(np.uint8)
    wide = Grid((8, 34, 30), g.affine @ np.array([[1, 0, 0, -2], [0, 1, 0, -2], [0, 0, 1, -1], [0, 0, 0, 1.0]]))
    for dst in (g, wide):
        ref = np.stack([resample(v, s, dst, order=0) for v in labels])
        out = resample_nearest_stack(labels, s, dst)
        assert out.dtype == np.uint8 and out.shape == ref.shape
        np.testing.assert_array_equal(out, ref)
    assert (resample_nearest_stack(labels + 1, s, wide)[:, 0] == 0).any()  # outside the SR grid: cval
    with pytest.raises(ValueError, match="do not match"):
        resample_nearest_stack(labels[0], s, g)


def test_resample_identity_and_shift():
    g = lr_grid(shape=(5, 12, 14))
    vol = np.random.default_rng(1).random(g.shape).astype(np.float32)
    assert np.allclose(resample(vol, g, g, order=1), vol, atol=1e-6)
    # a destination grid shifted by exactly one voxel in x reads the neighbour
    aff = g.affine.copy()
    aff[0, 3] += 1.8
    shifted = Grid(g.shape, aff)
    out = resample(vol, g, shifted, order=0)
    assert np.allclose(out[:, :, :-1], vol[:, :, 1:])
    labels = (vol > 0.5).astype(np.uint8)
    assert resample(labels, g, g, order=0).dtype == np.uint8


def test_resample_world_consistency_oblique():
    """Same world point -> same value, for an oblique destination grid."""
    g = lr_grid(shape=(20, 30, 30), spacing=(2.0, 2.0, 2.0), origin=(0, 0, 0))
    z, y, x = np.meshgrid(*(np.arange(n) for n in g.shape), indexing="ij")
    world = g.index_to_world(np.stack([x, y, z], -1))
    vol = (world @ np.array([0.3, -0.2, 0.5])).astype(np.float64)  # linear in world: exact under linear interp
    aff = np.eye(4)
    aff[:3, :3] = rotation_matrix([0, 1, 1], 20) * 1.5
    aff[:3, 3] = [15, 15, 12]
    dst = Grid((8, 8, 8), aff)
    out = resample(vol, g, dst, order=1)
    expect = dst.voxel_centres() @ np.array([0.3, -0.2, 0.5])
    assert np.allclose(out, expect, atol=1e-6)


def test_kabsch_recovers_rotation_and_reflection_fix():
    rng = np.random.default_rng(2)
    p = rng.normal(0, 30, (6, 3))
    r = rotation_matrix([0.2, -1, 0.4], 27.0)
    t = np.array([4.0, -7.0, 12.5])
    q = p @ r.T + t
    m = kabsch(p, q)
    assert np.allclose(m[:3, :3], r, atol=1e-9)
    assert np.allclose(m[:3, 3], t, atol=1e-9)
    assert np.isclose(np.linalg.det(m[:3, :3]), 1.0)
    assert np.allclose(apply_transform(p, m), q)
    # a mirrored target must still give a proper rotation
    m2 = kabsch(p, p * np.array([-1, 1, 1]))
    assert np.isclose(np.linalg.det(m2[:3, :3]), 1.0)


def test_study_validate_rejects_nan_and_bad_shapes():
    img = np.zeros((2, 5, 32, 32), np.float32)
    Study(img, np.eye(4)).validate()
    img[0, 0, 0, 0] = np.nan
    with pytest.raises(StudyError, match="NaN"):
        Study(img, np.eye(4)).validate()
    with pytest.raises(StudyError, match="one slice"):
        Study(np.zeros((1, 1, 32, 32)), np.eye(4)).validate()
    with pytest.raises(StudyError, match="labels shape"):
        Study(np.zeros((1, 3, 32, 32)), np.eye(4), labels=np.zeros((1, 3, 32, 31)))


def _rings(grid: Grid, centre_shift_mm=(0.0, 0.0)) -> np.ndarray:
    """(1, Z, Y, X) labels of an analytic heart on `grid`: per slice a disc of LV cavity (1) in a ring of
    myocardium (2), a disc of RV (3) beside it, moved by `centre_shift_mm` (world x, y); each voxel labelled
    by its centre's world position."""
    nz, ny, nx = grid.shape
    kk, jj, ii = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    xyz = grid.index_to_world(np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1).astype(float))
    x, y = xyz[:, 0] - 3.3 - centre_shift_mm[0], xyz[:, 1] + 1.7 - centre_shift_mm[1]
    r = np.hypot(x, y)
    lab = np.zeros(len(r), np.uint8)
    lab[r < 21.0] = 2
    lab[r < 13.3] = 1
    lab[np.hypot(x + 34.0, y - 4.0) < 11.2] = 3
    return lab.reshape(1, nz, ny, nx)


def test_labels_onto_slices_places_smooth_boundaries_better_than_nearest():
    from gemini_cmr.core.evaluation.metrics import dice
    from gemini_cmr.core.geometry import labels_onto_slices, resample_nearest_stack

    lr = lr_grid(shape=(6, 48, 60), spacing=(1.46, 1.46, 10.0), origin=(-55.0, -40.0, -25.0))
    sr = sr_grid(lr)
    truth = _rings(lr)[0]
    labels_sr = _rings(sr)
    near = resample_nearest_stack(labels_sr, sr, lr)[0]
    smooth = labels_onto_slices(labels_sr, sr, lr)[0]
    assert smooth.dtype == np.uint8 and smooth.shape == truth.shape
    wrong_near, wrong_smooth = int((near != truth).sum()), int((smooth != truth).sum())
    assert wrong_smooth < 0.75 * wrong_near, (wrong_smooth, wrong_near)
    for c in (1, 2, 3):
        assert dice(smooth, truth, c) >= dice(near, truth, c)
    linear = labels_onto_slices(labels_sr, sr, lr, smooth_mm=0.0)[0]
    assert int((smooth != truth).sum()) < int((linear != truth).sum()) <= wrong_near


def test_labels_onto_slices_round_trips_labels_of_the_acquired_grid_and_applies_shifts():
    from gemini_cmr.core.geometry import labels_onto_slices

    lr = lr_grid(shape=(5, 48, 56), spacing=(1.7, 1.7, 8.0), origin=(-60.0, -40.0, -20.0))
    sr = sr_grid(lr)
    lab = _rings(lr)
    # LR labels as blocks on the SR grid (each SR voxel takes its nearest LR voxel, clipped to the stack)
    nz, ny, nx = sr.shape
    kk, jj, ii = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    src = lr.world_to_index(sr.index_to_world(np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1).astype(float)))
    i, j, k = (np.clip(np.floor(src[:, a] + 0.5).astype(int), 0, lr.shape[2 - a] - 1) for a in range(3))
    up = lab[:, k, j, i].reshape(1, nz, ny, nx)
    assert (labels_onto_slices(up, sr, lr, smooth_mm=0.0) == lab).mean() > 0.999  # linear alone: a round trip
    assert (labels_onto_slices(up, sr, lr) == lab).mean() > 0.99  # the smoothing rounds the blocks' corners
    # slice k displaced by shift_k: pixel p reads the SR labels at world(p) - shift_k, so labels of a heart
    # moved by -shift_k (whole SR pixels: the same raster, translated) come back as those of the unmoved one
    shifts = np.array([[0.0, 0.0], [2.5, -1.25], [-3.75, 5.0], [1.25, 1.25], [0.0, -2.5]])
    out = np.zeros_like(lab)
    for k in range(lr.shape[0]):
        out[:, k] = labels_onto_slices(_rings(sr, -shifts[k]), sr, lr, shifts)[:, k]
    np.testing.assert_array_equal(out, labels_onto_slices(_rings(sr), sr, lr))
    assert (out == lab).mean() > 0.98
    # outside the SR grid: background
    far = lr_grid(shape=(5, 48, 56), spacing=(1.7, 1.7, 8.0), origin=(500.0, 500.0, -20.0))
    assert not labels_onto_slices(up, sr, far).any()
