"""Real scanner DICOM from ../shared/data: Sunnybrook (GE, complete) and the Philips partial series."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import load_study

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def sunnybrook(shared_data):
    return shared_data / "sunnybrook" / "SCD0000101"


def _header(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True)


def test_sunnybrook_geometry_by_hand(sunnybrook):
    study = load_study(sunnybrook)
    assert study.image.shape == (20, 12, 256, 256)
    np.testing.assert_allclose(study.spacing, [1.367188, 1.367188, 10.0], atol=1e-3)
    assert study.meta.slice_thickness_mm == 10.0
    assert study.meta.vendor.startswith("GE")
    table = np.array(study.meta.extra["instance_numbers"])  # [phase][slice]
    # Files are named by InstanceNumber; phase = (n - 1) % 20, one slice per block of 20.
    assert sorted(table.ravel().tolist()) == list(range(1, 241))
    np.testing.assert_array_equal((table - 1) % 20, np.arange(20)[:, None].repeat(12, axis=1))
    # Each loaded voxel sits at the world point its DICOM file says (LPS -> RAS).
    for t, k, row, col in [(0, 0, 0, 0), (7, 5, 100, 30), (19, 11, 255, 255)]:
        ds = _header(sunnybrook / f"{table[t, k]}.dcm")
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        lps = np.array(ds.ImagePositionPatient, dtype=float) + col * dx * iop[:3] + row * dy * iop[3:]
        ras = study.grid.index_to_world(np.array([col, row, k]))
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-2)
    # Phase order is by TriggerTime within every slice.
    assert np.all(np.diff(study.phase_times_ms) > 0)


def test_sunnybrook_pixels_match_pydicom(sunnybrook):
    study = load_study(sunnybrook)
    table = np.array(study.meta.extra["instance_numbers"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(sunnybrook / f"{table[13, 4]}.dcm")
    np.testing.assert_array_equal(study.image[13, 4], ds.pixel_array.astype(np.float32))


def test_philips_partial_error_and_subset(shared_data):
    folder = shared_data / "philips_partial"
    with pytest.raises(StudyError) as err:
        load_study(folder)
    msg = str(err.value)
    assert "incomplete" in msg and "slices 1-3 of 4: 30 phases" in msg and "slice 4 of 4: 10 phases" in msg
    study = load_study(folder, allow_incomplete=True)
    assert study.image.shape == (30, 3, 288, 288)
    np.testing.assert_allclose(study.spacing, [1.2308, 1.2308, 10.0], atol=1e-3)
    assert study.meta.slice_thickness_mm == 8.0
    assert study.meta.weight_kg == 77.0
    # RescaleSlope (about 4.65) is applied: compare one image with pydicom's raw pixels.
    table = np.array(study.meta.extra["instance_numbers"])
    name = next((folder / "LVSA1").glob(f"*_{table[5, 1]:03d}.dcm"))
    ds = pydicom.dcmread(name)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(study.image[5, 1], expected, rtol=1e-5)
    assert float(ds.RescaleSlope) != 1.0


def test_zipped_sunnybrook_matches_folder(sunnybrook, tmp_path):
    import zipfile

    archive = tmp_path / "sunnybrook.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(sunnybrook.iterdir()):
            zf.write(p, f"SCD0000101/{p.name}")
    a, b = load_study(sunnybrook), load_study(archive)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_allclose(a.affine, b.affine)
