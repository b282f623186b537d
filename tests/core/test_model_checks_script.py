"""scripts/model_checks.py: the verdicts on each check's report (against the shipped model's committed reports),
and the runner (stand-in commands write the reports; nothing is super-resolved)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def mod():
    return load_script(ROOT / "scripts" / "model_checks.py")


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def test_heart_pass_fails_a_box_off_the_heart_the_shipped_model_did_not_have(mod):
    shipped = _json("heart_pass_check_204cfe.json")
    assert mod.judge_heart_pass(shipped, shipped)[0] and mod.judge_heart_pass(shipped, None)[0]
    worse = copy.deepcopy(shipped)
    worse["acdc"]["product"]["box_off_the_heart"] = [{"subject": "patient021", "phase": "es"}]
    ok, detail = mod.judge_heart_pass(worse, shipped)
    assert not ok and "ACDC boxes off the heart 1" in detail and "(shipped 0, 0)" in detail
    worse = copy.deepcopy(shipped)
    worse["sunnybrook"]["product"]["SCD0000401"]["phases_off_by_over_20_px"] = [3]
    assert not mod.judge_heart_pass(worse, shipped)[0] and not mod.judge_heart_pass(worse, None)[0]


def test_sunnybrook_level_means_within_a_hundredth_on_the_paired_phases(mod):
    rows = _json("sunnybrook_204cfe_vs_516195.json")["rows"]
    name = sorted({r["model"] for r in rows})[1]
    own = [r for r in rows if r["model"] == name]
    shipped = [dict(r, model="shipped") for r in own]
    ok, detail = mod.judge_sunnybrook(own + shipped, name, "shipped")  # the same Dice: level
    assert ok and "lv_cavity" in detail and "lv_myocardium" in detail
    lower = [dict(r, lv_myocardium=None if r["lv_myocardium"] is None else r["lv_myocardium"] - 0.02) for r in own]
    ok, detail = mod.judge_sunnybrook(lower + shipped, name, "shipped")
    assert not ok and "lv_myocardium" in detail
    slightly = [dict(r, lv_cavity=r["lv_cavity"] - 0.005) for r in own]
    assert mod.judge_sunnybrook(slightly + shipped, name, "shipped")[0]
    assert not mod.judge_sunnybrook(rows, "no such model", name)[0]


def test_precision_needs_99_9_percent_equal_labels_in_every_study(mod):
    rows = _json("precision_check_soft_slice_weights.json")["rows"]
    assert mod.judge_precision(rows)[0]
    failing = _json("precision_check_heads_fold0.json")["rows"]  # SCD0000401 at 99.856 %
    ok, detail = mod.judge_precision(failing)
    assert not ok and "SCD0000401 99.856%" in detail
    assert not mod.judge_precision([])[0]


def test_qc_fails_a_clean_run_that_passed_with_the_shipped_model(mod):
    shipped = _json("qc_check_204cfe.json")
    ok, detail = mod.judge_qc(shipped, shipped)
    assert ok and "philips LVSA1" in detail  # failing with the shipped model too: not new
    assert not mod.judge_qc(shipped, None)[0]  # without a reference a failing clean run fails
    worse = copy.deepcopy(shipped)
    worse["runs"]["rows"][0]["passed"] = False
    ok, detail = mod.judge_qc(worse, shipped)
    assert not ok and "newly failing: SCD0000101" in detail
    fewer = copy.deepcopy(shipped)
    fewer["failures"]["failed_flagged"] = shipped["failures"]["failed_flagged"] - 1
    assert not mod.judge_qc(fewer, shipped)[0]


STAND_IN = r"""
import json, sys
out = sys.argv[sys.argv.index("--json") + 1]
name = sys.argv[1]
reports = json.loads(open(sys.argv[2]).read())
open(out, "w").write(json.dumps(reports[name]))
"""


def test_runner_writes_each_report_keeps_existing_ones_and_says_pass_or_fail(mod, tmp_path, monkeypatch, capsys):
    for name in ("candidate", "shipped"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())
        (tmp_path / name / "config.json").write_text("{}")
    rows = _json("sunnybrook_204cfe_vs_516195.json")["rows"]
    names = sorted({r["model"] for r in rows})
    sb = [dict(r, model=str(tmp_path / ("candidate" if r["model"] == names[0] else "shipped"))) for r in rows]
    reports = {"heart_pass": _json("heart_pass_check_204cfe.json"), "sunnybrook": {"rows": sb},
               "precision": _json("precision_check_heads_fold0.json"), "qc": _json("qc_check_204cfe.json")}
    (tmp_path / "reports.json").write_text(json.dumps(reports))
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    real_commands = mod.commands

    def stand_ins(model, against, out, python=sys.executable):
        """The real command lines with the stand-in in place of each script (its arguments kept)."""
        real = real_commands(model, against, out, python)
        assert [c[1].rsplit("/", 1)[-1] for c in real.values()] == [
            "heart_pass_check.py", "eval_sunnybrook.py", "precision_check.py", "qc_check.py"]
        return {k: [python, str(tmp_path / "stand_in.py"), k, str(tmp_path / "reports.json"), *v[2:]]
                for k, v in real.items()}

    monkeypatch.setattr(mod, "commands", stand_ins)
    out = tmp_path / "checks"
    argv = ["--model", str(tmp_path / "candidate"), "--against", str(tmp_path / "shipped"), "--out", str(out),
            "--reference-heart", str(RESULTS / "heart_pass_check_204cfe.json"),
            "--reference-qc", str(RESULTS / "qc_check_204cfe.json")]
    rc = mod.main(argv)
    text = capsys.readouterr().out
    assert rc == 1  # the precision report is the failing one
    assert "FAIL precision" in text and "PASS heart_pass" in text and "PASS qc" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"]["precision"]["passed"] is False and summary["checks"]["heart_pass"]["passed"] is True
    # a second run keeps the reports (resumes) and judges them again
    (out / "precision.json").write_text(json.dumps(_json("precision_check_soft_slice_weights.json")))
    rc = mod.main(argv + ["--only", "precision"])
    assert rc == 0 and "kept" in capsys.readouterr().out
    assert not (tmp_path / "checks" / "summary.json.tmp").exists()


def test_a_folder_without_a_model_is_refused_with_status_2(mod, tmp_path, capsys):
    assert mod.main(["--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err
