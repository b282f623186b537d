"""Surfaces: closed, outward, volume ~ label volume, in world mm for oblique and reflected grids."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import pyvista as pv

from gemini_cmr.core import mesh
from gemini_cmr.core.geometry import rotation_matrix
from gemini_cmr.core.study import Grid


def _heart(shape=(40, 64, 64), spacing=(1.25, 1.25, 2.0)) -> np.ndarray:
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz) * spacing[2], np.arange(ny) * spacing[1], np.arange(nx) * spacing[0],
                          indexing="ij")
    cz, cy, cx = nz * spacing[2] / 2, ny * spacing[1] / 2, nx * spacing[0] / 2 - 8
    r = np.sqrt(((x - cx) / 18) ** 2 + ((y - cy) / 15) ** 2 + ((z - cz) / 28) ** 2)
    lab = np.zeros(shape, np.uint8)
    lab[r < 1.35] = 2
    lab[r < 1.0] = 1
    rv = np.sqrt(((x - cx - 30) / 9) ** 2 + ((y - cy) / 14) ** 2 + ((z - cz) / 24) ** 2)
    lab[(rv < 1) & (lab == 0)] = 3
    return lab


def _oblique(shape, spacing=(1.25, 1.25, 2.0), reflect=False) -> Grid:
    r = rotation_matrix(np.array([1.0, 2.0, 0.5]), 37.0)
    if reflect:
        r = r @ np.diag([1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = r * np.asarray(spacing)
    aff[:3, 3] = [-40.0, 12.5, 100.0]
    return Grid(shape, aff)


@pytest.mark.parametrize("reflect", [False, True])
def test_surfaces_closed_volume_world(reflect):
    lab = _heart()
    grid = _oblique(lab.shape, reflect=reflect)
    surfs = mesh.label_surfaces(lab, grid)
    assert set(surfs) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    vv = grid.voxel_volume_ml * 1000.0
    for label, name in ((1, "lv_cavity"), (2, "lv_myocardium"), (3, "rv_cavity")):
        s = surfs[name]
        assert s.n_open_edges == 0, name
        assert s.is_all_triangles
        expected = np.count_nonzero(lab == label) * vv
        assert s.volume == pytest.approx(expected, rel=0.05), name  # positive: outward faces
        # Bounds: the mesh hugs the world positions of the label's voxel centres (within a voxel).
        ijk = np.argwhere(lab == label)[:, ::-1]
        world = grid.index_to_world(ijk)
        lo, hi = world.min(0), world.max(0)
        b = np.asarray(s.bounds).reshape(3, 2)
        tol = np.linalg.norm(grid.spacing)
        assert np.all(np.abs(b[:, 0] - lo) < tol) and np.all(np.abs(b[:, 1] - hi) < tol), (b, lo, hi)
    # LV cavity: tight tolerance (large, convex).
    assert surfs["lv_cavity"].volume == pytest.approx(np.count_nonzero(lab == 1) * vv, rel=0.03)
    # The centroid of the LV cavity mesh is the world centroid of its voxels.
    c_vox = grid.index_to_world(np.argwhere(lab == 1)[:, ::-1].mean(0))
    assert np.allclose(surfs["lv_cavity"].center_of_mass(), c_vox, atol=0.5)


def test_empty_and_cropped_border():
    grid = Grid((10, 20, 20), np.diag([1.25, 1.25, 2.0, 1.0]))
    assert mesh.label_surfaces(np.zeros((10, 20, 20), np.uint8), grid) == {}
    lab = np.zeros((10, 20, 20), np.uint8)
    lab[:, :6, :6] = 1  # touches the grid border: still closed
    s = mesh.label_surfaces(lab, grid)["lv_cavity"]
    assert s.n_open_edges == 0
    voxels = lab.sum() * 1.25 * 1.25 * 2.0
    assert 0.7 * voxels < s.volume < voxels  # a box's edges and corners round off under smoothing
    assert np.asarray(s.bounds)[0] == pytest.approx(-0.5 * 1.25, abs=0.2)  # closed at the grid edge
    stairs = mesh.label_surfaces(lab, grid, smoothing=False)["lv_cavity"]
    assert stairs.n_open_edges == 0
    assert stairs.volume == pytest.approx(voxels, rel=1e-4)  # unsmoothed: exactly the voxels


def test_largest_component_only():
    grid = Grid((20, 30, 30), np.diag([1.25, 1.25, 2.0, 1.0]))
    lab = np.zeros(grid.shape, np.uint8)
    lab[4:14, 5:15, 5:15] = 1
    lab[16:18, 25:27, 25:27] = 1  # a stray island
    one = mesh.label_surfaces(lab, grid, smoothing=False)["lv_cavity"]
    assert one.volume == pytest.approx(1000 * 1.25 * 1.25 * 2.0, rel=1e-4)
    assert one.connectivity().point_data["RegionId"].max() == 0
    both = mesh.label_surfaces(lab, grid, smoothing=False, largest_component=False)["lv_cavity"]
    assert both.volume == pytest.approx(1008 * 1.25 * 1.25 * 2.0, rel=1e-4)


def test_writers_and_series(tmp_path):
    lab = _heart(shape=(24, 48, 48))
    grid = _oblique(lab.shape)
    labels = np.stack([lab, np.where(lab == 1, 0, lab)])  # phase 1 without LV cavity
    by_phase = mesh.phase_surfaces(labels, grid, phases=[3, 7])
    assert set(by_phase) == {3, 7} and "lv_cavity" not in by_phase[7]
    paths = mesh.write_phase_meshes(by_phase[3], tmp_path, "ed", mesh.parse_formats("stl,obj,ply,vtp"))
    assert len(paths) == 12
    ref = by_phase[3]["lv_cavity"]
    for fmt in mesh.MESH_FORMATS:
        back = pv.read(tmp_path / f"ed_lv_cavity.{fmt}")
        assert back.n_cells == ref.n_cells
        assert np.allclose(back.bounds, ref.bounds, atol=1e-3)
    series = mesh.write_series(by_phase, tmp_path / "all", ["stl"], phase_times_ms=np.arange(10) * 40.0)
    pvd = tmp_path / "all" / "lv_myocardium_series.pvd"
    assert pvd in series
    entries = ET.parse(pvd).getroot().findall("./Collection/DataSet")
    assert [e.get("timestep") for e in entries] == ["120", "280"]
    assert all((pvd.parent / e.get("file")).is_file() for e in entries)
    assert (tmp_path / "all" / "phase_07_rv_cavity.stl").is_file()
    assert not list(tmp_path.rglob(".*tmp*"))
    with pytest.raises(ValueError):
        mesh.parse_formats("stl,fbx")
