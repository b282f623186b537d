"""ACDC, M&Ms and UK Biobank layouts: pairing, ED/ES, height/weight and label remapping."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import load_study
from gemini_cmr.core.io.layouts import remap_labels
from gemini_cmr.core.io.nifti import save_nifti

AFFINE = np.diag([1.5, 1.5, 8.0, 1.0])


def _labels(shape, lv=1, myo=2, rv=3):
    """A toy heart in (Z, Y, X) with the given label values: LV ring and cavity, RV beside it."""
    lab = np.zeros(shape, dtype=np.uint8)
    lab[:, 4:16, 4:16] = myo
    lab[:, 7:13, 7:13] = lv
    lab[:, 6:14, 17:22] = rv
    return lab


# --- remapping ------------------------------------------------------------------------------------------------
def test_remap_tables():
    raw = np.array([0, 1, 2, 3, 4])
    np.testing.assert_array_equal(remap_labels(raw[:4], "acdc", "x"), [0, 3, 2, 1])
    np.testing.assert_array_equal(remap_labels(raw[:4], "mnms", "x"), [0, 1, 2, 3])
    np.testing.assert_array_equal(remap_labels(raw[[0, 1, 2, 4]], "ukdhp", "x"), [0, 1, 2, 3])
    with pytest.raises(StudyError, match=r"unexpected label values \[3\] for ukdhp"):
        remap_labels(raw[:4], "ukdhp", "x")
    with pytest.raises(StudyError, match="non-integer"):
        remap_labels(np.array([0.0, 1.5]), "acdc", "x")


# --- synthetic layouts -------------------------------------------------------------------------------------------
def test_synthetic_acdc_folder_with_4d(tmp_path):
    folder = tmp_path / "patient123"
    folder.mkdir()
    image = np.random.default_rng(0).random((10, 5, 24, 24)).astype(np.float32)
    save_nifti(folder / "patient123_4d.nii.gz", image, AFFINE)
    raw_ed = _labels((5, 24, 24), lv=3, myo=2, rv=1)  # ACDC numbering
    save_nifti(folder / "patient123_frame02.nii.gz", image[1], AFFINE)
    save_nifti(folder / "patient123_frame02_gt.nii.gz", raw_ed, AFFINE)
    save_nifti(folder / "patient123_frame07.nii.gz", image[6], AFFINE)
    save_nifti(folder / "patient123_frame07_gt.nii.gz", raw_ed, AFFINE)
    (folder / "Info.cfg").write_text("ED: 2\nES: 7\nGroup: NOR\nHeight: 170.5\nNbFrame: 10\nWeight: 64.0\n")
    study = load_study(folder)
    assert study.image.shape == (10, 5, 24, 24)
    assert (study.meta.ed_phase, study.meta.es_phase) == (1, 6)
    assert study.labelled_phases == [1, 6]
    assert study.meta.height_cm == 170.5 and study.meta.weight_kg == 64.0 and study.meta.group == "NOR"
    np.testing.assert_array_equal(study.labels[1], _labels((5, 24, 24)))
    assert not study.labels[0].any()
    assert study.meta.format == "acdc"


def test_synthetic_acdc_frames_only(tmp_path):
    folder = tmp_path / "patient007"
    folder.mkdir()
    for n in (1, 9):
        save_nifti(folder / f"patient007_frame{n:02d}.nii.gz", np.full((5, 24, 24), n, np.float32), AFFINE)
    (folder / "Info.cfg").write_text("ED: 9\nES: 1\n")
    study = load_study(folder)
    assert study.image.shape == (2, 5, 24, 24)
    assert study.image[0, 0, 0, 0] == 1 and study.image[1, 0, 0, 0] == 9
    assert (study.meta.ed_phase, study.meta.es_phase) == (1, 0)
    assert study.meta.extra["frame_numbers"] == [1, 9]
    assert any("no 4D cine" in w for w in study.meta.warnings)


def test_mnms_subject_folder(tmp_path):
    folder = tmp_path / "A0S9V9"
    folder.mkdir()
    image = np.random.default_rng(1).random((8, 5, 24, 24)).astype(np.float32)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[0] = labels[5] = _labels((5, 24, 24))
    save_nifti(folder / "A0S9V9_sa.nii.gz", image, AFFINE)
    save_nifti(folder / "A0S9V9_sa_gt.nii.gz", labels, AFFINE)
    study = load_study(folder)
    assert study.meta.format == "mnms"
    assert study.labelled_phases == [0, 5]
    np.testing.assert_array_equal(study.labels, labels)
    assert study.meta.ed_phase is None  # not in the subject folder: the engine computes it


def test_ukbb_subject_folder(tmp_path):
    folder = tmp_path / "1000001"
    folder.mkdir()
    image = np.random.default_rng(2).random((6, 4, 24, 24)).astype(np.float32)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[0] = _labels((4, 24, 24))
    save_nifti(folder / "sa.nii.gz", image, AFFINE)
    save_nifti(folder / "label_sa.nii.gz", labels, AFFINE)
    save_nifti(folder / "la_4ch.nii.gz", image[:, :1], AFFINE)
    study = load_study(folder)
    assert study.meta.format == "ukbb" and study.meta.patient_id == "1000001"
    np.testing.assert_array_equal(study.labels, labels)


def test_label_shape_mismatch(tmp_path):
    save_nifti(tmp_path / "sa.nii.gz", np.ones((2, 4, 24, 24), np.float32), AFFINE)
    save_nifti(tmp_path / "seg_sa.nii.gz", np.zeros((2, 4, 24, 20), np.uint8), AFFINE)
    with pytest.raises(StudyError, match=r"seg_sa.nii.gz: label shape"):
        load_study(tmp_path)


def test_labels_on_another_grid_load_with_a_warning_and_a_training_problem(tmp_path):
    moved = AFFINE.copy()
    moved[1, 3] += 4.0
    save_nifti(tmp_path / "sa.nii.gz", np.ones((2, 4, 24, 24), np.float32), AFFINE)
    save_nifti(tmp_path / "label_sa.nii.gz", np.zeros((2, 4, 24, 24), np.uint8), moved)
    study = load_study(tmp_path)  # viewable: the image geometry is used
    assert any("label affine differs" in w for w in study.meta.warnings)
    assert study.meta.extra["label_problems"] == ["label_sa.nii.gz: labels on another grid than their image "
                                                  "(the affines differ)"]
    save_nifti(tmp_path / "label_sa.nii.gz", np.zeros((2, 4, 24, 24), np.uint8), AFFINE)
    assert "label_problems" not in load_study(tmp_path).meta.extra


# --- real ACDC -----------------------------------------------------------------------------------------------
@pytest.mark.data
def test_real_acdc_patient001(shared_data):
    folder = shared_data / "acdc" / "training" / "patient001"
    study = load_study(folder)
    assert study.image.shape == (2, 10, 256, 216)
    np.testing.assert_allclose(study.spacing, [1.5625, 1.5625, 10.0], atol=1e-5)
    assert (study.meta.ed_phase, study.meta.es_phase) == (0, 1)  # Info.cfg ED 1, ES 12
    assert study.meta.height_cm == 184.0 and study.meta.weight_kg == 95.0 and study.meta.group == "DCM"
    assert any("pixdim" in w for w in study.meta.warnings)
    raw = np.transpose(np.asarray(nib.load(str(folder / "patient001_frame01_gt.nii.gz")).dataobj), (2, 1, 0))
    ed = study.labels[0]
    assert np.array_equal(ed == 1, raw == 3) and np.array_equal(ed == 3, raw == 1)
    assert np.array_equal(ed == 2, raw == 2)
    # Anatomy check: the LV cavity (1) is surrounded by myocardium (2); cavity shrinks from ED to ES.
    lv_ed, lv_es = (study.labels[0] == 1).sum(), (study.labels[1] == 1).sum()
    assert lv_ed > lv_es > 0
    ml = study.grid.voxel_volume_ml
    assert 150 < lv_ed * ml < 400  # dilated cardiomyopathy: large LV


@pytest.mark.data
def test_real_acdc_patient090_4d(shared_data):
    folder = shared_data / "acdc" / "training" / "patient090"
    study = load_study(folder)
    assert study.image.shape == (12, 7, 224, 154)
    np.testing.assert_allclose(study.spacing, [1.78571, 1.78571, 10.0], atol=1e-4)
    assert (study.meta.ed_phase, study.meta.es_phase) == (3, 10)
    assert study.labelled_phases == [3, 10]
    frame = load_study(folder / "patient090_frame04.nii.gz")
    np.testing.assert_array_equal(frame.image[0], study.image[3])  # the 4D cine's 4th frame is ED
    np.testing.assert_array_equal(frame.labels[0], study.labels[3])
    np.testing.assert_allclose(frame.affine, study.affine)


def test_folder_of_subjects_asks_for_one(tmp_path):
    for name in ("patient001", "patient002"):
        (tmp_path / name).mkdir()
        save_nifti(tmp_path / name / f"{name}_frame01.nii.gz", np.ones((4, 24, 24), np.float32), AFFINE)
    with pytest.raises(StudyError, match="2 NIfTI file.s. in subfolders: pass one subject folder"):
        load_study(tmp_path)
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("a", "b"):
        save_nifti(loose / f"{name}.nii.gz", np.ones((4, 24, 24), np.float32), AFFINE)
    with pytest.raises(StudyError, match="2 NIfTI images in the folder"):
        load_study(loose)


@pytest.mark.data
def test_real_acdc_single_files(shared_data):
    folder = shared_data / "acdc" / "training" / "patient090"
    four_d = load_study(folder / "patient090_4d.nii.gz")
    assert (four_d.meta.ed_phase, four_d.meta.es_phase) == (3, 10) and four_d.labelled_phases == [3, 10]
    frame = load_study(folder / "patient090_frame11.nii.gz")
    assert frame.image.shape == (1, 7, 224, 154) and frame.has_labels
    assert frame.meta.height_cm == 150.0 and frame.meta.weight_kg == 66.0 and frame.meta.format == "acdc"
