"""recipes/gemini-acdc/pool_folds.py and export_cv.py: folds saved from separate runs pooled into the
cross-validation summary, and that summary put on an existing model's card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gemini_cmr.core.evaluation.real import summarise
from tests.core.train.conftest import load_script
from tests.core.train.lr_toy import TINY_MODEL

ROOT = Path(__file__).resolve().parents[3]
DICE = [f"{ph}_{s}" for ph in ("ed", "es") for s in ("lv_cavity", "lv_myocardium", "rv_cavity")]
RECIPE = {"data": "acdc:DATA", "folds": 5, "config": {"seed": 0, "max_steps": 10}, "inference": {"roi_mm": 176}}


def _script(name: str):
    return load_script(ROOT / "recipes" / "gemini-acdc" / name)


def _row(subject: str, fold: int, dice: float, ef: float) -> dict:
    volumes = {"lv_edv_ml": 150.0, "lv_esv_ml": 70.0, "lv_mass_g": 110.0, "rv_edv_ml": 160.0}
    return {"subject": subject, "group": "NOR", "fold": fold, **{k: dice for k in DICE},
            "pred_lv_ef_pct": ef, "manual_lv_ef_pct": 50.0, **{f"pred_{k}": v + 2 for k, v in volumes.items()},
            **{f"manual_{k}": v for k, v in volumes.items()}}


def _fold_file(tmp_path: Path, k: int, rows: list[dict], recipe: dict = RECIPE) -> Path:
    f = tmp_path / f"fold{k}.json"
    f.write_text(json.dumps({"command": f"train cv --only {k}", "what": f"fold {k}", "model_id": f"id{k}",
                             "cv_recipe": recipe, "summary": {}, "rows": rows}))
    return f


def test_pooled_folds_are_the_summary_of_all_their_rows(tmp_path, capsys):
    p = _script("pool_folds.py")
    rows3 = [_row("patient003", 3, 0.9, 52.0), _row("patient008", 3, 0.8, 47.0)]
    rows4 = [_row("patient004", 4, 0.7, 60.0)]
    out = tmp_path / "pooled"
    assert p.main([str(_fold_file(tmp_path, 4, rows4)), str(_fold_file(tmp_path, 3, rows3)), "--out", str(out)]) == 0
    doc = json.loads((out / "cv.json").read_text())
    s = doc["summary"]
    assert s["evaluated_folds"] == [3, 4] and s["n"] == 3 and s["folds"] == 5 and s["data"] == "acdc:DATA"
    assert [r["subject"] for r in doc["rows"]] == ["patient003", "patient008", "patient004"]
    expected = summarise(rows3 + rows4)
    assert s["dice_ed_lv_cavity"]["mean"] == pytest.approx(0.8) == pytest.approx(expected["dice_ed_lv_cavity"]["mean"])
    assert s["err_lv_ef_pct"]["bias"] == pytest.approx(expected["err_lv_ef_pct"]["bias"])
    assert s["per_fold"]["4"]["dice_es_rv_cavity"]["mean"] == pytest.approx(0.7)
    assert json.loads((out / "cv_recipe.json").read_text()) == RECIPE
    assert json.loads((out / "folds.json").read_text())["3"]["model_id"] == "id3"
    assert "2 of 5 folds, 3 held-out patients" in (out / "cv.md").read_text()
    assert "0.800" in capsys.readouterr().out


def test_a_fold_twice_or_another_recipe_is_exit_status_2(tmp_path, capsys):
    p = _script("pool_folds.py")
    a = _fold_file(tmp_path, 3, [_row("patient003", 3, 0.9, 52.0)])
    twice = tmp_path / "again.json"
    twice.write_text(a.read_text())
    assert p.main([str(a), str(twice), "--out", str(tmp_path / "o1")]) == 2
    assert "fold 3 is already in" in capsys.readouterr().err
    other = _fold_file(tmp_path, 4, [_row("patient004", 4, 0.9, 52.0)], {**RECIPE, "config": {"seed": 1}})
    assert p.main([str(a), str(other), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "differs" in err and "config" in err and "fold4.json" in err
    assert not (tmp_path / "o2" / "cv.json").exists()


def test_reported_phenotypes_are_filled_only_from_the_same_predictions(tmp_path, capsys):
    p = _script("pool_folds.py")
    rows = [_row("patient003", 3, 0.9, 52.0)]
    other = tmp_path / "eval.json"
    same = {**rows[0], "reported_lv_ef_pct": 51.0, "reported_lv_edv_ml": 149.0}
    other.write_text(json.dumps({"rows": [same]}))
    out = tmp_path / "o"
    assert p.main([str(_fold_file(tmp_path, 3, rows)), "--reported", str(other), "--out", str(out)]) == 0
    doc = json.loads((out / "cv.json").read_text())
    assert doc["rows"][0]["reported_lv_ef_pct"] == 51.0 and doc["summary"]["err_reported_lv_ef_pct"]["bias"] == 1.0
    assert json.loads((out / "folds.json").read_text())["3"]["reported_from"] == str(other)
    other.write_text(json.dumps({"rows": [{**same, "es_rv_cavity": 0.5}]}))  # another model's predictions
    assert p.main([str(_fold_file(tmp_path, 3, rows)), "--reported", str(other), "--out", str(tmp_path / "o2")]) == 2
    assert "patient003 was scored from other predictions" in capsys.readouterr().err


def _dropped(fold: str, sr: float) -> dict:
    summary = {"on": {"sr": {"lv_cavity": sr, "mean": sr}, "shape_interpolation": {"lv_cavity": 0.8, "mean": 0.8}}}
    return {"n": 10, "model_id": f"{fold}" * 12, "summary": summary, "rows": [],
            "folds": {fold: {"model_id": f"{fold}" * 12, "n": 10, "summary": summary}}}


def test_dropped_slices_from_separate_runs_are_kept_per_fold_with_their_mean():
    ex = _script("export_cv.py")
    one = ex.dropped_section([_dropped("2", 0.85)])
    assert one["summary"]["on"]["sr"]["mean"] == 0.85 and one["n"] == 10 and "--fold 2 " in one["command"]
    older = _dropped("4", 0.81)
    older["folds"]["4"]["summary"] = {"on": {"sr": {"lv_cavity": 0.81, "mean": 0.81},
                                             "shape_interpolation": {"lv_cavity": 0.8, "mean": 0.8}}}
    newer = _dropped("0", 0.85)
    newer["folds"]["0"]["summary"]["on"]["manual_nearest"] = {"lv_cavity": 0.7, "mean": 0.7}
    both = ex.dropped_section([older, newer])
    assert "manual_nearest" not in both["summary"]["on"]  # only what every fold measured
    assert both["n"] == 20 and set(both["per_fold"]) == {"0", "4"} and "--fold 0 4 " in both["command"]
    assert both["summary"]["on"]["sr"]["mean"] == pytest.approx(0.83)
    assert both["summary"]["on"]["shape_interpolation"]["lv_cavity"] == pytest.approx(0.8)
    assert "mean over the folds" in both["protocol"] and both["fold_model_ids"]["4"] == "444444444444"
    with pytest.raises(ValueError, match="fold 2"):
        ex.dropped_section([_dropped("2", 0.85), _dropped("2", 0.8)])


def test_dropped_slices_folds_with_voxel_counts_pool_exactly():
    ex = _script("export_cv.py")

    def doc(fold: str, inter: int, total: int) -> dict:
        counts = {"intersection": {"lv_cavity": inter, "lv_myocardium": inter, "rv_cavity": inter},
                  "total": {"lv_cavity": total, "lv_myocardium": total, "rv_cavity": total}}
        d = _dropped(fold, 2 * inter / total)
        d["folds"][fold]["counts"] = {"on": {"sr": counts, "shape_interpolation": counts}}
        return d

    both = ex.dropped_section([doc("0", 90, 200), doc("4", 10, 100)])  # fold Dice 0.9 and 0.2
    assert both["summary"]["on"]["sr"]["lv_cavity"] == pytest.approx(200 / 300)  # not (0.9 + 0.2) / 2
    assert "mean over the folds" not in both["protocol"] and "pooled over the removed slices" in both["protocol"]


def test_export_puts_the_pooled_folds_on_an_existing_model_and_keeps_its_weights(tmp_path):
    import torch

    from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
    from gemini_cmr.core.models.store import save_model

    torch.manual_seed(0)
    model = tmp_path / "shipped"
    weights = save_model(model, GeminiGenerator(GeminiConfig.from_dict(TINY_MODEL)),
                         {"training": {"train_seconds": 1412.1, "seed": 0}, "evaluation": {"data": "fold 2 only"}},
                         half=True)
    before = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    pooled = tmp_path / "pooled"
    assert _script("pool_folds.py").main([str(_fold_file(tmp_path, 3, [_row("patient003", 3, 0.9, 52.0)])),
                                          str(_fold_file(tmp_path, 4, [_row("patient004", 4, 0.7, 60.0)])),
                                          "--out", str(pooled)]) == 0
    dest = tmp_path / "dest"
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"max_steps": 10}))
    _script("export_cv.py").main([str(pooled), "--model", str(model), "--dest", str(dest), "--recipe", str(recipe)])
    assert hashlib.sha256((dest / "model.safetensors").read_bytes()).hexdigest() == before
    cfg = json.loads((dest / "config.json").read_text())
    ev = cfg["evaluation"]
    assert "folds measured: 3, 4 (2 held-out patients)" in ev["data"]
    assert ev["dice_ed_lv_cavity"]["mean"] == pytest.approx(0.8)
    assert cfg["training"]["train_seconds"] == 1412.1 and str(recipe) in cfg["training"]["command"]
    assert "pool_folds.py" in ev["command"] and ev["fold_runs"]["4"]["model_id"] == "id4"
    assert "the network on the heart" not in ev["protocol"]  # no roi_margin_mm in this recipe's inference
