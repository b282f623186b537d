"""The training wizard's Qt-free helpers: progress-event texts (app/wizard/events.py) and output-folder
checks (app/wizard/folders.py)."""

from __future__ import annotations

import os

import pytest

from gemini_cmr.app.wizard.events import event_line, fmt_time
from gemini_cmr.app.wizard.folders import new_run_name, writable_problem


def test_fmt_time():
    assert fmt_time(None) == "--:--"
    assert fmt_time(0) == "00:00" and fmt_time(59.6) == "01:00" and fmt_time(754) == "12:34"
    assert fmt_time(3600) == "1:00:00" and fmt_time(3 * 3600 + 62) == "3:01:02"


def test_event_lines():
    assert event_line({"event": "start", "step": 0, "total_steps": 40, "device": "cpu"}) == "started: 40 steps on cpu"
    assert event_line({"event": "start", "step": 12, "total_steps": 40, "device": "cuda", "n_train_items": 8,
                       "n_val": 2, "generator_parameters": 12345}) == (
        "resumed at step 12: 40 steps on cuda, 8 training items, 2 validation samples, 12,345 generator parameters")
    assert event_line({"event": "val", "step": 4, "lv_cavity": 0.9, "lv_myocardium": 0.7, "rv_cavity": 0.8,
                       "psnr": 27.123, "ssim": 0.81, "best": True}) == (
        "validation at step 4: Dice LV 0.900, myo 0.700, RV 0.800, PSNR 27.12 dB, SSIM 0.810  (best so far)")
    assert event_line({"event": "epoch", "stage": "target", "epoch": 2, "step": 6,
                       "losses": {"total": 1.5, "mse": 0.25}}) == (
        "target stage epoch 2 (step 6): total 1.5000, mse 0.2500")
    assert event_line({"event": "done", "step": 40, "total_steps": 40, "elapsed_s": 75}) == "done at step 40/40 in 01:15"
    assert event_line({"event": "interrupted", "step": 7, "total_steps": 40}) == "interrupted at step 7/40"
    assert event_line({"event": "data", "source_studies": 4, "target_studies": 5}) == (
        "source_studies 4, target_studies 5")
    assert event_line({"event": "step", "step": 3}) == ""  # steps go to the curves, not the log


def test_writable_problem(tmp_path):
    assert writable_problem(tmp_path / "new" / "run") == ""  # created on start
    assert writable_problem(tmp_path) == ""
    assert writable_problem(type(tmp_path)(" ")) == "choose an output folder"
    (tmp_path / "afile").write_text("x")
    assert writable_problem(tmp_path / "afile" / "run") == f"{tmp_path / 'afile'} is a file, not a folder"
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert writable_problem(ro / "run") == f"{ro} is not writable"
    finally:
        ro.chmod(0o700)


def test_new_run_name(tmp_path):
    assert new_run_name(tmp_path / "run") == tmp_path / "run-2"
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-3").mkdir()
    assert new_run_name(tmp_path / "run") == tmp_path / "run-4"
    assert new_run_name(tmp_path / "run-3") == tmp_path / "run-4"  # a numbered name is renumbered
    assert new_run_name(tmp_path / "-7") == tmp_path / "run-4"  # no name left: "run"
