"""Property-based tests (hypothesis) of the geometry helpers on random oblique grids: world <-> index
round trips, affine composition, resampling round trips, the SR grid covering the LR slab, Kabsch on
random rigid transforms. Bounded: fixed max_examples, no deadline flakiness on a loaded machine."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_cmr.core.geometry import (
    SR_INPLANE_MM,
    SR_THROUGH_MM,
    apply_transform,
    index_map,
    kabsch,
    nearest_slice_indices,
    resample,
    sr_grid,
    transformed_grid,
)
from gemini_cmr.core.study import Grid

FAST = settings(max_examples=60, deadline=None, derandomize=True)

unit = st.floats(-1, 1, allow_nan=False)
quaternions = st.tuples(unit, unit, unit, unit).filter(lambda q: sum(v * v for v in q) > 0.05)


def rotation(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@st.composite
def grids(draw, max_size=24):
    shape = (draw(st.integers(2, 12)), draw(st.integers(2, max_size)), draw(st.integers(2, max_size)))
    inplane = draw(st.floats(0.6, 3.0))
    spacing = np.array([inplane, draw(st.floats(0.6, 3.0)) if draw(st.booleans()) else inplane,
                        draw(st.floats(2.0, 12.0))])
    aff = np.eye(4)
    aff[:3, :3] = rotation(draw(quaternions)) * spacing
    aff[:3, 3] = [draw(st.floats(-200, 200)) for _ in range(3)]
    return Grid(shape, aff)


def rigid(draw) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation(draw(quaternions))
    t[:3, 3] = [draw(st.floats(-100, 100)) for _ in range(3)]
    return t


@FAST
@given(grids(), st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(-50, 50)), min_size=1,
                         max_size=20))
def test_world_index_round_trip(g, pts):
    ijk = np.array(pts)
    world = g.index_to_world(ijk)
    np.testing.assert_allclose(g.world_to_index(world), ijk, atol=1e-8)
    np.testing.assert_allclose(g.index_to_world(g.world_to_index(world)), world, atol=1e-8)
    # voxel centres agree with index_to_world in array order (k, j, i)
    vc = g.voxel_centres()
    k, j, i = (s - 1 for s in g.shape)
    np.testing.assert_allclose(vc[k, j, i], g.index_to_world([i, j, k]), atol=1e-9)


@FAST
@given(grids(), grids(), grids())
def test_index_maps_compose(a, b, c):
    np.testing.assert_allclose(index_map(a, b) @ index_map(b, c), index_map(a, c), atol=1e-8)
    np.testing.assert_allclose(index_map(a, a), np.eye(4), atol=1e-9)


@FAST
@given(grids(), st.data())
def test_rigid_moves_compose(g, data):
    t1, t2 = rigid(data.draw), rigid(data.draw)
    both = transformed_grid(transformed_grid(g, t1), t2)
    assert both == transformed_grid(g, t2 @ t1)
    np.testing.assert_allclose(both.spacing, g.spacing, rtol=1e-9)
    np.testing.assert_allclose(abs(np.linalg.det(both.directions)), 1.0, atol=1e-9)


@FAST
@given(grids(max_size=16), st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.integers(-2, 2)),
       st.integers(0, 2**31 - 1))
def test_resample_shift_round_trip(g, shift, seed):
    """Resampling onto a grid shifted by whole voxels and back restores the overlap exactly (linear and
    nearest), and resampling onto the same grid is the identity."""
    vol = np.random.default_rng(seed).random(g.shape).astype(np.float32)
    np.testing.assert_allclose(resample(vol, g, g, order=1), vol, atol=1e-5)
    aff = g.affine.copy()
    aff[:3, 3] = g.index_to_world(np.array(shift, float))
    moved = Grid(g.shape, aff)
    for order in (0, 1):
        there = resample(vol, g, moved, order=order, cval=-1)
        back = resample(there, moved, g, order=order, cval=-1)
        dz, dy, dx = shift[2], shift[1], shift[0]
        nz, ny, nx = g.shape
        sl = (slice(max(0, dz), nz + min(0, dz)), slice(max(0, dy), ny + min(0, dy)), slice(max(0, dx), nx + min(0, dx)))
        if any(s.stop <= s.start for s in sl):
            continue  # shifted past the whole grid: no overlap
        np.testing.assert_allclose(back[sl], vol[sl], atol=1e-5)
        # voxel values land at the same world position
        k, j, i = sl[0].start, sl[1].start, sl[2].start
        np.testing.assert_allclose(there[k - dz, j - dy, i - dx], vol[k, j, i], atol=1e-5)


@FAST
@given(grids(max_size=64))
def test_sr_grid_covers_the_lr_slab(lr):
    sr = sr_grid(lr)
    np.testing.assert_allclose(sr.spacing, [SR_INPLANE_MM, SR_INPLANE_MM, SR_THROUGH_MM], rtol=1e-9)
    np.testing.assert_allclose(sr.directions, lr.directions, atol=1e-9)
    # every outer corner of the LR slab lies inside the SR grid's outer box (up to the 1e-3 voxel that
    # sr_grid tolerates so float32 affines read back from files do not gain a voxel)
    ijk = sr.world_to_index(lr.corners())
    hi = np.array(sr.shape[::-1]) - 0.5
    assert np.all(ijk >= -0.5 - 1e-3) and np.all(ijk <= hi + 1e-3)
    # ... and the SR box overhangs the LR box by less than one SR voxel per axis
    lengths = np.array(lr.shape[::-1]) * lr.spacing
    sr_lengths = np.array(sr.shape[::-1]) * sr.spacing
    assert np.all(sr_lengths >= lengths - 1e-3 * sr.spacing) and np.all(sr_lengths - lengths < sr.spacing + 1e-9)
    # nearest-slice placement only ever picks existing LR slices, in order along the normal
    idx = nearest_slice_indices(lr, sr)
    assert idx.min() >= 0 and idx.max() < lr.shape[0] and np.all(np.diff(idx) >= 0)


@FAST
@given(st.data(), st.integers(3, 40), st.integers(0, 2**31 - 1))
def test_kabsch_recovers_rigid_transforms(data, n, seed):
    t = rigid(data.draw)
    pts = np.random.default_rng(seed).uniform(-80, 80, (n, 3))
    if np.linalg.matrix_rank(pts - pts.mean(0), tol=1e-3) < 3:
        return  # degenerate point sets do not define a rotation
    est = kabsch(pts, apply_transform(pts, t))
    np.testing.assert_allclose(est, t, atol=1e-6)
    assert abs(np.linalg.det(est[:3, :3]) - 1) < 1e-9
    # the inverse direction too
    np.testing.assert_allclose(kabsch(apply_transform(pts, t), pts), np.linalg.inv(t), atol=1e-6)
