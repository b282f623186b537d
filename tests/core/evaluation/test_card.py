"""core.evaluation.card and `gemini-cmr info --model`: a model's card (id, architecture, training, held-out
accuracy, licence) read from its files, as people see it in the CLI and the app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.evaluation.card import format_card, model_card
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.models.store import file_sha256, save_model
from gemini_cmr.core.resources import acdc_model_path

TINY = {"depth": 24, "widths": [4, 8, 8], "encoder": "acquired-2d", "input_to_heads": True}
CV = {
    "data": "toy cohort, 2-fold cross-validation; folds measured: 0, 1 (4 held-out patients), ED and ES",
    "held_out": "each patient scored by the model of the fold that left it out",
    "dice_ed_lv_cavity": {"mean": 0.951, "sd": 0.012}, "dice_es_lv_cavity": {"mean": 0.912, "sd": 0.034},
    "dice_ed_lv_myocardium": {"mean": 0.876, "sd": 0.02}, "dice_es_lv_myocardium": {"mean": 0.89, "sd": 0.03},
    "dice_ed_rv_cavity": {"mean": 0.93, "sd": 0.02}, "dice_es_rv_cavity": {"mean": 0.861, "sd": 0.07},
    "err_lv_ef_pct": {"n": 4, "bias": -0.4, "sd": 3.0, "loa_low": -6.3, "loa_high": 5.5, "median_abs": 2.1},
    "dropped_slices": {"n": 10, "summary": {"on": {"sr": {"mean": 0.846}, "shape_interpolation": {"mean": 0.822},
                                                   "nearest": {"mean": 0.771}}}},
}


def _model(folder: Path, evaluation: dict | None, licence: str = "toy terms") -> Path:
    torch.manual_seed(0)
    cfg = {"training": {"data": "acdc:TOY", "step": 40, "seed": 3, "command": "gemini-cmr train cv ...",
                        "config": {"init": "runs/stage1/{fold}/model"}},
           "licence": licence, "inference": {"roi_mm": 176, "roi_margin_mm": 16}}
    if evaluation is not None:
        cfg["evaluation"] = evaluation
    save_model(folder, GeminiGenerator(GeminiConfig.from_dict(TINY)), cfg, half=True)
    return folder


def test_card_of_a_cross_validated_model(tmp_path):
    m = _model(tmp_path / "m", CV)
    card = model_card(m)
    sha = file_sha256(m / "model.safetensors")
    assert card["model_id"] == sha[:12] and card["sha256"] == sha
    assert card["architecture"]["widths"] == [4, 8, 8] and card["weights_dtype"] == "float16"
    assert card["training"]["seed"] == 3 and card["training"]["step"] == 40
    ev = card["evaluation"]
    assert ev["dice"]["rv_cavity"]["es"] == {"mean": 0.861, "sd": 0.07}
    assert ev["errors"]["acquired"]["lv_ef_pct"]["loa_low"] == -6.3 and ev["dropped_slices"]["sr"] == 0.846
    text = format_card(card)
    assert f"Model {sha[:12]}" in text and "widths 4-8-8" in text and "176 mm box" in text
    assert "RV cavity          0.930 (0.020)   0.861 (0.070)" in text
    assert "LVEF (%)         -0.4 [-6.3, +5.5], 2.1  (n 4)" in text
    assert "SR 0.846, shape-based interpolation 0.822" in text and "toy terms" in text
    assert "folds measured: 0, 1" in text and "Further records" not in text
    assert "40 (continuing the model runs/stage1/{fold}/model)" in text


def test_card_without_figures_or_with_a_chain_of_changes(tmp_path):
    text = format_card(model_card(_model(tmp_path / "none", None, licence="")))
    assert "not recorded in this model's files" in text and "not stated in the model files" in text
    chained = {"data": "one change from a recipe measured on two folds", "recipe_change": {"change": "x"},
               "recipe_before_change": {"model_id": "abc", "recipe_change": {"change": "y"},
                                        "recipe_before_change": CV}}
    card = model_card(_model(tmp_path / "chain", chained))
    assert not card["evaluation"]["dice"] and card["evaluation"]["before_change"]["dice"]["lv_cavity"]["ed"]["mean"] == 0.951
    text = format_card(card)
    assert "before the measured changes" in text and "0.951 (0.012)" in text
    assert "recipe_before_change, recipe_change" in text


def test_card_of_the_bundled_research_model_names_its_licence():
    card = model_card(acdc_model_path())
    assert card["model_id"] == file_sha256(acdc_model_path() / "model.safetensors")[:12]
    assert "ACDC" in card["licence"] and "non-commercial" in card["licence"]
    assert card["evaluation"]["dice"] or card["evaluation"].get("before_change")  # held-out figures, one way or the other


def test_a_missing_or_broken_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not a model"):
        model_card(tmp_path / "nothing")
    m = _model(tmp_path / "m", CV)
    (m / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="config"):
        model_card(m)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gemini_cmr.cli.main", "info", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_info_model(tmp_path):
    m = _model(tmp_path / "m", CV)
    out = _cli("--model", str(m))
    assert out.returncode == 0 and "0.861 (0.070)" in out.stdout
    js = _cli("--model", str(m), "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["evaluation_record"]["dice_es_rv_cavity"]["mean"] == 0.861
    assert _cli("--model", "acdc").stdout.startswith("Model ")
    bad = _cli("--model", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "not a model" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    both = _cli(str(m), "--model", str(m))
    assert both.returncode == 2 and "not both" in both.stderr
    assert _cli().returncode == 2
