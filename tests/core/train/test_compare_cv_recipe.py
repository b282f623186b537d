"""recipes/gemini-acdc/compare_cv.py: paired comparison of two `train cv` runs on their common patients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]


def _script():
    return load_script(ROOT / "recipes" / "gemini-acdc" / "compare_cv.py")


def _run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir()
    (folder / "cv.json").write_text(json.dumps({"summary": {}, "rows": rows}))
    return folder


def _row(subject: str, fold: int, lv: float, ef_pred: float, ef_manual: float = 50.0) -> dict:
    keys = {f"{ph}_{s}": lv for ph in ("ed", "es") for s in ("lv_cavity", "lv_myocardium", "rv_cavity")}
    return {"subject": subject, "fold": fold, **keys, "pred_lv_ef_pct": ef_pred, "manual_lv_ef_pct": ef_manual}


def test_paired_figures_on_the_common_patients_and_folds(tmp_path, capsys):
    c = _script()
    a = _run(tmp_path / "a", [_row("p1", 0, 0.90, 52.0), _row("p2", 0, 0.80, 47.0), _row("p3", 1, 0.70, 50.0),
                              _row("only_a", 1, 0.10, 90.0)])
    b = _run(tmp_path / "b", [_row("p1", 0, 0.92, 51.0), _row("p2", 0, 0.84, 46.0), _row("p3", 1, 0.70, 53.0)])
    res = c.compare(c._rows(a), c._rows(b))
    assert res["n"] == 3 and res["folds"] == [0, 1]
    lv = res["dice"]["ed_lv_cavity"]
    assert lv["a"] == pytest.approx(0.8) and lv["diff"] == pytest.approx(0.02)
    ef = res["clinical"]["lv_ef_pct"]
    # |errors| A: 2, 3, 0; B: 1, 4, 3 -> differences -1, +1, +3
    assert ef["mean_abs_a"] == pytest.approx(5 / 3) and ef["mean_abs_b"] == pytest.approx(8 / 3)
    assert ef["abs_diff"] == pytest.approx(1.0) and ef["se"] == pytest.approx(2 / 3 ** 0.5)
    assert ef["median_abs_b"] == 3.0 and ef["bias_a"] == pytest.approx(-1 / 3)
    assert res["clinical"]["lv_mass_g"]["n"] == 0  # not in these rows: no figure, no error
    only0 = c.compare(c._rows(a), c._rows(b), {0})
    assert only0["n"] == 2 and only0["dice"]["ed_lv_cavity"]["diff"] == pytest.approx(0.03)
    out = tmp_path / "cmp.json"
    assert c.main([str(a), str(b), "--folds", "0,1", "--json", str(out)]) == 0
    assert "3 held-out patients of folds [0, 1]" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["per_fold"]) == {"0", "1"}


def test_no_common_patient_or_unreadable_run_is_exit_status_2(tmp_path, capsys):
    c = _script()
    a = _run(tmp_path / "a", [_row("p1", 0, 0.9, 50.0)])
    b = _run(tmp_path / "b", [_row("p2", 0, 0.9, 50.0)])
    assert c.main([str(a), str(b)]) == 2
    assert c.main([str(a), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no held-out patient in both runs" in err and "cannot read the runs" in err


def test_rows_of_committed_results_pooled_by_key(tmp_path, capsys):
    c = _script()
    f0, f1 = tmp_path / "fold0.json", tmp_path / "fold1.json"
    f0.write_text(json.dumps({"eval_a": {"rows": [_row("p1", 0, 0.90, 52.0)]},
                              "eval_b": {"rows": [_row("p1", 0, 0.94, 50.0)]}}))
    f1.write_text(json.dumps({"eval_a": {"rows": [_row("p2", 1, 0.80, 47.0)]},
                              "eval_b": {"rows": [_row("p2", 1, 0.82, 48.0)]}}))
    a, b = c._rows(f"{f0}#eval_a+{f1}#eval_a"), c._rows(f"{f0}#eval_b+{f1}#eval_b")
    res = c.compare(a, b)
    assert res["n"] == 2 and res["folds"] == [0, 1]
    assert res["dice"]["es_rv_cavity"]["diff"] == pytest.approx(0.03)
    # the same patient from two sources is refused: exit status 2 with the reason
    assert c.main([f"{f0}#eval_a+{f0}#eval_a", f"{f0}#eval_b"]) == 2
    assert "p1 occurs twice" in capsys.readouterr().err


def test_method_columns_of_a_placement_benchmark_pair_with_a_run(tmp_path):
    """`FILE#KEY@METHOD` reads one placement's columns of `bench_lr_labels.py` rows (errors as prediction -
    manual) and pairs them with a run's rows; a method the rows lack is an error."""
    c = _script()
    a = _run(tmp_path / "a", [_row("p1", 0, 0.90, 52.0), _row("p2", 0, 0.80, 47.0)])
    bench_rows = []
    for subject, lv_n, lv_s, err in (("p1", 0.91, 0.93, -1.0), ("p2", 0.82, 0.83, 4.0)):
        row = {"subject": subject, "run": "runs/x", "fold": 0}
        for m, v in (("nearest", lv_n), ("smoothed", lv_s)):
            row.update({f"{m}:{ph}_{s}": v for ph in ("ed", "es") for s in ("lv_cavity", "lv_myocardium", "rv_cavity")})
            row[f"{m}:error_lv_ef_pct"] = err
        bench_rows.append(row)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"command": "x", "accuracy": {"rows": bench_rows}}))
    near = c.compare(c._rows(a), c._rows(f"{bench}#accuracy@nearest"))
    assert near["n"] == 2 and near["dice"]["es_rv_cavity"]["diff"] == pytest.approx(0.015)
    ef = near["clinical"]["lv_ef_pct"]  # |errors| A: 2, 3; B: 1, 4
    assert ef["mean_abs_b"] == pytest.approx(2.5) and ef["bias_b"] == pytest.approx(1.5)
    smooth = c.compare(c._rows(a), c._rows(f"{bench}#accuracy@smoothed"))
    assert smooth["dice"]["ed_lv_cavity"]["diff"] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="no 'linear' columns"):
        c._rows(f"{bench}#accuracy@linear")
