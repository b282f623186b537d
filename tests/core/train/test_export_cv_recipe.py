"""recipes/gemini-acdc/export_cv.py: the shipped model's evaluation when the recipe changed since its
cross-validation (the figures of each recipe kept apart)."""

from __future__ import annotations

from pathlib import Path

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]


def test_evaluation_with_change_keeps_the_measured_recipe_apart():
    ex = load_script(ROOT / "recipes" / "gemini-acdc" / "export_cv.py")
    before = {"evaluation": {"data": "5 folds", "dice_es_lv_cavity": {"mean": 0.921, "sd": 0.07}}}
    paired = {"n": 40, "folds": [0, 1],
              "dice": {"es_lv_cavity": {"n": 40, "a": 0.925, "b": 0.935, "diff": 0.0109, "se": 0.0042}},
              "clinical": {"lv_ef_pct": {"n": 40, "abs_diff": -0.6, "se": 0.36, "median_abs_a": 1.76,
                                         "median_abs_b": 1.54, "mean_abs_a": 2.9}}}
    ev = ex.evaluation_with_change(before, "deep_supervision: 2", paired, "paired.json", "abcdef123456")
    # the cross-validated figures stay with the recipe they belong to, never at the top level
    assert ev["recipe_before_change"]["dice_es_lv_cavity"]["mean"] == 0.921
    assert ev["recipe_before_change"]["model_id"] == "abcdef123456"
    assert not any(k.startswith(("dice_", "err_")) for k in ev)
    ch = ev["recipe_change"]
    assert ch["change"] == "deep_supervision: 2" and ch["n"] == 40 and ch["folds"] == [0, 1]
    assert ch["dice_b_minus_a"]["es_lv_cavity"]["diff"] == 0.0109
    assert ch["abs_error_b_minus_a"]["lv_ef_pct"]["median_abs_b"] == 1.54
    assert "folds 0, 1" in ev["data"] and "not yet cross-validated" in ev["data"]


def test_evaluation_with_change_keeps_further_comparisons_apart():
    ex = load_script(ROOT / "recipes" / "gemini-acdc" / "export_cv.py")
    stage1 = {"a": "control.json", "b": "new.json", "n": 40, "folds": [0, 2],
              "dice": {"ed_lv_myocardium": {"n": 40, "a": 0.880, "b": 0.889, "diff": 0.0093, "se": 0.0016}}}
    stage2 = {"a": "stage1.json", "b": "stage2.json", "n": 20, "folds": [2],
              "dice": {"ed_lv_myocardium": {"n": 20, "a": 0.896, "b": 0.891, "diff": -0.0049, "se": 0.0013}}}
    ev = ex.evaluation_with_change({"evaluation": {}}, "steps 2400, then stage 2", stage1, "s1.json",
                                   further=[(stage2, "s2.json")])
    ch = ev["recipe_change"]
    # the main comparison names its folds and arms; the part measured on other folds stays its own entry
    assert ch["folds"] == [0, 2] and ch["a"] == "control.json" and ch["source"] == "s1.json"
    assert ch["dice_b_minus_a"]["ed_lv_myocardium"]["diff"] == 0.0093
    (f,) = ch["further"]
    assert f["folds"] == [2] and f["n"] == 20 and f["source"] == "s2.json"
    assert f["dice_b_minus_a"]["ed_lv_myocardium"]["diff"] == -0.0049
    assert "further" not in ex.evaluation_with_change({}, "x", stage1, "s1.json")["recipe_change"]


def test_a_change_on_top_of_a_changed_recipe_keeps_the_chain():
    ex = load_script(ROOT / "recipes" / "gemini-acdc" / "export_cv.py")
    paired = {"n": 20, "folds": [2], "dice": {"es_lv_cavity": {"n": 20, "a": 0.915, "b": 0.932, "diff": 0.016,
                                                               "se": 0.0095}}}
    first = ex.evaluation_with_change({"evaluation": {"dice_es_lv_cavity": {"mean": 0.921}}}, "steps 2400",
                                      paired, "a.json", "111111111111")
    ev = ex.evaluation_with_change({"evaluation": first}, "robustness augmentation", paired, "b.json", "222222222222")
    before = ev["recipe_before_change"]
    assert before["model_id"] == "222222222222" and before["recipe_change"]["change"] == "steps 2400"
    assert before["recipe_before_change"]["dice_es_lv_cavity"]["mean"] == 0.921
    assert "itself one measured change" in ev["data"] and "itself one measured change" not in first["data"]
    for e in (first, ev):  # the pointer to the recipe before is said once
        assert e["data"].count("recipe_before_change") == 1
