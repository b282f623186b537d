"""gemini_cmr.core.reformat (pure numpy): the long axis of the phantom and plane sampling."""

from __future__ import annotations

import numpy as np

from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.reformat import (
    long_axis,
    plane_slice_line,
    plane_through_line,
    sample_plane,
    standard_planes,
)
from tests.app.phantom import _frame, labels_at, lr_grid


def test_long_axis_and_standard_planes_follow_the_anatomy():
    g = sr_grid(lr_grid())
    labels = labels_at(g.voxel_centres(), 0, lr_grid())
    axis = long_axis(labels, g)
    centre, true_axis, side = _frame(lr_grid())
    angle = np.degrees(np.arccos(abs(np.dot(axis.direction, true_axis))))
    assert angle < 4, angle
    assert np.linalg.norm(np.cross(axis.centre - centre, true_axis)) < 4  # on the true axis line
    planes = standard_planes(axis, lr_grid())
    # The 4-chamber plane contains the RV centre's direction; the 2-chamber one is perpendicular to it.
    assert abs(np.dot(planes["4ch"].normal, side)) < 0.1
    assert abs(np.dot(planes["2ch"].normal, planes["4ch"].normal)) < 1e-6
    lab4 = sample_plane(labels, g, planes["4ch"], 1.25, order=0)
    lab2 = sample_plane(labels, g, planes["2ch"], 1.25, order=0)
    assert set(np.unique(lab4)) == {0, 1, 2, 3}  # LV and RV in the 4-chamber view
    assert 3 not in np.unique(lab2[:, lab2.shape[1] // 2 - 3: lab2.shape[1] // 2 + 3])
    # Apex up: the LV cavity's top rows are nearer the apex than its bottom rows.
    rows = np.nonzero((lab4 == 1).any(axis=1))[0]
    top = planes["4ch"].to_world(np.array([0.0, (rows[0] - lab4.shape[0] / 2) * 1.25]))
    assert np.dot(top - axis.centre, axis.direction) > 0


def test_sample_plane_matches_voxels_and_keeps_slabs():
    g = lr_grid()
    vol = np.arange(np.prod(g.shape), dtype=np.float32).reshape(g.shape)
    nz, ny, nx = g.shape
    p0 = g.index_to_world(np.array([10.0, 40.0, 4.0]))
    p1 = g.index_to_world(np.array([70.0, 40.0, 4.0]))
    plane = plane_through_line(p0, p1, g)
    img = sample_plane(vol, g, plane, 1.0, order=1, nearest_slices=True)
    # Each row lies in one slab: slice index is constant along rows within the volume.
    pts = plane.points(1.0)
    k = np.floor(g.world_to_index(pts)[..., 2] + 0.5)
    inside = (k >= 0) & (k < nz)
    assert inside.any()
    for row_k, row_in in zip(k, inside):
        assert len(set(row_k[row_in])) <= 1
    lab = sample_plane(vol.astype(np.uint16) % 4, g, plane, 1.0, order=0)
    assert lab.dtype == np.uint16 and img.shape == lab.shape
    line = plane_slice_line(plane, g, 4.0)
    assert line is not None
    ijk = g.world_to_index(np.stack(line))
    np.testing.assert_allclose(ijk[:, 2], 4.0, atol=1e-6)
    np.testing.assert_allclose(ijk[:, 1], 40.0, atol=1e-6)
