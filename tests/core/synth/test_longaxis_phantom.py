"""Phantom long-axis acquisitions: planes through the LV long axis, their own breath-hold offsets, labels that
match the HR truth once the offset is undone, the short-axis data unchanged, and the dataset files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemini_cmr.core.evaluation.metrics import dice_per_structure
from gemini_cmr.core.longaxis import check_long_axis, cut_volume, load_long_axis
from gemini_cmr.core.synth import make_subject, write_dataset


@pytest.fixture(scope="module")
def pair_la():
    return make_subject(21, "ukdhp-like", 3, long_axis=("4ch", "2ch"))


def test_short_axis_and_hr_data_do_not_change(pair_la):
    plain = make_subject(21, "ukdhp-like", 3)
    assert np.array_equal(plain.lr.image, pair_la.lr.image) and np.array_equal(plain.hr.labels, pair_la.hr.labels)
    assert np.array_equal(plain.shifts.inplane_mm, pair_la.shifts.inplane_mm)
    assert not plain.long_axis and "long_axis" not in plain.info


def test_planes_contain_the_lv_long_axis_and_pass_the_checks(pair_la):
    w = pair_la.phantom.params.rotation[:, 2]
    for view, cine in pair_la.long_axis.items():
        assert cine.view == view and cine.grid.shape[0] == 1 and 1.5 <= cine.grid.spacing[0] <= 1.8
        assert abs(float(cine.normal @ w)) < np.sin(np.radians(5.5))  # tilted by at most 5 degrees
        assert check_long_axis(cine, pair_la.lr) == []
        assert cine.n_phases == 3 and cine.labelled_phases == [0, 1, 2]
    lab4 = pair_la.long_axis["4ch"].labels[0]
    assert (lab4 == 3).sum() > 300 and (lab4 == 1).sum() > 500  # the 4-chamber view shows RV and LV


def test_labels_match_the_truth_once_the_offset_is_undone(pair_la):
    for view, cine in pair_la.long_axis.items():
        off = pair_la.long_axis_offsets[view]
        assert 0.3 < np.hypot(*off) <= 4.0 + 1e-9  # seed 21: both views displaced, within the clip radius
        at, inside = cut_volume(pair_la.hr.labels[0], pair_la.hr.grid, cine.grid, 0, shift_mm=off)
        d_true = dice_per_structure(at * inside, cine.labels[0] * inside)
        assert d_true["lv_cavity"] > 0.96 and d_true["lv_myocardium"] > 0.9
        wrong, _ = cut_volume(pair_la.hr.labels[0], pair_la.hr.grid, cine.grid, 0, shift_mm=-off)
        d_wrong = dice_per_structure(wrong * inside, cine.labels[0] * inside)
        assert d_wrong["lv_myocardium"] < d_true["lv_myocardium"] - 0.03


def test_dataset_writes_long_axis_files_in_the_ukbb_naming(tmp_path):
    manifest = write_dataset(tmp_path / "d", 1, seed=3, n_phases=2, long_axis=("4ch",))
    m = json.loads(manifest.read_text())
    entry = m["subjects"][0]
    assert m["generator"]["long_axis"] == ["4ch"]
    la = entry["long_axis"]["4ch"]
    assert la["image"] == "sub-000/la_4ch.nii.gz" and la["labels"] == "sub-000/label_la_4ch.nii.gz"
    info = json.loads((tmp_path / "d" / "sub-000" / "phantom.json").read_text())
    assert info["long_axis"]["4ch"]["offset_mm"] == la["offset_mm"]
    (cine,) = load_long_axis(tmp_path / "d" / la["image"])
    assert cine.view == "4ch" and cine.patient_id == "sub-000" and cine.n_phases == 2
    again = make_subject(int(info["seed"]), "ukdhp-like", 2, long_axis=("4ch",))
    assert np.array_equal(cine.labels, again.long_axis["4ch"].labels)
    assert np.allclose(cine.affine, again.long_axis["4ch"].affine, atol=1e-5)
    assert np.allclose(la["offset_mm"], again.long_axis_offsets["4ch"], atol=1e-4)
    plain = write_dataset(tmp_path / "p", 1, seed=3, n_phases=2)
    pm = json.loads(plain.read_text())
    assert "long_axis" not in pm["subjects"][0] and "long_axis" not in pm["generator"]
    assert not list((tmp_path / "p" / "sub-000").glob("la_*"))


def test_aligned_twin_dataset_differs_only_by_the_shifts(tmp_path):
    """`synth --no-misalign`: the same subject without breath-hold shifts (the HR truth identical)."""
    import nibabel as nib

    from gemini_cmr.cli.main import main

    assert main(["synth", str(tmp_path / "s"), "--subjects", "1", "--seed", "3", "--phases", "2", "--quiet"]) == 0
    assert main(["synth", str(tmp_path / "a"), "--subjects", "1", "--seed", "3", "--phases", "2", "--quiet",
                 "--no-misalign"]) == 0
    gen = json.loads((tmp_path / "a" / "manifest.json").read_text())["generator"]
    assert gen["misalign"] is False and gen["command"].endswith("--no-misalign")
    assert "misalign" not in json.loads((tmp_path / "s" / "manifest.json").read_text())["generator"]

    def arr(ds, name):
        return np.asarray(nib.load(tmp_path / ds / "sub-000" / name).dataobj)

    assert np.array_equal(arr("s", "hr_labels.nii.gz"), arr("a", "hr_labels.nii.gz"))
    assert np.array_equal(arr("s", "hr_image.nii.gz"), arr("a", "hr_image.nii.gz"))
    assert not np.array_equal(arr("s", "lr_labels.nii.gz"), arr("a", "lr_labels.nii.gz"))
    shifts = json.loads((tmp_path / "a" / "sub-000" / "phantom.json").read_text())["shifts"]
    assert not np.any(shifts["inplane_mm"]) and not np.any(shifts["through_plane_mm"])
