"""`core.train.runs`: the run-folder layout, what a folder holds (none / run / finished) and the trained
model it offers; checked on hand-made folders and on folders written by the real trainers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gemini_cmr.core.train import runs
from gemini_cmr.core.train.runs import GEMINI, VAMA, history_path, run_state, trained_model_path


def _gemini_state(out, step, total):
    (out / runs.LAST_DIR).mkdir(parents=True, exist_ok=True)
    (out / runs.LAST_DIR / runs.STATE_JSON).write_text(json.dumps({"step": step, "total_steps": total}))


def _vama_checkpoint(out, finished: bool):
    (out / runs.CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    (out / runs.CHECKPOINTS_DIR / runs.CHECKPOINT_JSON).write_text(json.dumps({"step": 3, "total_steps": 6}))
    if finished:
        (out / runs.ADAPTER_WEIGHTS).write_bytes(b"")


@pytest.mark.parametrize("kind", [GEMINI, VAMA])
def test_an_empty_or_missing_folder_holds_no_run(kind, tmp_path):
    assert run_state(kind, tmp_path) == "none"
    assert run_state(kind, tmp_path / "not-there") == "none"
    assert run_state(kind, str(tmp_path)) == "none"


def test_gemini_state_step_against_total(tmp_path):
    _gemini_state(tmp_path, 3, 8)
    assert run_state(GEMINI, tmp_path) == "run"
    _gemini_state(tmp_path, 8, 8)
    assert run_state(GEMINI, tmp_path) == "finished"
    _gemini_state(tmp_path, 9, 8)  # a run extended past its schedule is still finished
    assert run_state(GEMINI, tmp_path) == "finished"


@pytest.mark.parametrize("text", ["{not json", json.dumps({"step": 3}), json.dumps({"step": None, "total_steps": 8}),
                                  json.dumps([1, 2])])
def test_an_unreadable_gemini_state_is_never_offered_for_resuming(text, tmp_path):
    (tmp_path / runs.LAST_DIR).mkdir()
    (tmp_path / runs.LAST_DIR / runs.STATE_JSON).write_text(text)
    assert run_state(GEMINI, tmp_path) == "finished"


def test_vama_checkpoint_then_adapter(tmp_path):
    _vama_checkpoint(tmp_path, finished=False)
    assert run_state(VAMA, tmp_path) == "run"
    _vama_checkpoint(tmp_path, finished=True)
    assert run_state(VAMA, tmp_path) == "finished"


def test_an_adapter_without_a_checkpoint_is_no_run(tmp_path):
    (tmp_path / runs.ADAPTER_WEIGHTS).write_bytes(b"")
    assert run_state(VAMA, tmp_path) == "none"


def test_each_kind_only_sees_its_own_layout(tmp_path):
    gemini, vama = tmp_path / "g", tmp_path / "v"
    _gemini_state(gemini, 3, 8)
    _vama_checkpoint(vama, finished=True)
    assert run_state(VAMA, gemini) == "none" and run_state(GEMINI, vama) == "none"


def test_trained_model_path(tmp_path):
    assert trained_model_path(GEMINI, tmp_path) == tmp_path / "last"  # no best model (yet)
    (tmp_path / "best").mkdir()
    assert trained_model_path(GEMINI, tmp_path) == tmp_path / "last"  # a best folder without weights
    (tmp_path / "best" / "model.safetensors").write_bytes(b"")
    assert trained_model_path(GEMINI, tmp_path) == tmp_path / "best"
    assert trained_model_path(GEMINI, str(tmp_path)) == tmp_path / "best"
    assert trained_model_path(VAMA, tmp_path) == tmp_path
    assert history_path(tmp_path) == tmp_path / "history.json"


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown training kind"):
        run_state("gemini-gan", tmp_path)
    with pytest.raises(ValueError, match="unknown training kind"):
        trained_model_path("", tmp_path)


def test_importing_it_loads_neither_torch_nor_numpy():
    code = ("import sys, gemini_cmr.core.train.runs\n"
            "print([m for m in ('torch', 'numpy', 'safetensors') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_file_names_match_the_model_stores():
    pytest.importorskip("torch")
    from gemini_cmr.core.models.store import WEIGHTS_NAME
    from gemini_cmr.core.models.vama import ADAPTER_WEIGHTS

    assert runs.MODEL_WEIGHTS == WEIGHTS_NAME and runs.ADAPTER_WEIGHTS == ADAPTER_WEIGHTS[0]


def test_gemini_trainer_writes_this_layout(toy_data, tmp_path):
    pytest.importorskip("torch")
    from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig
    from tests.core.train.conftest import TINY

    cfg = TrainConfig.from_dict({**TINY, "max_steps": 3, "val_every": 100, "num_threads": 1})
    out = tmp_path / "run"
    first = GeminiTrainer(cfg, toy_data, out, "cpu").run(stop_after=2)
    assert first["status"] == "stopped"
    assert run_state(GEMINI, out) == "run" and trained_model_path(GEMINI, out) == out / "last"
    GeminiTrainer(cfg, toy_data, out, "cpu").run(resume=True)
    assert run_state(GEMINI, out) == "finished"
    assert trained_model_path(GEMINI, out) == out / "best"
    assert [h["step"] for h in json.loads(history_path(out).read_text())] == [3]


def test_vama_training_writes_this_layout(tmp_path):
    torch = pytest.importorskip("torch")
    from gemini_cmr.core.errors import Cancelled
    from gemini_cmr.core.train.vama import TrainSettings, train_vama
    from tests.core.vama.conftest import write_folder, write_manifest

    source = write_folder(tmp_path / "source", "source", 4, seed=1)
    target = write_manifest(tmp_path / "target", "target", 4, seed=2)
    small = {"base_channels": 4, "depth": 2, "latent_channels": 4, "disc_channels": 8}
    quick = TrainSettings(epochs=1, max_steps=2, steps_per_epoch=2, batch_size=4, crop=24, device="cpu")
    out = tmp_path / "adapter"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(Cancelled):
            train_vama(source, target, out, settings=quick, model_cfg=small, cancel=lambda: True)
        assert run_state(VAMA, out) == "run"
        train_vama(source, target, out, settings=quick, model_cfg=small, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert run_state(VAMA, out) == "finished" and trained_model_path(VAMA, out) == out
    assert (out / runs.CHECKPOINTS_DIR / runs.CHECKPOINT_WEIGHTS).is_file()
    assert (out / runs.CHECKPOINTS_DIR / runs.CHECKPOINT_RNG).is_file()
