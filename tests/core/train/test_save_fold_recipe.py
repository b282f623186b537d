"""recipes/gemini-acdc/save_fold.py: one fold of a `train cv` run as a committed result file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]
DICE = [f"{ph}_{s}" for ph in ("ed", "es") for s in ("lv_cavity", "lv_myocardium", "rv_cavity")]


def _script(name: str):
    return load_script(ROOT / "recipes" / "gemini-acdc" / name)


def _row(subject: str, fold: int, dice: float, ef: float | None) -> dict:
    return {"subject": subject, "group": "NOR", "fold": fold, **{k: dice for k in DICE},
            "pred_lv_ef_pct": ef, "manual_lv_ef_pct": 50.0}


def _run(tmp_path: Path, k: int, rows: list[dict], weights: bytes = b"weights") -> Path:
    run = tmp_path / "run"
    (run / f"fold{k}" / "model").mkdir(parents=True)
    (run / f"fold{k}" / "model" / "model.safetensors").write_bytes(weights)
    (run / f"fold{k}" / "eval.json").write_text(json.dumps({"fold": k, "folds": 5, "model_id": "x", "tta": False,
                                                            "rows": rows}))
    (run / "cv_recipe.json").write_text(json.dumps({"data": "acdc:DATA", "folds": 5, "config": {"seed": 0},
                                                    "inference": {}}))
    return run


def test_fold_rows_summary_and_model_id_and_compare_cv_reads_it(tmp_path, capsys):
    s = _script("save_fold.py")
    run = _run(tmp_path, 3, [_row("patient003", 3, 0.9, 52.0), _row("patient008", 3, 0.8, None)])
    out = tmp_path / "fold3.json"
    assert s.main([str(run), "3", str(out), "--command", "train cv ... --only 3", "--what", "stage 1, fold 3"]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == "train cv ... --only 3" and doc["what"] == "stage 1, fold 3"
    assert doc["model_id"] == hashlib.sha256(b"weights").hexdigest()[:12]
    assert doc["cv_recipe"]["config"] == {"seed": 0} and doc["summary"]["data"] == "acdc:DATA"
    assert [r["subject"] for r in doc["rows"]] == ["patient003", "patient008"]
    assert doc["rows"][1]["pred_lv_ef_pct"] is None  # NaN stays strict JSON
    summary = doc["summary"]
    assert summary["evaluated_folds"] == [3] and set(summary["per_fold"]) == {"3"}
    assert summary["dice_ed_lv_cavity"]["mean"] == pytest.approx(0.85)
    assert "0.85" in capsys.readouterr().out
    # the file is a rows file compare_cv.py takes (here against itself: every difference 0)
    c = _script("compare_cv.py")
    res = c.compare(c._rows(str(out)), c._rows(str(out)))
    assert res["n"] == 2 and res["dice"]["es_rv_cavity"]["diff"] == pytest.approx(0.0)


def test_missing_or_mismatched_fold_is_exit_status_2(tmp_path, capsys):
    s = _script("save_fold.py")
    run = _run(tmp_path, 2, [_row("patient002", 2, 0.9, 50.0)])
    out = tmp_path / "x.json"
    assert s.main([str(run), "4", str(out), "--command", "c", "--what", "w"]) == 2
    (run / "fold2" / "eval.json").write_text(json.dumps({"fold": 1, "folds": 5, "rows": []}))
    assert s.main([str(run), "2", str(out), "--command", "c", "--what", "w"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("save_fold: cannot read fold") for line in err)
    assert "holds fold 1" in err[1] and not out.exists()
