"""A resumed `gemini-cmr batch` never files one study's results under another.

Output folders are named from each study's path (not the list order), and a study is skipped only when its
folder's run.json records the same input (path, size, modification time), model, adapter and options and
every listed output is there. The engine runs a fake predictor (the analytic phantom, tests/core/engine/fakes.py)
so each study takes about a second."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gemini_cmr.cli import batch
from tests.core.engine.fakes import CentreFakePredictor, make_study
from tests.reliability.conftest import run_cli

FAKE_ID = "f" * 64


@pytest.fixture
def fake_engine(monkeypatch):
    import gemini_cmr.core.engine as engine

    real = engine.SuperResolver
    monkeypatch.setattr(engine, "SuperResolver",
                        lambda model=None, adapter=None, device="auto", **kw: real(model=CentreFakePredictor()))
    monkeypatch.setattr(batch, "model_identity",
                        lambda model, adapter: {"model": {"path": "default", "sha256": [FAKE_ID]}, "adapter": None})


def _study(path: Path, n_phases: int) -> Path:
    from gemini_cmr.core.io.nifti import save_nifti

    s = make_study(n_phases=n_phases)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(path, s.image, s.affine, phase_interval_ms=40.0)
    return path


def _batch(lst: Path, out: Path, capsys, *extra: str) -> tuple[int, dict, str]:
    rc, stdout, err, _ = run_cli(["batch", lst, "--out", out, "--device", "cpu", "--quiet", *extra], capsys)
    suffix = [p for p in out.glob("batch_summary.json")]
    summary = json.loads(suffix[0].read_text()) if suffix else {}
    return rc, summary, err


def _run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def _rows(summary: dict) -> dict[str, dict]:
    return {Path(r["study"]).parent.name + "/" + Path(r["study"]).name: r for r in summary["studies"]}


def test_resumed_batch_on_another_list_keeps_each_study_in_its_own_folder(tmp_path, capsys, fake_engine):
    """The issue's reproduction: `batch` on [A/study], then on [B/study, A/study] with the same --out.
    Before: exit 0, B "skipped, complete", its folder holding A's results."""
    a = _study(tmp_path / "A" / "study.nii.gz", 3)
    b = _study(tmp_path / "B" / "study.nii.gz", 4)
    out = tmp_path / "out"
    (tmp_path / "l1.txt").write_text("A/study.nii.gz\n")
    (tmp_path / "l2.txt").write_text("B/study.nii.gz\nA/study.nii.gz\n")
    rc, summary, err = _batch(tmp_path / "l1.txt", out, capsys)
    assert rc == 0, err
    a_dir = out / "A_study"
    assert _run_json(a_dir)["input"]["fingerprint"]["path"] == str(a.resolve())
    a_files = {p: p.read_bytes() for p in a_dir.rglob("*") if p.is_file()}

    rc, summary, err = _batch(tmp_path / "l2.txt", out, capsys)
    assert rc == 0, err
    rows = _rows(summary)
    assert rows["B/study.nii.gz"]["status"] == "ok" and rows["A/study.nii.gz"]["status"] == "skipped"
    b_dir = Path(rows["B/study.nii.gz"]["output"])
    assert b_dir == out / "B_study" and b_dir != a_dir
    run_b = _run_json(b_dir)
    assert run_b["input"]["fingerprint"]["path"] == str(b.resolve()) and run_b["input"]["shape"][0] == 4
    assert {p: p.read_bytes() for p in a_dir.rglob("*") if p.is_file()} == a_files  # A untouched


def test_a_folder_holding_another_study_is_left_alone(tmp_path, capsys, fake_engine):
    """Two lists in different folders give both studies the name "study": the second study does not
    overwrite (or skip into) the first one's folder, it gets its own (name + hash of its path)."""
    a = _study(tmp_path / "A" / "study.nii.gz", 3)
    b = _study(tmp_path / "B" / "study.nii.gz", 4)
    out = tmp_path / "out"
    (tmp_path / "A" / "list.txt").write_text("study.nii.gz\n")
    (tmp_path / "B" / "list.txt").write_text("study.nii.gz\n")
    assert _batch(tmp_path / "A" / "list.txt", out, capsys)[0] == 0
    before = {p: p.read_bytes() for p in (out / "study").rglob("*") if p.is_file()}
    rc, summary, err = _batch(tmp_path / "B" / "list.txt", out, capsys)
    assert rc == 0, err
    row = summary["studies"][0]
    assert row["status"] == "ok" and Path(row["output"]).name == f"study-{batch.path_hash(b)}"
    assert "holds the results of" in row["reason"] and str(a.resolve()) in row["reason"]
    assert _run_json(Path(row["output"]))["input"]["fingerprint"]["path"] == str(b.resolve())
    assert {p: p.read_bytes() for p in (out / "study").rglob("*") if p.is_file()} == before
    # Resuming B's list again: B's own folder is found and skipped; A's stays A's.
    rc, summary, _ = _batch(tmp_path / "B" / "list.txt", out, capsys)
    assert rc == 0 and summary["studies"][0]["status"] == "skipped"
    assert Path(summary["studies"][0]["output"]).name == f"study-{batch.path_hash(b)}"


def test_resume_redoes_a_changed_input_other_options_or_missing_outputs(tmp_path, capsys, fake_engine):
    s = _study(tmp_path / "s.nii.gz", 3)
    out = tmp_path / "out"
    lst = tmp_path / "list.txt"
    lst.write_text("s.nii.gz\n")
    assert _batch(lst, out, capsys)[0] == 0
    rc, summary, _ = _batch(lst, out, capsys)
    assert summary["studies"][0]["status"] == "skipped"

    st = s.stat()  # the same file rewritten (new modification time): redone
    os.utime(s, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    rc, summary, _ = _batch(lst, out, capsys)
    row = summary["studies"][0]
    assert rc == 0 and row["status"] == "ok" and "input changed" in row["reason"], row

    rc, summary, _ = _batch(lst, out, capsys, "--sr-dtype", "int16")  # other options: redone
    row = summary["studies"][0]
    assert row["status"] == "ok" and "other options (sr_dtype)" in row["reason"], row
    assert _run_json(out / "s")["sr_image_dtype"] == "int16"

    (out / "s" / "sr_labels.nii.gz").unlink()  # an output gone: redone
    rc, summary, _ = _batch(lst, out, capsys, "--sr-dtype", "int16")
    row = summary["studies"][0]
    assert row["status"] == "ok" and "missing" in row["reason"] and (out / "s" / "sr_labels.nii.gz").is_file()

    rc, summary, _ = _batch(lst, out, capsys, "--sr-dtype", "int16")
    assert summary["studies"][0]["status"] == "skipped"

    # A run.json without the resume record (an older version, or hand-made): not trusted, redone.
    info = _run_json(out / "s")
    del info["resume_key"]
    (out / "s" / "run.json").write_text(json.dumps(info))
    rc, summary, _ = _batch(lst, out, capsys, "--sr-dtype", "int16")
    assert summary["studies"][0]["status"] == "ok" and "fingerprint" in summary["studies"][0]["reason"]


def test_the_resume_check_compares_the_model(tmp_path):
    """resume_state: another model's results (or a changed bundled model) are stale, not complete."""
    folder = tmp_path / "s"
    folder.mkdir()
    key = {"input": {"path": "/x/s.nii.gz", "files": 1, "size_bytes": 10, "mtime_ns": 1},
           "model": {"path": "default", "sha256": ["a" * 64]}, "adapter": None, "options": {"phases": "all"}}
    (folder / "out.nii.gz").write_bytes(b"x")
    info = {"phases": [0], "outputs": ["out.nii.gz", "run.json"], "model": {"id": "a" * 64}, "resume_key": key}
    (folder / "run.json").write_text(json.dumps(info))
    assert batch.resume_state(folder, key) == ("complete", "")
    assert batch.resume_state(folder, {**key, "model": {"path": "default", "sha256": ["b" * 64]}})[0] == "stale"
    assert batch.resume_state(folder, {**key, "model": {"path": "/m/model.safetensors", "sha256": ["a" * 64]}}
                              )[0] == "stale"
    assert batch.resume_state(folder, {**key, "adapter": {"path": "/a", "sha256": "c"}})[0] == "stale"
    other = {**key, "input": {**key["input"], "path": "/y/s.nii.gz"}}
    assert batch.resume_state(folder, other)[0] == "other"
    assert batch.resume_state(tmp_path / "nothing", key)[0] == "missing"


def test_batch_warnings_and_implausible_results_reach_the_user(tmp_path, capsys, fake_engine):
    """Warnings in batch: the study's and the result's warnings go to stderr and into the summary, with
    whether the phenotypes are plausible; the summary line counts the implausible ones."""
    _study(tmp_path / "s.nii.gz", 3)
    lst = tmp_path / "list.txt"
    lst.write_text("s.nii.gz\n")
    out = tmp_path / "out"
    rc, summary, err = _batch(lst, out, capsys, "--phases", "1")  # one phase: no ESV, SV, EF
    assert rc == 0
    row = summary["studies"][0]
    assert "not available: only one phase" in row["warnings"] and row["plausible"] == "true"
    assert "gemini-cmr: warning:" in err and "LVEF" in err and "only one phase" in err
    csv_text = (out / "batch_summary.csv").read_text()
    assert csv_text.splitlines()[0] == "study,output,status,reason,seconds,plausible,quality_checks,warnings"
    qc = _run_json(out / "s")["quality_checks"]
    assert qc["checks"] and row["quality_checks"] == batch.quality_text(qc) != ""
    rc, summary, _ = _batch(lst, out, capsys, "--phases", "1")  # skipped: the verdict read back from run.json
    assert summary["studies"][0]["status"] == "skipped"
    assert summary["studies"][0]["quality_checks"] == row["quality_checks"]
    page = (out / "batch_review.html").read_text()
    assert "<img src='s/qc.png'" in page and (out / "s" / "qc.png").is_file()


def test_review_page_puts_the_studies_to_look_at_first(tmp_path):
    rows = [{"study": "a", "output": str(tmp_path / "a"), "status": "ok", "quality_checks": "passed",
             "plausible": "true"},
            {"study": "b<x>", "output": str(tmp_path / "b"), "status": "ok", "quality_checks": "failed: lv_ring",
             "plausible": "true"},
            {"study": "c", "output": str(tmp_path / "c"), "status": "failed", "reason": "unreadable"},
            {"study": "d", "output": str(tmp_path / "d"), "status": "skipped", "quality_checks": "passed",
             "plausible": "false"}]
    page = batch.review_page(tmp_path, rows)
    order = [page.index(f"<b>{name}</b>") for name in ("b&lt;x&gt;", "d", "a", "c")]
    assert order == sorted(order) and "2 to look at first" in page
    assert "src='b/qc.png'" in page and "src='c/qc.png'" not in page and "unreadable" in page


def test_quality_text():
    assert batch.quality_text(None) == ""
    assert batch.quality_text({"passed": True, "checks": [{"name": "lv_ring", "ok": True}]}) == "passed"
    assert batch.quality_text({"passed": False, "checks": [{"name": "rv_beside_lv", "ok": False},
                                                          {"name": "lv_ring", "ok": False},
                                                          {"name": "lv_ring", "ok": False}]}) == \
        "failed: lv_ring, rv_beside_lv"


def test_output_folder_inside_the_folder_of_studies_is_not_a_study(tmp_path, capsys, fake_engine):
    cohort = tmp_path / "cohort"
    _study(cohort / "s1.nii.gz", 3)
    out = cohort / "results"
    rc, summary, err = _batch(cohort, out, capsys)
    assert rc == 0, err
    rc, summary, err = _batch(cohort, out, capsys)
    assert rc == 0, err
    assert [Path(r["study"]).name for r in summary["studies"]] == ["s1.nii.gz"]
    assert summary["counts"] == {"ok": 0, "failed": 0, "skipped": 1}


def test_an_unwritable_out_fails_before_any_model_is_loaded(tmp_path, capsys, monkeypatch):
    import gemini_cmr.core.engine as engine

    def explode(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(engine, "SuperResolver", explode)
    _study(tmp_path / "s.nii.gz", 3)
    (tmp_path / "list.txt").write_text("s.nii.gz\n")
    (tmp_path / "taken").write_text("a file")
    rc, _, err, seconds = run_cli(["batch", tmp_path / "list.txt", "--out", tmp_path / "taken", "--quiet"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not a folder" in err and seconds < 20
