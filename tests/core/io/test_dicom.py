"""DICOM loading on synthetic series with known geometry: order, affine, selection, bad input."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import generate_uid

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.geometry import rotation_matrix
from gemini_cmr.core.io import load_study
from tests.core.io import dicom_factory as fac
from tests.core.io.dicom_factory import CineSpec


def _expected_image(spec: CineSpec, slice_order: list[int] | None = None) -> np.ndarray:
    order = slice_order if slice_order is not None else list(range(spec.n_slices))
    img = np.stack([np.stack([fac.pixel_code(t, k, spec.rows, spec.cols) for k in order])
                    for t in range(spec.n_phases)]).astype(np.float32)
    return img * spec.slope + spec.intercept


def test_oblique_series_geometry_and_order(tmp_path):
    spec = CineSpec()
    fac.write(tmp_path, fac.make_cine(spec), shuffle_seed=3)
    study = load_study(tmp_path)
    assert study.image.shape == (5, 4, 20, 24)
    np.testing.assert_array_equal(study.image, _expected_image(spec))
    np.testing.assert_allclose(study.affine, fac.expected_ras_affine(spec), atol=1e-5)
    np.testing.assert_allclose(study.spacing, [1.25, 1.5, 8.0], atol=1e-6)
    assert study.meta.slice_thickness_mm == 6.0
    assert study.meta.format == "dicom"
    # Every voxel sits where DICOM says, in RAS (LPS with x, y negated).
    for column, row, k in [(0, 0, 0), (23, 0, 1), (5, 19, 3), (11, 7, 2)]:
        lps = spec.lps_of(column, row, k)
        ras = study.grid.index_to_world(np.array([column, row, k]))
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-4)
    # TriggerTime differs per slice; phase times are the mean over slices.
    np.testing.assert_allclose(study.phase_times_ms, np.arange(5) * 40.0 + 4.5)
    assert study.meta.height_cm == pytest.approx(172.0)
    assert study.meta.weight_kg == pytest.approx(70.0)


def test_slices_ordered_along_normal_not_by_instance(tmp_path):
    spec = CineSpec(gap=-8.0)  # acquired from apex to base against the normal
    fac.write(tmp_path, fac.make_cine(spec))
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.image, _expected_image(spec, [3, 2, 1, 0]))
    np.testing.assert_allclose(study.affine[:3, 3], spec.position(3) * [-1, -1, 1], atol=1e-5)
    np.testing.assert_allclose(study.spacing[2], 8.0, atol=1e-6)
    # k increases along the slice normal (cross product of the in-plane DICOM axes, in RAS).
    normal_ras = spec.normal * [-1, -1, 1]
    assert np.dot(study.grid.directions[:, 2], normal_ras) == pytest.approx(1.0)


def test_phase_order_falls_back_when_trigger_time_missing(tmp_path):
    spec = CineSpec(n_slices=3, n_phases=4)
    datasets = fac.make_cine(spec)
    for ds in datasets:
        del ds.TriggerTime
        del ds.AcquisitionTime
        # InstanceNumbers run backwards in time; TemporalPositionIdentifier is the truth.
        t = int(ds.InstanceNumber - 1) % spec.n_phases
        ds.TemporalPositionIdentifier = t + 1
        ds.InstanceNumber = 100 - ds.InstanceNumber
    fac.write(tmp_path, datasets)
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.image, _expected_image(spec))
    assert study.phase_times_ms is None


def test_rescale_slope_and_intercept(tmp_path):
    spec = CineSpec(slope=2.5, intercept=-100.0)
    fac.write(tmp_path, fac.make_cine(spec))
    study = load_study(tmp_path)
    np.testing.assert_allclose(study.image, _expected_image(spec))


def test_one_series_per_slice_is_merged_and_selectable(tmp_path):
    spec = CineSpec(one_series_per_slice=True, description="CINE_segmented_SAX")
    datasets = fac.make_cine(spec)
    fac.write(tmp_path, datasets)
    study = load_study(tmp_path)
    assert study.image.shape == (5, 4, 20, 24)
    np.testing.assert_array_equal(study.image, _expected_image(spec))
    np.testing.assert_allclose(study.affine, fac.expected_ras_affine(spec), atol=1e-5)
    assert len(study.meta.extra["series_uids"]) == 4
    assert study.meta.series_description == "CINE_segmented_SAX"
    # Naming one slice's series picks the stack it belongs to.
    again = load_study(tmp_path, series_uid=datasets[7].SeriesInstanceUID)
    assert again.image.shape == study.image.shape


def test_derived_series_is_not_preferred_or_merged(tmp_path):
    study_uid, for_uid = generate_uid(), generate_uid()
    acquired = fac.make_cine(CineSpec(one_series_per_slice=True, description="CINE_segmented_SAX"),
                             study_uid, for_uid)
    derived_spec = CineSpec(n_phases=6, one_series_per_slice=True, description="CINE_segmented_SAX_InlineVF",
                            image_type=("DERIVED", "PRIMARY", "M", "NORM"))
    derived = fac.make_cine(derived_spec, study_uid, for_uid)
    for ds in derived:
        ds.SeriesNumber += 100
    fac.write(tmp_path, acquired + derived)
    study = load_study(tmp_path)
    assert study.image.shape == (5, 4, 20, 24)  # the acquired stack, although the derived one is larger
    assert study.meta.series_description == "CINE_segmented_SAX"


def test_picks_sax_cine_and_skips_localizer_and_other_orientation(tmp_path):
    study_uid, for_uid = generate_uid(), generate_uid()
    sax = CineSpec()
    lax = CineSpec(n_slices=1, n_phases=5, orientation=fac.AXIAL, description="cine_4ch")
    small = CineSpec(n_slices=2, n_phases=3, description="cine_sax_small")
    loc = CineSpec(n_slices=3, n_phases=1, orientation=fac.AXIAL, description="localizer",
                   image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    fac.write(tmp_path / "a", fac.make_cine(sax, study_uid, for_uid))
    fac.write(tmp_path / "b", fac.make_cine(lax, study_uid, for_uid))
    fac.write(tmp_path / "c", fac.make_cine(loc, study_uid, for_uid))
    small_sets = fac.make_cine(small, study_uid, for_uid)
    fac.write(tmp_path / "d", small_sets)
    (tmp_path / "notes.txt").write_text("not a DICOM file")
    study = load_study(tmp_path)
    assert study.image.shape == (5, 4, 20, 24)
    text = " | ".join(study.meta.warnings)
    assert "localizer" in text and "non-DICOM" in text and "cine_sax_small" in text
    # the single-slice cine at an angle to the stack is kept as a long-axis series, not reported as skipped
    assert "cine_4ch" not in text and [c.description for c in study.meta.long_axis_series] == ["cine_4ch"]
    chosen = load_study(tmp_path, series_uid=small_sets[0].SeriesInstanceUID)
    assert chosen.image.shape == (3, 2, 20, 24)
    # Pointing at one file loads that file's series.
    assert load_study(tmp_path / "d" / "IM_0000.dcm").image.shape == (3, 2, 20, 24)
    with pytest.raises(StudyError, match="no series with SeriesInstanceUID 1.2.3"):
        load_study(tmp_path, series_uid="1.2.3")


def test_duplicate_instances_are_ignored(tmp_path):
    spec = CineSpec()
    datasets = fac.make_cine(spec)
    fac.write(tmp_path, datasets)
    fac.write(tmp_path / "copy", datasets[:6], prefix="DUP")
    study = load_study(tmp_path)
    assert study.image.shape == (5, 4, 20, 24)
    np.testing.assert_array_equal(study.image, _expected_image(spec))
    assert any("6 duplicate" in w for w in study.meta.warnings)


def test_zip_matches_folder(tmp_path):
    spec = CineSpec()
    paths = fac.write(tmp_path / "dcm", fac.make_cine(spec))
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, f"patient/series/{p.name}")
    study = load_study(archive)
    np.testing.assert_array_equal(study.image, _expected_image(spec))
    np.testing.assert_allclose(study.affine, fac.expected_ras_affine(spec), atol=1e-5)
    assert study.meta.source_path == str(archive)


# --- incomplete and bad input --------------------------------------------------------------------------------
def test_incomplete_series_error_and_complete_subset(tmp_path):
    spec = CineSpec(n_slices=4, n_phases=6)
    datasets = [ds for ds in fac.make_cine(spec) if ds.InstanceNumber <= 20]
    fac.write(tmp_path, datasets)  # slice 4 keeps only 2 of 6 phases
    with pytest.raises(StudyError) as err:
        load_study(tmp_path)
    msg = str(err.value)
    assert "slices 1-3 of 4: 6 phases" in msg and "slice 4 of 4: 2 phases" in msg and "\n" not in msg
    study = load_study(tmp_path, allow_incomplete=True)
    assert study.image.shape == (6, 3, 20, 24)
    np.testing.assert_array_equal(study.image, _expected_image(CineSpec(n_slices=3, n_phases=6)))
    assert any("complete subset" in w for w in study.meta.warnings)


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_tag_names_the_file(tmp_path, tag):
    datasets = fac.make_cine(CineSpec())
    delattr(datasets[5], tag)
    paths = fac.write(tmp_path, datasets, shuffle_seed=None)
    with pytest.raises(StudyError, match=f"{paths[5].name}: missing {tag}"):
        load_study(tmp_path)


def test_mixed_orientations_in_one_series(tmp_path):
    datasets = fac.make_cine(CineSpec())
    datasets[3].ImageOrientationPatient = [f"{v:.8f}" for v in fac.AXIAL]
    paths = fac.write(tmp_path, datasets, shuffle_seed=None)
    with pytest.raises(StudyError, match=f"{paths[3].name}: mixed orientations"):
        load_study(tmp_path)


def test_truncated_file_is_named(tmp_path):
    paths = fac.write(tmp_path, fac.make_cine(CineSpec()), shuffle_seed=None)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(StudyError, match=paths[2].name) as err:
        load_study(tmp_path)
    assert "truncated" in str(err.value)


def test_truncated_header_is_named(tmp_path):
    paths = fac.write(tmp_path, fac.make_cine(CineSpec()), shuffle_seed=None)
    paths[4].write_bytes(paths[4].read_bytes()[:300])
    with pytest.raises(StudyError, match=paths[4].name):
        load_study(tmp_path)


def test_absurd_matrix_size_is_rejected(tmp_path):
    datasets = fac.make_cine(CineSpec())
    datasets[0].Rows = 60000
    paths = fac.write(tmp_path, datasets, shuffle_seed=None)
    with pytest.raises(StudyError, match=f"{paths[0].name}: implausible image size"):
        load_study(tmp_path)


def test_float_pixels_with_nan_are_rejected(tmp_path):
    datasets = fac.make_cine(CineSpec(n_slices=2, n_phases=2))
    for ds in datasets:
        arr = np.zeros((ds.Rows, ds.Columns), dtype="<f4")
        arr[3, 4] = np.nan
        del ds.PixelData
        del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
        ds.BitsAllocated = 32
        ds.FloatPixelData = arr.tobytes()
    fac.write(tmp_path, datasets)
    with pytest.raises(StudyError, match=r"IM_\d{4}\.dcm: 1 NaN/Inf pixel values"):
        load_study(tmp_path)


def test_single_slice_is_2d_only(tmp_path):
    fac.write(tmp_path, fac.make_cine(CineSpec(n_slices=1)))
    with pytest.raises(StudyError, match="2D-only"):
        load_study(tmp_path)


def test_folder_without_cine(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(StudyError, match="no DICOM images"):
        load_study(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StudyError, match="no cine"):
        load_study(empty)
    stills = tmp_path / "stills"
    fac.write(stills, fac.make_cine(CineSpec(n_phases=1)))
    with pytest.raises(StudyError, match="no cine"):
        load_study(stills)


def test_zip_with_traversal_name_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.dcm", b"x" * 200)
    with pytest.raises(StudyError, match="unsafe member name"):
        load_study(archive)
    assert not (tmp_path.parent / "outside.dcm").exists()


def test_patient_size_in_centimetres_is_recognised(tmp_path):
    spec = CineSpec(patient_size_m=172.0)
    fac.write(tmp_path, fac.make_cine(spec))
    study = load_study(tmp_path)
    assert study.meta.height_cm == pytest.approx(172.0)
    assert any("centimetres" in w for w in study.meta.warnings)


def test_missing_path(tmp_path):
    with pytest.raises(StudyError, match="no such file"):
        load_study(Path(tmp_path) / "nope")


def test_repeated_slice_series_keeps_the_last(tmp_path):
    spec = CineSpec(one_series_per_slice=True, description="CINE_segmented_SAX")
    datasets = fac.make_cine(spec)
    repeat = fac.make_cine(spec, datasets[0].StudyInstanceUID, datasets[0].FrameOfReferenceUID)
    redo = [ds for ds in repeat if ds.SeriesInstanceUID == repeat[10].SeriesInstanceUID]  # slice 3 again
    for ds in redo:
        ds.SeriesNumber = 99
        ds.PixelData = (fac.pixel_code(0, 0, spec.rows, spec.cols) + 7).astype("<i2").tobytes()
    fac.write(tmp_path, datasets + redo)
    study = load_study(tmp_path)
    assert study.image.shape == (5, 4, 20, 24)
    assert np.all(study.image[:, 2] == fac.pixel_code(0, 0, spec.rows, spec.cols) + 7)
    np.testing.assert_array_equal(study.image[:, 1], _expected_image(spec)[:, 1])
    assert any("slice 3 was acquired in 2 series" in w for w in study.meta.warnings)


def test_single_file_that_is_not_dicom(tmp_path):
    fac.write(tmp_path, fac.make_cine(CineSpec()))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StudyError, match="notes.txt: not a DICOM, NIfTI or zip file"):
        load_study(tmp_path / "notes.txt")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 nothing")
    with pytest.raises(StudyError, match="broken.zip: unreadable zip"):
        load_study(tmp_path / "broken.zip")
    # A single DICOM file stands for its whole series.
    assert load_study(tmp_path / "IM_0000.dcm").image.shape == (5, 4, 20, 24)


@settings(max_examples=12, deadline=None)
@given(
    axis=st.tuples(*[st.floats(-1, 1) for _ in range(3)]).filter(lambda a: np.linalg.norm(a) > 0.1),
    angle=st.floats(0, 180),
    gap=st.sampled_from([-10.0, -6.5, 5.0, 8.0]),
    spacing=st.tuples(st.floats(0.7, 2.5), st.floats(0.7, 2.5)),
)
def test_any_orientation_maps_voxels_to_their_dicom_position(axis, angle, gap, spacing):
    rot = rotation_matrix(np.array(axis), angle)
    spec = CineSpec(n_slices=3, n_phases=2, rows=16, cols=18, gap=gap, spacing=spacing,
                    orientation=np.concatenate([rot[:, 0], rot[:, 1]]))
    with tempfile.TemporaryDirectory() as tmp:
        fac.write(Path(tmp), fac.make_cine(spec))
        study = load_study(tmp)
    order = [0, 1, 2] if gap > 0 else [2, 1, 0]
    np.testing.assert_array_equal(study.image, _expected_image(spec, order))
    for column, row, k in [(0, 0, 0), (17, 15, 2), (3, 5, 1)]:
        lps = spec.lps_of(column, row, order[k])
        np.testing.assert_allclose(study.grid.index_to_world(np.array([column, row, k])), lps * [-1, -1, 1],
                                   atol=1e-3)


def test_repeated_trigger_times_are_reported(tmp_path):
    datasets = fac.make_cine(CineSpec(n_slices=2, n_phases=4))
    for ds in datasets:
        ds.TriggerTime = str(int(ds.InstanceNumber - 1) % 4 // 2 * 40)  # 0, 0, 40, 40 per slice
    fac.write(tmp_path, datasets)
    study = load_study(tmp_path)
    assert any("only 2 distinct TriggerTimes" in w for w in study.meta.warnings)
