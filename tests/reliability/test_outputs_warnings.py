"""Warnings reach the user, and implausible or unavailable phenotypes are never
shown as clean numbers.

- the study's warnings (e.g. an incomplete DICOM series read with --allow-incomplete) and the result's go to
  stderr as `gemini-cmr: warning: ...` lines, besides run.json;
- values outside the plausible ranges (LVEF 5-95 %, RVEF 0-95 %, LVEDV 20-800 mL, LV mass 20-600 g) and empty structures
  are flagged in phenotypes.json (`value_status`, `flags`, `plausible`), phenotypes.csv (`flag` column),
  run.json (`phenotypes`), and the summary line;
- a single phase: ESV, SV, EF and the volume curve are "not available" with the reason (null in JSON, empty
  in CSV, "n/a (...)" in the summary), never 0.
The CLI runs in-process with a fake predictor (the analytic phantom) unless the test needs the real data."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gemini_cmr.core import phenotypes as ph
from gemini_cmr.core.study import Grid, StudyMeta
from tests.core.engine.fakes import CentreFakePredictor, make_study
from tests.reliability.conftest import run_cli


class _ImplausiblePredictor(CentreFakePredictor):
    """The phantom without an RV, and its LV cavity gone after the first phase (LVEF 100 %)."""

    def predict(self, study, phases=None, progress=None, cancel=None):
        pred = super().predict(study, phases, progress, cancel)
        lab = pred.sr_labels
        lab[lab == 3] = 0
        lab[1:][lab[1:] == 1] = 0
        return pred


@pytest.fixture
def study_file(tmp_path) -> Path:
    from gemini_cmr.core.io.nifti import save_nifti

    s = make_study(n_phases=3)
    path = tmp_path / "cine.nii.gz"
    save_nifti(path, s.image, s.affine, phase_interval_ms=40.0)
    return path


def _engine(monkeypatch, predictor_cls=CentreFakePredictor, study_warning: str | None = None):
    import gemini_cmr.core.engine as engine
    import gemini_cmr.core.io as io_mod

    real = engine.SuperResolver
    monkeypatch.setattr(engine, "SuperResolver",
                        lambda model=None, adapter=None, device="auto", **kw: real(model=predictor_cls()))
    if study_warning:
        real_load = io_mod.load_study

        def load(*a, **k):
            s = real_load(*a, **k)
            s.meta.warnings.append(study_warning)
            return s

        monkeypatch.setattr(io_mod, "load_study", load)


def _csv(folder: Path) -> dict[str, list[str]]:
    rows = list(csv.reader(io.StringIO((folder / "phenotypes.csv").read_text())))
    assert rows[0] == ["quantity", "sr_labels", "lr_labels", "unit", "flag"]
    return {r[0]: r for r in rows[1:]}


def test_study_and_result_warnings_go_to_stderr(tmp_path, study_file, capsys, monkeypatch):
    _engine(monkeypatch, study_warning="incomplete series: loaded the complete subset")
    rc, out, err, _ = run_cli(["super-resolve", study_file, "--out", tmp_path / "o", "--quiet"], capsys)
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert lines == [f"gemini-cmr: warning: {study_file}: incomplete series: loaded the complete subset"], lines
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["warnings"] == ["incomplete series: loaded the complete subset"]
    assert run["phenotypes"] == {"plausible": True, "flags": {}}
    assert "(implausible)" not in out and "n/a" not in out


def test_implausible_values_are_flagged_everywhere(tmp_path, study_file, capsys, monkeypatch):
    _engine(monkeypatch, _ImplausiblePredictor)
    o = tmp_path / "o"
    rc, out, err, _ = run_cli(["super-resolve", study_file, "--out", o, "--quiet"], capsys)
    assert rc == 0, err
    # stdout: the summary marks every flagged value; stderr: one warning line per flag
    assert "LVEF 100.0 % (implausible)" in out and "LVESV 0.0 mL (implausible)" in out
    assert "RVEDV 0.0 mL (implausible)" in out and "RVEF n/a (no RV cavity at ED)" in out
    assert "[check: implausible values" in out
    assert "gemini-cmr: warning: LVESV, LVSV implausible: no LV cavity at ES" in err
    assert "gemini-cmr: warning: RV cavity empty: no RV cavity segmented in any phase" in err
    phen = json.loads((o / "phenotypes.json").read_text())
    assert phen["plausible"] is False
    assert phen["value_status"]["lv_ef_pct"] == "implausible" and phen["value_status"]["lv_edv_ml"] == "ok"
    assert phen["flags"]["lv_ef_pct"].startswith("implausible: no LV cavity at ES")
    assert phen["rv_ef_pct"] is None and phen["value_status"]["rv_ef_pct"] == "not available"
    assert phen["plausible_ranges"]["lv_ef_pct"] == [5.0, 95.0]
    rows = _csv(o)
    assert rows["plausible"][1] == "false"
    assert rows["lv_ef_pct"][1] == "100.0000" and rows["lv_ef_pct"][4].startswith("implausible")
    assert rows["rv_ef_pct"][1] == "" and rows["rv_ef_pct"][4] == "not available: no RV cavity at ED"
    run = json.loads((o / "run.json").read_text())
    assert run["phenotypes"]["plausible"] is False and run["phenotypes"]["flags"] == phen["flags"]
    assert any("LVEF" in w and "implausible" in w for w in run["warnings"])


def test_single_phase_values_are_not_available_with_the_reason(tmp_path, study_file, capsys, monkeypatch):
    """One phase gives no LVEF (ESV would equal EDV, "LVEF 0.0 %"): n/a with the reason."""
    _engine(monkeypatch)
    o = tmp_path / "o"
    rc, out, err, _ = run_cli(["super-resolve", study_file, "--out", o, "--phases", "1", "--quiet"], capsys)
    assert rc == 0, err
    assert "LVEF n/a (only one phase was super-resolved)" in out
    assert "LVESV n/a (only one phase was super-resolved)" in out and "0.0 %" not in out
    assert "LVEDV n/a" not in out and "LV mass n/a" not in out
    assert "not available: only one phase" in err and "volume-time curve" in err
    phen = json.loads((o / "phenotypes.json").read_text())
    for key in ("lv_esv_ml", "lv_sv_ml", "lv_ef_pct", "rv_esv_ml", "rv_sv_ml", "rv_ef_pct"):
        assert phen[key] is None and phen["value_status"][key] == "not available", key
    assert phen["lv_edv_ml"] > 20 and phen["value_status"]["lv_edv_ml"] == "ok"
    assert phen["flags"]["volume_curves_ml"].startswith("not available")
    rows = _csv(o)
    assert rows["lv_ef_pct"][1] == "" and "only one phase" in rows["lv_ef_pct"][4]


@pytest.mark.parametrize("phases,lv,expect", [
    ([0], [10], {"lv_ef_pct": "not available", "lv_esv_ml": "not available"}),
    ([0, 1], [30, 30], {"lv_ef_pct": "not available", "lv_sv_ml": "not available"}),  # flat curve: ED = ES
    ([0, 1], [900, 450], {"lv_edv_ml": "implausible"}),  # 900 mL
    ([0, 1], [12, 6], {"lv_edv_ml": "implausible"}),  # 12 mL
    ([0, 1], [100, 1], {"lv_ef_pct": "implausible"}),  # 99 %
    ([0, 1], [100, 98], {"lv_ef_pct": "implausible"}),  # 2 %
    ([0, 1], [100, 5], {"lv_ef_pct": "ok"}),  # 95 %: the limit is inclusive
    ([0, 1], [20, 10], {"lv_edv_ml": "ok"}),  # 20 mL: inclusive
    ([0, 1], [100, 50], {}),
])
def test_assess_ranges_and_availability(phases, lv, expect):
    """core.phenotypes.assess on boxes of known volume: ranges inclusive, ED = ES and one phase unavailable."""
    g = Grid((100, 100, 100), np.diag([1.0, 1.0, 1.0, 1.0]))  # 1 mm^3 voxels: n mL = n x 1000 voxels
    lab = np.zeros((len(phases), 100, 100, 100), np.uint8)
    for t, n in enumerate(lv):  # LV cavity n mL from the first slice on; RV 20 mL and myocardium 3 mL at the end
        lab[t].reshape(-1)[: n * 1000] = 1
        lab[t, 98:, :, :] = 3
    lab[:, 97, :30, :] = 2  # 3 mL of myocardium: LV mass 3.15 g, implausible in every case
    flat = lv[0] == lv[-1]  # no ED/ES from the study: a flat curve gives ED = ES
    meta = StudyMeta() if flat else StudyMeta(ed_phase=0, es_phase=phases[-1])
    res = ph.compute_phenotypes(lab, g, phases=phases, meta=meta)
    status = res["value_status"]
    for key, state in expect.items():
        assert status[key] == state, (key, res["flags"])
    assert status["lv_mass_g"] == "implausible"
    for key, state in status.items():
        value = res[key]
        if state == "not available":
            assert isinstance(value, float) and math.isnan(value), key
        if state != "ok":
            assert res["flags"][key].startswith(state), key
    if "lv_ef_pct" not in expect:
        assert status["lv_ef_pct"] == "ok"
    assert res["plausible"] is False  # the mass


@pytest.mark.slow
@pytest.mark.data
def test_philips_partial_series_warns_and_flags_its_lvef(tmp_path, shared_data):
    """The issue's reproduction: the Philips partial series with --allow-incomplete printed nothing and
    reported LVEF 100.0 % as a clean number (a real process, the real model)."""
    from tests.reliability.conftest import run_cli_process

    study = shared_data / "philips_partial"
    if not study.is_dir():
        pytest.skip("philips_partial not available")
    out = tmp_path / "ph"
    proc = run_cli_process(["super-resolve", study, "--allow-incomplete", "--out", out, "--device", "cpu",
                            "--quiet"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("gemini-cmr: warning:")]
    assert any("incomplete series" in w for w in warnings), proc.stderr
    phen = json.loads((out / "phenotypes.json").read_text())
    if phen["lv_ef_pct"] is not None and not 5 <= phen["lv_ef_pct"] <= 95:
        assert phen["value_status"]["lv_ef_pct"] == "implausible"
        assert "(implausible)" in proc.stdout.split("LVEF", 1)[1].split("LV mass")[0]
        assert any("LVEF" in w for w in warnings)
    assert phen["plausible"] is (not any(s == "implausible" for s in phen["value_status"].values())
                                 and not any(f.startswith("empty") for f in phen["flags"].values()))


def test_strict_exits_3_with_the_outputs_written(tmp_path, study_file, capsys, monkeypatch):
    """--strict: an implausible or quality-flagged result still writes every output, and the exit status says
    its numbers need a look; a clean one exits 0."""
    _engine(monkeypatch, _ImplausiblePredictor)
    rc, out, err, _ = run_cli(["super-resolve", study_file, "--out", tmp_path / "bad", "--quiet", "--strict"], capsys)
    assert rc == 3, err
    assert (tmp_path / "bad" / "run.json").is_file() and (tmp_path / "bad" / "qc.png").is_file()
    rc, out, err, _ = run_cli(["super-resolve", study_file, "--out", tmp_path / "bad2", "--quiet"], capsys)
    assert rc == 0, err  # without --strict: written, exit 0
    monkeypatch.undo()
    _engine(monkeypatch)
    rc, out, err, _ = run_cli(["super-resolve", study_file, "--out", tmp_path / "ok", "--quiet", "--strict"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "ok" / "run.json").read_text())["quality_checks"]["passed"] is True
