"""`gemini-cmr info`: JSON keys and values, readable text, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gemini_cmr.cli.main import main
from gemini_cmr.core.io.nifti import save_nifti
from tests.core.io import dicom_factory as fac

KEYS = {"shape", "spacing_mm", "slice_thickness_mm", "affine", "phases", "ed_phase", "es_phase", "has_labels",
        "label_values", "format", "warnings"}


def test_info_json_on_synthetic_dicom(tmp_path, capsys):
    spec = fac.CineSpec()
    fac.write(tmp_path, fac.make_cine(spec))
    assert main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert KEYS <= set(info)
    assert info["shape"] == [5, 4, 20, 24]
    np.testing.assert_allclose(info["spacing_mm"], [1.25, 1.5, 8.0], atol=1e-6)
    np.testing.assert_allclose(info["affine"], fac.expected_ras_affine(spec), atol=1e-5)
    assert info["slice_thickness_mm"] == 6.0 and info["phases"] == 5
    assert info["ed_phase"] is None and info["has_labels"] is False and info["format"] == "dicom"


def test_info_intensity_is_of_the_decoded_rescaled_pixels(tmp_path, capsys):
    spec = fac.CineSpec(n_slices=3, n_phases=2, slope=2.0, intercept=-5.0)
    datasets = fac.make_cine(spec)
    fac.write(tmp_path, datasets)
    stored = np.stack([ds.pixel_array for ds in datasets]).astype(np.float64)
    assert main(["info", str(tmp_path), "--json"]) == 0
    inten = json.loads(capsys.readouterr().out)["intensity"]
    assert inten["min"] == pytest.approx(stored.min() * 2 - 5)
    assert inten["max"] == pytest.approx(stored.max() * 2 - 5)
    assert inten["sum"] == pytest.approx(stored.sum() * 2 - 5 * stored.size)
    assert inten["mean"] == pytest.approx(inten["sum"] / stored.size)
    assert main(["info", str(tmp_path)]) == 0
    assert f"intensity:       {inten['min']:.6g} to {inten['max']:.6g}" in capsys.readouterr().out


def test_info_text(tmp_path, capsys):
    labels = np.zeros((3, 4, 20, 20), dtype=np.uint8)
    labels[0, 1, 5:8, 5:8] = 2
    save_nifti(tmp_path / "cine.nii.gz", np.ones((3, 4, 20, 20), np.float32), np.diag([1.5, 1.5, 8, 1]))
    save_nifti(tmp_path / "cine_gt.nii.gz", labels, np.diag([1.5, 1.5, 8, 1]))
    assert main(["info", str(tmp_path / "cine.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "3 phases x 4 slices x 20 rows x 20 columns" in out
    assert "1.5 x 1.5 mm in-plane, 8 mm between slice centres" in out
    assert "values [0, 2] on phases [0]" in out


def test_info_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "cut.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    out = subprocess.run([sys.executable, "-m", "gemini_cmr.cli.main", "info", str(tmp_path / "cut.nii.gz")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut.nii.gz" in lines[0] and "Traceback" not in out.stderr


@pytest.mark.data
def test_info_json_on_real_data(shared_data, capsys):
    assert main(["info", "--json", str(shared_data / "acdc" / "training" / "patient001")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [2, 10, 256, 216] and info["ed_phase"] == 0 and info["es_phase"] == 1
    assert info["label_values"] == [0, 1, 2, 3] and info["has_labels"] and info["format"] == "acdc"
    np.testing.assert_allclose(info["spacing_mm"], [1.5625, 1.5625, 10.0], atol=1e-5)

    assert main(["info", str(shared_data / "philips_partial")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "slice 4 of 4: 10 phases" in err
    assert main(["info", "--json", "--allow-incomplete", str(shared_data / "philips_partial")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [30, 3, 288, 288] and any("complete subset" in w for w in info["warnings"])
