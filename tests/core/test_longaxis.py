"""Long-axis cines (`core.longaxis`): readers (UK Biobank, M&Ms-2, DICOM), geometry against a short-axis stack,
the checks, and phase matching."""

from __future__ import annotations

import numpy as np
import pytest

from gemini_cmr.core import longaxis as la_mod
from gemini_cmr.core.errors import DataError
from gemini_cmr.core.geometry import rotation_matrix
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.longaxis import (
    LongAxisCine,
    check_long_axis,
    cut_volume,
    find_long_axis_files,
    intersection_line,
    intersection_lines,
    load_long_axis,
    match_phases,
)
from gemini_cmr.core.study import DicomIdentity, Study, StudyMeta


def sa_study(nz: int = 6, ny: int = 40, nx: int = 50, dz: float = 10.0) -> Study:
    """Axial-like stack: columns +x (1.5 mm), rows +y (1.5 mm), slices +z (dz), origin (-30, -20, 0)."""
    aff = np.diag([1.5, 1.5, dz, 1.0])
    aff[:3, 3] = [-30.0, -20.0, 0.0]
    img = np.zeros((2, nz, ny, nx), np.float32)
    return Study(image=img, affine=aff, meta=StudyMeta(source_path="sa.nii.gz", format="nifti"))


def sagittal_la(x0: float = 0.0, ny: int = 60, nx: int = 60, px: float = 1.6, n_phases: int = 2,
                z_centre: float = 25.0) -> LongAxisCine:
    """A plane x = x0: columns along +y, rows along -z (apex down the image), centred on (x0, 10, z_centre)."""
    aff = np.eye(4)
    aff[:3, 0] = [0.0, px, 0.0]
    aff[:3, 1] = [0.0, 0.0, -px]
    aff[:3, 2] = [8.0, 0.0, 0.0]
    centre = np.array([x0, 10.0, z_centre])
    aff[:3, 3] = centre - aff[:3, :3] @ np.array([(nx - 1) / 2, (ny - 1) / 2, 0.0])
    return LongAxisCine("4ch", np.zeros((n_phases, ny, nx), np.float32), aff, source_path="la_4ch.nii.gz")


# --- readers -----------------------------------------------------------------------------------------
def oblique_affine(px: float = 1.7) -> np.ndarray:
    rot = rotation_matrix(np.array([0.2, 1.0, 0.4]), 70.0)
    aff = np.eye(4)
    aff[:3, :3] = rot * np.array([px, px, 8.0])
    aff[:3, 3] = [12.5, -40.25, 33.0]
    return aff


def test_ukbb_reader_round_trip_with_label_mapping(tmp_path):
    aff = oblique_affine()
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 500, (5, 1, 30, 40)).astype(np.float32)
    lab = np.zeros((5, 1, 30, 40), np.uint8)
    lab[0, 0, 5:10, 5:10] = 1
    lab[0, 0, 10:12, 5:10] = 2
    lab[0, 0, 15:20, 5:10] = 3
    lab[0, 0, 20:25, 5:10] = 4  # left atrium -> background
    lab[0, 0, 25:28, 5:10] = 5  # right atrium -> background
    sub = tmp_path / "1000123"
    save_nifti(sub / "la_4ch.nii.gz", img, aff, 30.0)
    save_nifti(sub / "label_la_4ch.nii.gz", lab, aff, 30.0)
    save_nifti(sub / "sa.nii.gz", np.zeros((5, 6, 30, 30), np.float32), np.diag([1.8, 1.8, 10, 1]), 30.0)
    (la,) = load_long_axis(sub / "la_4ch.nii.gz")
    assert la.view == "4ch" and la.patient_id == "1000123" and la.grid.shape == (1, 30, 40)
    assert np.allclose(la.affine, aff, atol=1e-4)
    assert np.allclose(la.image, img[:, 0], atol=1e-3)
    assert la.labelled_phases == [0] and sorted(np.unique(la.labels)) == [0, 1, 2, 3]
    assert la.labels[0, 22, 7] == 0 and la.labels[0, 17, 7] == 3
    assert np.allclose(la.phase_times_ms, np.arange(5) * 30.0)
    assert find_long_axis_files(sub / "sa.nii.gz") == [sub / "la_4ch.nii.gz"]
    assert find_long_axis_files(sub) == [sub / "la_4ch.nii.gz"]


def test_mnms2_reader_finds_the_labelled_frames_in_the_cine(tmp_path):
    aff = oblique_affine(1.25)
    rng = np.random.default_rng(1)
    cine = rng.uniform(0, 100, (6, 1, 24, 28)).astype(np.float32)
    gt_ed = np.zeros((1, 24, 28), np.uint8)
    gt_ed[0, 4:9, 4:9] = 1
    gt_es = np.zeros((1, 24, 28), np.uint8)
    gt_es[0, 10:14, 4:9] = 3
    save_nifti(tmp_path / "160_LA_CINE.nii.gz", cine, aff)
    save_nifti(tmp_path / "160_LA_ED.nii.gz", cine[0], aff)
    save_nifti(tmp_path / "160_LA_ES.nii.gz", cine[4], aff)
    save_nifti(tmp_path / "160_LA_ED_gt.nii.gz", gt_ed, aff)
    save_nifti(tmp_path / "160_LA_ES_gt.nii.gz", gt_es, aff)
    assert find_long_axis_files(tmp_path / "160_SA_CINE.nii.gz") == [tmp_path / "160_LA_CINE.nii.gz"]
    (la,) = load_long_axis(tmp_path / "160_LA_ED.nii.gz")
    assert la.view == "4ch" and la.n_phases == 6 and la.ed_phase == 0 and la.es_phase == 4
    assert la.labelled_phases == [0, 4] and la.labels[4, 11, 5] == 3 and la.labels[0, 5, 5] == 1
    assert la.source_path.endswith("160_LA_CINE.nii.gz")


def test_a_stack_is_not_a_long_axis_cine(tmp_path):
    save_nifti(tmp_path / "la_2ch.nii.gz", np.zeros((3, 4, 20, 20), np.float32), np.diag([1.5, 1.5, 8, 1]))
    with pytest.raises(DataError, match=r"la_2ch\.nii\.gz: not a long-axis cine: 4 slices"):
        load_long_axis(tmp_path / "la_2ch.nii.gz")


def test_dicom_folder_long_axis_series_beside_the_stack(tmp_path):
    from pydicom.uid import generate_uid

    from tests.core.io.dicom_factory import CineSpec, make_cine, write

    study_uid, for_uid = generate_uid(), generate_uid()
    sa = CineSpec(n_slices=4, n_phases=5, description="cine_sax")
    la = CineSpec(n_slices=1, n_phases=5, description="CINE_segmented_LAX_4Ch",
                  orientation=np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]), origin=np.array([5.0, -20.0, 80.0]))
    write(tmp_path, make_cine(sa, study_uid, for_uid), prefix="SA")
    write(tmp_path, make_cine(la, study_uid, for_uid), prefix="LA")
    (cine,) = load_long_axis(tmp_path)
    assert cine.view == "4ch" and cine.n_phases == 5 and cine.image.shape == (5, la.rows, la.cols)
    assert cine.frame_of_reference_uid == for_uid and cine.patient_id == "SYN001"
    # LPS -> RAS: column direction (0, 1, 0) LPS = (0, -1, 0) RAS; origin (5, -20, 80) LPS = (-5, 20, 80)
    assert np.allclose(cine.affine[:3, 0], [0.0, -la.spacing[1], 0.0])
    assert np.allclose(cine.affine[:3, 3], [-5.0, 20.0, 80.0])
    assert cine.image[3, 0, 0] == 3000  # pixel code 1000 * phase


# --- geometry ----------------------------------------------------------------------------------------
def test_intersection_lines_of_a_sagittal_plane_with_an_axial_stack():
    sa = sa_study()
    la = sagittal_la(x0=0.0)
    lines = intersection_lines(la.grid, sa.grid)
    assert [ln.slice for ln in lines] == list(range(6))  # z = 0..50 all within the LA's -23..73 mm
    for ln in lines:
        z = 10.0 * ln.slice
        ends = ln.world(np.array(ln.t_range))
        assert np.allclose(ends[:, 0], 0.0) and np.allclose(ends[:, 2], z)
        # the SA image spans y = -20.75 .. 39.25 (rows), the LA image y = 10 +- 48: clipped by the SA
        assert np.allclose(sorted(ends[:, 1]), [-20.75, 39.25])
        # SA pixels: column i = (0 + 30) / 1.5 = 20; rows -0.5 .. 39.5
        assert np.allclose(ln.sa_ij[:, 0], 20.0) and np.allclose(sorted(ln.sa_ij[:, 1]), [-0.5, 39.5])
        # LA pixels: row j = (z_centre - z) / 1.6 + 29.5; columns from y
        assert np.allclose(ln.la_ij[:, 1], (25.0 - z) / 1.6 + 29.5)
        assert np.allclose(sorted(ln.la_ij[:, 0]), (np.array([-20.75, 39.25]) - 10.0) / 1.6 + 29.5)


def test_intersection_line_at_any_slice_position():
    sa = sa_study()
    la = sagittal_la(x0=0.0)
    ln = intersection_line(la.grid, sa.grid, 2.5)  # between slices 2 and 3: z = 25 mm
    ends = ln.world(np.array(ln.t_range))
    assert np.allclose(ends[:, 0], 0.0) and np.allclose(ends[:, 2], 25.0)
    assert np.allclose(sorted(ln.sa_ij[:, 1]), [-0.5, 39.5]) and np.allclose(ln.la_ij[:, 1], 29.5)
    whole = intersection_lines(la.grid, sa.grid)[3]
    at3 = intersection_line(la.grid, sa.grid, 3)
    assert at3.slice == 3 and np.allclose(at3.la_ij, whole.la_ij) and np.allclose(at3.sa_ij, whole.sa_ij)
    assert intersection_line(la.grid, sa.grid, 40.0) is None  # z = 400 mm: outside the long-axis image
    axial = LongAxisCine("la", np.zeros((1, 10, 10), np.float32), np.diag([1.5, 1.5, 8.0, 1.0]))
    assert intersection_line(axial.grid, sa.grid, 1.0) is None  # parallel planes


def test_cut_volume_nearest_slice_and_slab_mask():
    sa = sa_study()
    vol = np.broadcast_to(np.arange(6, dtype=np.uint8)[:, None, None] + 1, sa.grid.shape).copy()
    la = sagittal_la(x0=0.0)
    cut, inside = cut_volume(vol, sa.grid, la.grid, order=0)
    z = 25.0 - (np.arange(60) - 29.5) * 1.6  # world z of each LA row
    y = 10.0 + (np.arange(60) - 29.5) * 1.6
    in_slab = (z >= -5.0) & (z <= 55.0)
    in_fov = (y >= -20.75) & (y <= 39.25)
    assert np.array_equal(inside, in_slab[:, None] & in_fov[None, :])
    rows = np.flatnonzero(in_slab)
    expect = np.clip(np.floor(z[rows] / 10.0 + 0.5), 0, 5) + 1
    col = np.flatnonzero(in_fov)[0]
    assert np.array_equal(cut[rows, col], expect.astype(np.uint8))
    assert not cut[~inside].any()
    # a shifted cut samples p - shift: 3.2 mm along the LA columns = 2 pixels
    img = np.broadcast_to(np.arange(40, dtype=np.float32)[None, :, None], sa.grid.shape)
    c0, _ = cut_volume(img, sa.grid, la.grid, order=1)
    c1, _ = cut_volume(img, sa.grid, la.grid, order=1, shift_mm=np.array([3.2, 0.0]))
    assert np.allclose(c1[rows[3], 25], c0[rows[3], 23], atol=1e-4)


# --- checks ----------------------------------------------------------------------------------------------
def test_checks_name_the_file_and_the_problem():
    sa = sa_study()
    assert check_long_axis(sagittal_la(n_phases=2), sa) == []
    notes = check_long_axis(sagittal_la(n_phases=5), sa)
    assert len(notes) == 1 and "5 phases against the short-axis stack's 2" in notes[0]
    with pytest.raises(DataError, match=r"^la_4ch\.nii\.gz: the long-axis plane does not intersect"):
        check_long_axis(sagittal_la(x0=200.0), sa)
    with pytest.raises(DataError, match=r"^la_4ch\.nii\.gz: the long-axis plane does not intersect"):
        check_long_axis(sagittal_la(z_centre=400.0), sa)
    axial = sagittal_la()
    axial.affine = np.diag([1.6, 1.6, 8.0, 1.0])
    with pytest.raises(DataError, match="degrees from the short-axis slices"):
        check_long_axis(axial, sa)
    single = Study(image=sa.image[:, :1], affine=sa.affine, meta=sa.meta)
    with pytest.raises(DataError, match="single slice"):
        check_long_axis(sagittal_la(), single)
    other = sagittal_la()
    other.frame_of_reference_uid = "1.2.3"
    sa.meta.dicom = DicomIdentity("9.9", "1.2.4", "", [], [])
    with pytest.raises(DataError, match=r"^la_4ch\.nii\.gz: another study: Frame of Reference 1\.2\.3"):
        check_long_axis(other, sa)
    sa.meta.format, sa.meta.patient_id = "dicom", "P1"
    other.frame_of_reference_uid, other.patient_id = "", "P2"
    with pytest.raises(DataError, match="another patient"):
        check_long_axis(other, sa)


def test_match_phases():
    la = sagittal_la(n_phases=25)
    assert np.array_equal(match_phases(la, 25), np.arange(25))
    m = match_phases(sagittal_la(n_phases=10), 25)
    assert m[0] == 0 and m[5] == 2 and m[12] == 5 and m[24] == 0  # 24/25 of the cycle is nearest to 10/10
    two = sagittal_la(n_phases=2)
    two.ed_phase, two.es_phase = 0, 1
    m = match_phases(two, 20, ed=0, es=8)
    assert m[0] == 0 and m[8] == 1 and m[19] == 0


def test_view_names():
    assert la_mod.view_from_name("CINE_segmented_LAX_2Ch") == "2ch"
    assert la_mod.view_from_name("la_3ch.nii.gz") == "3ch"
    assert la_mod.view_from_name("017_LA_ES.nii.gz") == "4ch"
    assert la_mod.view_from_name("cine 4 chamber") == "4ch" and la_mod.view_from_name("cine lax") == "la"
    assert la_mod.view_from_name("four chamber") == "4ch"
