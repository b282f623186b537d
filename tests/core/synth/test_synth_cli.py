"""`gemini-cmr synth`: the paired dataset layout (docs/DEVELOPING.md) and the demo study."""

from __future__ import annotations

import json

import numpy as np

from gemini_cmr.cli.main import main
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.study import Grid
from gemini_cmr.core.synth.dataset import split_names


def test_synth_writes_the_paired_layout(tmp_path, capsys):
    out = tmp_path / "data"
    rc = main(["synth", str(out), "--subjects", "3", "--seed", "4", "--phases", "3"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "100.0%" in err and "sub-002" in err  # progress on stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "gemini-cmr-paired" and manifest["version"] == 1
    assert manifest["generator"]["seed"] == 4 and manifest["generator"]["domain"] == "ukdhp-like"
    assert "synth" in manifest["generator"]["command"]
    subs = manifest["subjects"]
    assert [s["id"] for s in subs] == ["sub-000", "sub-001", "sub-002"]
    assert [s["split"] for s in subs] == ["train", "val", "test"]
    for s in subs:
        assert s["ed_phase"] == 0 and 0 < s["es_phase"] < 3
        arrays = {}
        for key in ("lr_image", "lr_labels", "hr_image", "hr_labels"):
            path = out / s[key]
            assert path.is_file(), path
            arrays[key] = read_nifti_array(path)
        (lri, lra, _), (lrl, lla, _), (hri, hra, hdr), (hrl, hla, _) = (
            arrays[k] for k in ("lr_image", "lr_labels", "hr_image", "hr_labels"))
        assert lri.dtype == np.float32 and hri.dtype == np.float32
        assert lrl.dtype == np.uint8 and hrl.dtype == np.uint8
        assert lri.shape == lrl.shape and hri.shape == hrl.shape and lri.shape[0] == hri.shape[0] == 3
        np.testing.assert_array_equal(lra, lla)
        np.testing.assert_array_equal(hra, hla)
        assert Grid(hri.shape[1:], hra) == sr_grid(Grid(lri.shape[1:], lra))
        assert set(np.unique(hrl)) == {0, 1, 2, 3} and set(np.unique(lrl)) == {0, 1, 2, 3}
        assert float(hdr.get_zooms()[3]) > 0  # phase interval stored
        info = json.loads((out / s["phantom"]).read_text())
        assert info["es_phase"] == s["es_phase"]


def test_synth_is_deterministic_and_refuses_to_overwrite(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["synth", str(a), "--subjects", "1", "--seed", "9", "--phases", "2", "--quiet"]) == 0
    assert main(["synth", str(b), "--subjects", "1", "--seed", "9", "--phases", "2", "--quiet"]) == 0
    for name in ("lr_image", "hr_labels"):
        x = read_nifti_array(a / "sub-000" / f"{name}.nii.gz")[0]
        y = read_nifti_array(b / "sub-000" / f"{name}.nii.gz")[0]
        np.testing.assert_array_equal(x, y)
    capsys.readouterr()
    assert main(["synth", str(a), "--subjects", "1", "--seed", "9", "--phases", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["synth", str(a), "--subjects", "1", "--seed", "9", "--phases", "2", "--force", "--quiet"]) == 0


def test_synth_domain_and_demo(tmp_path):
    out = tmp_path / "sg"
    assert main(["synth", str(out), "--subjects", "1", "--domain", "sg-like", "--phases", "2", "--quiet"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["subjects"][0]["domain"] == "sg-like"
    img, aff, _ = read_nifti_array(out / m["subjects"][0]["lr_image"])
    np.testing.assert_allclose(Grid(img.shape[1:], aff).spacing[:2], [1.4, 1.4], rtol=1e-5)
    demo = tmp_path / "demo"
    assert main(["synth", str(demo), "--demo", "--phases", "4", "--quiet"]) == 0
    img, aff, hdr = read_nifti_array(demo / "demo_study.nii.gz")
    assert img.ndim == 4 and img.shape[0] == 4 and img.max() > 100
    assert hdr.get_sform(coded=True)[1] == 1 and np.allclose(hdr.get_sform(), aff)


def test_bad_arguments_are_user_errors(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--subjects", "0"]) == 2
    assert "subjects" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "y"), "--demo", "--phases", "1"]) == 2
    assert "phases" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_split_names():
    assert split_names(1) == ["train"]
    assert split_names(2) == ["train", "test"]
    s = split_names(20)
    assert s.count("train") == 14 and s.count("val") == 3 and s.count("test") == 3


def test_synth_workers_write_the_same_dataset(tmp_path):
    """--workers N: subjects generated in N processes, the same files and manifest entries as one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["synth", str(one), "--subjects", "3", "--seed", "5", "--phases", "2", "--quiet"]) == 0
    assert main(["synth", str(two), "--subjects", "3", "--seed", "5", "--phases", "2", "--quiet",
                 "--workers", "2"]) == 0
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert m1["subjects"] == m2["subjects"] and [s["id"] for s in m2["subjects"]] == ["sub-000", "sub-001", "sub-002"]
    for s in m1["subjects"]:
        for key in ("lr_image", "lr_labels", "hr_image", "hr_labels"):
            a, b = read_nifti_array(one / s[key])[0], read_nifti_array(two / s[key])[0]
            assert np.array_equal(a, b), (s["id"], key)
    assert main(["synth", str(tmp_path / "bad"), "--subjects", "2", "--workers", "0", "--quiet"]) == 2
