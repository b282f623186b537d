"""NIfTI studies: orientation of arrays, header gotchas, bad files, and SR-grid output overlaying the input."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.geometry import resample, rotation_matrix, sr_grid
from gemini_cmr.core.io import load_study
from gemini_cmr.core.io.nifti import save_nifti, to_file_order
from gemini_cmr.core.study import Grid


def _oblique_affine(spacing=(1.4, 1.6, 8.0), origin=(-60.0, 30.0, 15.0)) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = rotation_matrix(np.array([0.3, -0.5, 0.8]), 37.0) * np.asarray(spacing)
    a[:3, 3] = origin
    return a


def test_4d_roundtrip_keeps_axes_and_affine(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((6, 5, 20, 24)).astype(np.float32)  # (T, Z, Y, X)
    affine = _oblique_affine()
    save_nifti(tmp_path / "cine.nii.gz", image, affine, phase_interval_ms=35.0)
    raw = nib.load(str(tmp_path / "cine.nii.gz"))
    assert raw.shape == (24, 20, 5, 6)  # files are (x, y, z, t)
    study = load_study(tmp_path / "cine.nii.gz")
    np.testing.assert_array_equal(study.image, image)
    np.testing.assert_allclose(study.affine, affine, atol=1e-5)
    np.testing.assert_allclose(study.phase_times_ms, np.arange(6) * 35.0)
    assert study.meta.warnings == []
    # array[t, k, j, i] is voxel (i, j, k) of the file.
    assert study.image[2, 3, 4, 5] == np.asarray(raw.dataobj)[5, 4, 3, 2]


def test_3d_file_is_one_phase(tmp_path):
    vol = np.arange(4 * 18 * 16, dtype=np.int16).reshape(4, 18, 16)
    save_nifti(tmp_path / "vol.nii", vol.astype(np.float32), _oblique_affine())
    study = load_study(tmp_path / "vol.nii")
    assert study.image.shape == (1, 4, 18, 16)
    np.testing.assert_array_equal(study.image[0], vol)


def test_acdc_style_unit_sform_takes_pixdim(tmp_path):
    data = np.zeros((30, 24, 6), dtype=np.int16)
    data[10:20, 8:16, 2:4] = 100
    img = nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0]))
    img.header.set_zooms((1.5625, 1.5625, 10.0))
    img.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=2)
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "patient_frame01.nii.gz"))
    study = load_study(tmp_path / "patient_frame01.nii.gz")
    np.testing.assert_allclose(study.spacing, [1.5625, 1.5625, 10.0], atol=1e-6)
    np.testing.assert_allclose(study.affine[:3, :3], np.diag([-1.5625, -1.5625, 10.0]), atol=1e-6)
    assert any("pixdim" in w for w in study.meta.warnings)


def test_labels_paired_by_name(tmp_path):
    affine = _oblique_affine()
    image = np.ones((3, 4, 20, 20), dtype=np.float32)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[1, 1:3, 5:10, 5:10] = 3
    save_nifti(tmp_path / "subject.nii.gz", image, affine)
    save_nifti(tmp_path / "subject_gt.nii.gz", labels, affine)
    study = load_study(tmp_path / "subject.nii.gz")
    np.testing.assert_array_equal(study.labels, labels)
    assert study.labelled_phases == [1]
    assert study.summary()["label_values"] == [0, 3]
    # A folder with one image and its label file loads the same way.
    assert load_study(tmp_path).has_labels


def test_truncated_gzip_is_named(tmp_path):
    save_nifti(tmp_path / "cine.nii.gz", np.random.default_rng(1).random((3, 4, 32, 32)), _oblique_affine())
    data = (tmp_path / "cine.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(StudyError, match=r"cut\.nii\.gz: truncated or corrupt"):
        load_study(tmp_path / "cut.nii.gz")


def test_not_a_nifti(tmp_path):
    (tmp_path / "fake.nii.gz").write_bytes(gzip.compress(b"hello world" * 10))
    with pytest.raises(StudyError, match="fake.nii.gz"):
        load_study(tmp_path / "fake.nii.gz")


def test_absurd_header_size_is_rejected(tmp_path):
    save_nifti(tmp_path / "small.nii", np.zeros((2, 3, 4), dtype=np.float32), np.eye(4))
    raw = bytearray((tmp_path / "small.nii").read_bytes())
    dims = np.frombuffer(bytes(raw[40:56]), dtype="<i2").copy()
    dims[0], dims[1], dims[2], dims[3], dims[4] = 4, 30000, 30000, 3000, 30
    raw[40:56] = dims.astype("<i2").tobytes()
    (tmp_path / "huge.nii").write_bytes(bytes(raw))
    with pytest.raises(StudyError, match="huge.nii: implausible image size"):
        load_study(tmp_path / "huge.nii")


def test_2d_image_is_rejected(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((32, 32), dtype=np.float32), np.eye(4)), str(tmp_path / "plane.nii"))
    with pytest.raises(StudyError, match="plane.nii: expected a 3D or 4D"):
        load_study(tmp_path / "plane.nii")
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 1, 5), dtype=np.float32), np.eye(4)), str(tmp_path / "one.nii"))
    with pytest.raises(StudyError, match="one slice"):
        load_study(tmp_path / "one.nii")


def test_nan_voxels_are_rejected(tmp_path):
    image = np.zeros((2, 3, 20, 20), dtype=np.float32)
    image[1, 2, 3, 4] = np.nan
    save_nifti(tmp_path / "nan.nii.gz", image, np.eye(4))
    with pytest.raises(StudyError, match="nan.nii.gz: 1 NaN"):
        load_study(tmp_path / "nan.nii.gz")


def test_unknown_label_values_are_an_error(tmp_path):
    save_nifti(tmp_path / "x.nii.gz", np.ones((1, 3, 20, 20), dtype=np.float32), np.eye(4))
    labels = np.zeros((1, 3, 20, 20), dtype=np.uint8)
    labels[0, 1, 2, 2] = 7
    save_nifti(tmp_path / "x_gt.nii.gz", labels, np.eye(4))
    with pytest.raises(StudyError, match=r"x_gt.nii.gz: unexpected label values \[7\]"):
        load_study(tmp_path / "x.nii.gz")


def test_zipped_nifti_names_the_zip(tmp_path):
    import zipfile

    image = np.random.default_rng(2).random((2, 3, 20, 20)).astype(np.float32)
    save_nifti(tmp_path / "cine.nii.gz", image, _oblique_affine())
    with zipfile.ZipFile(tmp_path / "cine.zip", "w") as zf:
        zf.write(tmp_path / "cine.nii.gz", "cine.nii.gz")
    study = load_study(tmp_path / "cine.zip")
    np.testing.assert_allclose(study.image, image)
    assert study.meta.source_path == str(tmp_path / "cine.zip")


# --- writers: an SR-grid result overlays the LR input in world space ---------------------------------------
def _world_field(xyz: np.ndarray) -> np.ndarray:
    """A smooth, asymmetric function of world position: any axis flip or shift changes its values."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return (0.7 * x - 0.4 * y + 0.25 * z + 200.0).astype(np.float32)


def test_sr_grid_output_overlays_lr_input_in_world_space(tmp_path):
    lr_affine = _oblique_affine(spacing=(1.8, 1.8, 9.0))
    lr = Grid((6, 40, 44), lr_affine)
    lr_image = _world_field(lr.voxel_centres())
    save_nifti(tmp_path / "lr.nii.gz", lr_image, lr.affine)
    lr_study = load_study(tmp_path / "lr.nii.gz")

    sr = sr_grid(lr_study.grid)
    sr_image = resample(lr_study.image[0], lr_study.grid, sr, order=1)
    save_nifti(tmp_path / "sr.nii.gz", sr_image, sr.affine)
    sr_study = load_study(tmp_path / "sr.nii.gz")
    np.testing.assert_allclose(sr_study.affine, sr.affine, atol=1e-5)
    np.testing.assert_allclose(sr_study.spacing, [1.25, 1.25, 2.0], atol=1e-6)

    # Inside the LR hull (linear interpolation of a linear field is exact), every SR voxel carries the
    # value of the world point its written affine assigns to it.
    centres = sr_study.grid.voxel_centres()
    ijk = lr_study.grid.world_to_index(centres)
    inside = np.all((ijk >= 0) & (ijk <= np.array(lr.shape[::-1]) - 1), axis=-1)
    assert inside.sum() > 1000
    np.testing.assert_allclose(sr_study.image[0][inside], _world_field(centres)[inside], rtol=1e-5, atol=1e-2)

    # Labels: a ball drawn in world space lands at the same world centroid in both files.
    centre = lr.centre() + np.array([4.0, -3.0, 2.0])
    lr_labels = (np.linalg.norm(lr.voxel_centres() - centre, axis=-1) < 18).astype(np.uint8)
    save_nifti(tmp_path / "sr_labels.nii.gz", resample(lr_labels, lr, sr, order=0), sr.affine)
    back = nib.load(str(tmp_path / "sr_labels.nii.gz"))
    ijk = np.argwhere(np.asarray(back.dataobj) == 1)  # file order (i, j, k)
    world = ijk @ back.affine[:3, :3].T + back.affine[:3, 3]
    lr_world = lr.voxel_centres()[lr_labels == 1]
    assert np.linalg.norm(world.mean(0) - lr_world.mean(0)) < 1.5
    assert np.linalg.norm(world.mean(0) - centre) < 1.5


def test_save_nifti_writes_file_order(tmp_path):
    labels = np.zeros((2, 3, 4, 5), dtype=np.uint8)
    labels[1, 2, 3, 4] = 2
    save_nifti(tmp_path / "l.nii.gz", labels, np.eye(4))
    data = np.asarray(nib.load(str(tmp_path / "l.nii.gz")).dataobj)
    np.testing.assert_array_equal(data, to_file_order(labels))
    assert data[4, 3, 2, 1] == 2
