"""Interrupted work loses nothing: SIGINT/SIGTERM (or Cancel) during `super-resolve` leaves --out exactly
as it was with no temporary folders left behind; killing `train gemini` (SIGKILL, SIGTERM, SIGINT) leaves
the last checkpoint loadable and `--resume` works; a save cut short at any point keeps the previous
training state readable (fault injection)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import DEMO, REPO, child_env, leftovers, tree

TINY = {"model": {"depth": 24, "widths": [4, 8, 16]}, "disc_width": 4, "crop": 32, "batch_size": 1,
        "lr": 3e-3, "amp": "off", "num_threads": 1, "checkpoint_every": 1, "val_every": 1000}


def _previous_outputs(out: Path) -> dict:
    out.mkdir(parents=True)
    (out / "sr_image.nii.gz").write_bytes(b"old image")
    (out / "phenotypes.json").write_text('{"old": true}')
    (out / "meshes").mkdir()
    (out / "meshes" / "ed_lv_cavity.stl").write_bytes(b"old mesh")
    (out / "my_notes.txt").write_text("not ours")
    return tree(out)


def _start_super_resolve(out: Path, phases: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gemini_cmr.cli.main", "super-resolve", str(DEMO), "--out", str(out),
                             "--phases", phases, "--device", "cpu"], cwd=REPO, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def _interrupt_super_resolve(tmp_path: Path, sig: int, when: str, phases: str = "0,1"):
    out = tmp_path / "results"
    before = _previous_outputs(out)
    proc = _start_super_resolve(out, phases)
    try:
        if when == "writing":  # the staging folder exists: outputs are being written
            # (staged inside --out, on its file system)
            hit = _wait_for(lambda: bool(leftovers(tmp_path, "results") or staging(out)), proc, 120)
        else:  # the model is running
            hit = _wait_for(lambda: False, proc, 0) or _wait_until_predicting(proc)
        assert hit, f"the run ended before it could be interrupted: {proc.communicate()[1][-2000:]}"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err, err
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], (proc.returncode, err)
    assert err.strip().splitlines()[-1] in ("gemini-cmr: interrupted", "gemini-cmr: terminated")
    assert tree(out) == before
    assert leftovers(tmp_path, "results") == [], [str(p) for p in tmp_path.rglob("*") if ".results.tmp" in str(p)]
    assert staging(out) == []
    assert not list(out.glob(".*.old-*"))


def staging(out: Path) -> list[str]:
    """Staging folders of write_outputs inside `out` (`.gemini-cmr.tmp-*`)."""
    return sorted(p.name for p in out.glob(".gemini-cmr.tmp-*")) if out.is_dir() else []


def _wait_until_predicting(proc: subprocess.Popen) -> bool:
    for line in proc.stderr:
        if "super-resolving" in line or "super-resolved" in line:
            return True
    return False


def test_sigterm_while_writing_outputs_keeps_the_old_folder(tmp_path):
    _interrupt_super_resolve(tmp_path, signal.SIGTERM, "writing")


def test_signal_while_starting_the_image_writer_waits_for_it(tmp_path, monkeypatch):
    """A SIGTERM that lands while write_outputs starts its SR-image writer thread (Thread.start waits for
    the new thread) must not orphan the writer: the cleanup waits for it, then removes the temporary folder.
    (An orphaned writer would keep writing into the folder while it is removed, leaving `.results.tmp-*`.)"""
    import threading

    import gemini_cmr.core.outputs as outputs
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.outputs import write_outputs

    result = SuperResolver(device="cpu").run(load_study(DEMO), phases=[0, 1], meshes="none")
    out = tmp_path / "results"
    before = _previous_outputs(out)

    class Stop(Exception):
        pass

    def on_term(signum, frame):
        raise Stop()

    finished: list[float] = []
    real_save, real_start = outputs.save_nifti_fast, threading.Thread.start

    def slow_save(*args, **kw):
        time.sleep(0.5)
        try:
            return real_save(*args, **kw)
        finally:
            finished.append(time.monotonic())

    fired: list[bool] = []

    def start(self):
        real_start(self)
        if not fired and threading.current_thread() is threading.main_thread():
            fired.append(True)
            signal.raise_signal(signal.SIGTERM)  # lands while submit() is starting the pool's thread

    monkeypatch.setattr(outputs, "save_nifti_fast", slow_save)
    monkeypatch.setattr(threading.Thread, "start", start)
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(Stop):
            write_outputs(result, out, mesh_formats=())
        raised_at = time.monotonic()
    finally:
        signal.signal(signal.SIGTERM, previous)
        monkeypatch.undo()
        time.sleep(1.0)  # an orphaned writer, if any, finishes meanwhile
    assert fired
    assert finished and finished[0] <= raised_at, "write_outputs returned while its writer thread still ran"
    assert tree(out) == before
    assert leftovers(tmp_path, "results") == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("when", ["predicting", "writing"])
def test_interrupted_super_resolve_keeps_the_old_folder(sig, when, tmp_path):
    _interrupt_super_resolve(tmp_path, sig, when, phases="0,1,2,3,4,5" if when == "predicting" else "0,1")


@pytest.mark.slow
def test_cancel_while_writing_keeps_the_old_folder(tmp_path):
    """Cancel (the app's button) at every check during write_outputs: the folder is never touched."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.errors import Cancelled
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.outputs import write_outputs

    result = SuperResolver(device="cpu").run(load_study(DEMO), phases=[0, 1], meshes="ed_es")
    out = tmp_path / "results"
    before = _previous_outputs(out)
    n_checks = 0
    for stop_at in range(1, 12):
        calls = 0

        def cancel(stop_at=stop_at):
            nonlocal calls
            calls += 1
            return calls >= stop_at

        try:
            write_outputs(result, out, cancel=cancel)
        except Cancelled:
            n_checks += 1
            assert tree(out) == before
            assert leftovers(tmp_path, "results") == []
            continue
        break  # fewer checks than stop_at: the write completed
    assert n_checks >= 2
    assert (out / "run.json").exists() and (out / "my_notes.txt").read_text() == "not ours"


# --- training ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from tests.toy_data import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "data", n_subjects=3, seed=0, n_phases=4,
                             lr_shape=(6, 32, 32))


def _train(data: Path, run: Path, cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gemini_cmr.cli.main", "train", "gemini", "--data", str(data),
                             "--out", str(run), "--config", str(cfg), "--device", "cpu", "--progress-json", *extra],
                            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_checkpoint(proc: subprocess.Popen, min_step: int) -> int:
    for line in proc.stdout:
        if line.startswith("{"):
            e = json.loads(line)
            if e["event"] == "checkpoint" and e["step"] >= min_step:
                return e["step"]
    raise AssertionError(f"training ended without a checkpoint: {proc.stderr.read()[-2000:]}")


def _check_loadable(run: Path) -> int:
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.train.loop import read_state

    tensors, meta = read_state(run / "last")
    assert any(k.startswith("G.") for k in tensors)
    Predictor.load(run / "last", device="cpu")
    return int(meta["step"])


def _resume(data: Path, run: Path, cfg: Path, steps: int) -> dict:
    proc = _train(data, run, cfg, "--resume", "--max-steps", str(steps))
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    events = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert events[0]["event"] == "start" and events[0]["resumed"]
    assert events[-1]["event"] == "done" and events[-1]["step"] == steps
    return events[0]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_killed_training_resumes(sig, toy_data, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    proc = _train(toy_data, run, cfg, "--epochs", "400")
    try:
        _wait_checkpoint(proc, 6)
        time.sleep(0.05 * (sig % 5))  # land at different points of a step / a checkpoint write
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == {signal.SIGKILL: -9, signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
    step = _check_loadable(run)
    assert step >= 6
    start = _resume(toy_data, run, cfg, step + 3)
    assert start["step"] == step
    assert _check_loadable(run) == step + 3


@pytest.mark.slow
def test_repeated_sigkill_never_corrupts_the_run(toy_data, tmp_path):
    """Kill the trainer at random moments (checkpoints every step, so most kills land near a write)."""
    import random

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    rng = random.Random(7)
    for i in range(4):
        proc = _train(toy_data, run, cfg, "--epochs", "400", *(["--resume"] if i else []))
        try:
            _wait_checkpoint(proc, 2)
            time.sleep(rng.uniform(0.0, 0.4))
            proc.kill()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _check_loadable(run)


# --- fault injection: a checkpoint save cut short at each stage --------------------------------------------
@pytest.mark.parametrize("stage", ["tensors", "json"])
def test_state_save_cut_short_keeps_previous_state(stage, tmp_path, monkeypatch):
    import torch

    import gemini_cmr.core.train.loop as loop

    folder = tmp_path / "last"
    loop.write_state(folder, {"w": torch.ones(3)}, {"step": 1})
    tensors, meta = loop.read_state(folder)
    assert meta["step"] == 1

    class Crash(BaseException):
        pass

    def crash(*a, **k):
        raise Crash()

    monkeypatch.setattr(loop, "save_tensors" if stage == "tensors" else "atomic_write_text", crash)
    with pytest.raises(Crash):
        loop.write_state(folder, {"w": torch.full((3,), 2.0)}, {"step": 2})
    monkeypatch.undo()
    tensors, meta = loop.read_state(folder)
    assert meta["step"] == 1 and float(tensors["w"][0]) == 1.0
    # the next complete save supersedes it and cleans up
    loop.write_state(folder, {"w": torch.full((3,), 3.0)}, {"step": 3})
    tensors, meta = loop.read_state(folder)
    assert meta["step"] == 3 and float(tensors["w"][0]) == 3.0
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "state.safetensors"]


def test_resume_without_checkpoint_is_one_line_error(toy_data, tmp_path, capsys):
    from tests.reliability.conftest import assert_one_line_error, run_cli

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    rc, _, err, _ = run_cli(["train", "gemini", "--data", toy_data, "--out", tmp_path / "run", "--config", cfg,
                             "--resume", "--device", "cpu"], capsys)
    assert_one_line_error(rc, err, ("no training state",))
