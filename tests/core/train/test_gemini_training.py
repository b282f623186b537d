from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.models.blocks import channels_last_convs
from gemini_cmr.core.models.store import load_model
from gemini_cmr.core.predict import Predictor
from gemini_cmr.core.study import Study
from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig
from gemini_cmr.core.train.loop import StopFlag, read_state
from tests.core.train.conftest import TINY


def _cfg(**kw):
    return TrainConfig.from_dict({**TINY, **kw})


def test_loss_decreases(toy_data, tmp_path):
    events = []
    t = GeminiTrainer(_cfg(max_steps=24, epochs=10, val_every=100), toy_data, tmp_path / "run", "cpu",
                      events.append)
    summary = t.run()
    losses = [e["ce"] + e["mse"] for e in events if e["event"] == "step"]
    assert summary["status"] == "done" and len(losses) == 24
    assert np.mean(losses[-4:]) < 0.92 * np.mean(losses[:4])
    assert all("eta_s" in e and "loss" in e for e in events if e["event"] == "step")
    # a validation at the end, best and last checkpoints, config saved beside them
    assert any(e["event"] == "val" for e in events)
    for sub in ("best", "last"):
        assert (tmp_path / "run" / sub / "model.safetensors").exists()
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["training"]["seed"] == 0 and cfg["training"]["max_steps"] == 24


def test_checkpoint_round_trip_identical_outputs(toy_data, tmp_path):
    t = GeminiTrainer(_cfg(max_steps=3), toy_data, tmp_path / "run", "cpu")
    t.run()
    loaded = load_model(tmp_path / "run" / "last")
    x = torch.randn(1, 24, 32, 32)
    t.G.eval()
    channels_last_convs(t.G, on=False)  # trained in channels_last on the CPU; the saved copy's format
    with torch.no_grad():
        a, b = t.G(x), loaded.generator(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert loaded.config["training"]["seed"] == 0
    assert loaded.config["normalisation"]["percentile"] == 99.5


def test_resume_is_exact(toy_data, tmp_path):
    # 6 items per epoch... 3 train subjects x 4 phases = 12 items, batch 2 -> 6 steps per epoch
    straight = GeminiTrainer(_cfg(max_steps=9), toy_data, tmp_path / "a", "cpu").run()
    first = GeminiTrainer(_cfg(max_steps=9), toy_data, tmp_path / "b", "cpu").run(stop_after=4)
    assert first["status"] == "stopped" and first["step"] == 4
    _, meta = read_state(tmp_path / "b" / "last")
    assert meta["step"] == 4
    resumed = GeminiTrainer(_cfg(max_steps=9), toy_data, tmp_path / "b", "cpu").run(resume=True)
    assert resumed["step"] == 9
    assert resumed["weights_sha256"] == straight["weights_sha256"]


def test_interrupt_leaves_a_valid_checkpoint(toy_data, tmp_path):
    stop = StopFlag()
    seen = []

    def cb(e):
        seen.append(e["event"])
        if e["event"] == "step" and e["step"] == 2:
            stop.set()  # what the first Ctrl-C does

    s = GeminiTrainer(_cfg(max_steps=50), toy_data, tmp_path / "run", "cpu", cb, stop).run()
    assert s["status"] == "interrupted" and s["step"] == 2
    assert seen[-1] == "interrupted"
    load_model(tmp_path / "run" / "last")
    _, meta = read_state(tmp_path / "run" / "last")
    assert meta["step"] == 2


def test_bad_config_and_data(toy_data, tmp_path):
    with pytest.raises(DataError, match="unknown training config keys"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(DataError, match="seg_input"):
        TrainConfig(seg_input="logits")
    with pytest.raises(DataError, match="no manifest.json"):
        GeminiTrainer(_cfg(), tmp_path, tmp_path / "run", "cpu").run()
    with pytest.raises(DataError, match="no training state"):
        GeminiTrainer(_cfg(), toy_data, tmp_path / "fresh", "cpu").run(resume=True)


def test_cli_progress_json_and_predictor(toy_data, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "seg_input": "argmax"}))
    out = subprocess.run(
        [sys.executable, "-m", "gemini_cmr.cli.main", "train", "gemini", "--data", str(toy_data), "--out",
         str(tmp_path / "run"), "--config", str(cfg), "--max-steps", "2", "--device", "cpu", "--seed", "3",
         "--progress-json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    p = Predictor.load(tmp_path / "run" / "best", device="cpu")
    assert p.config["training"]["config"]["seg_input"] == "argmax"
    assert p.config["training"]["seed"] == 3
    rng = np.random.default_rng(0)
    study = Study(rng.random((2, 6, 32, 32), dtype=np.float32), np.diag([2.0, 2.0, 8.0, 1.0]))
    pred = p.predict(study)
    assert pred.sr_labels.shape == pred.sr_image.shape == (2, 24, 52, 52)
    bad = subprocess.run([sys.executable, "-m", "gemini_cmr.cli.main", "train", "gemini", "--data",
                          str(tmp_path / "none"), "--out", str(tmp_path / "r2")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "dataset folder not found" in bad.stderr


def test_soft_dice_loss_matches_closed_form():
    from gemini_cmr.core.train.gemini import soft_dice_loss

    labels = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    labels[0, :, :2, :2] = 1  # 8 voxels of class 1, none of classes 2 and 3
    perfect = torch.nn.functional.one_hot(labels, 4).permute(0, 4, 1, 2, 3).float() * 50.0
    mask = torch.ones(1, 2, 1, 1)
    # perfect logits: class 1 Dice ~1; absent classes (2, 3) score (0 + 1) / (0 + 1) = 1
    assert float(soft_dice_loss(perfect, labels, mask)) < 1e-3
    uniform = torch.zeros(1, 4, 2, 4, 4)  # p = 0.25 everywhere: class 1 Dice = (2*2 + 1) / (8 + 8 + 1)
    d1, d2 = (2 * 2 + 1) / (8 + 8 + 1), (0 + 1) / (8 + 1)
    assert float(soft_dice_loss(uniform, labels, mask)) == pytest.approx(1 - (d1 + 2 * d2) / 3, rel=1e-5)
    # masked-out slices do not count
    half = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert float(soft_dice_loss(uniform, labels, half)) == pytest.approx(
        1 - ((2 * 1 + 1) / (4 + 4 + 1) + 2 * (1 / (4 + 1))) / 3, rel=1e-5)


def test_init_from_a_saved_model_and_dice_weight(toy_data, tmp_path):
    GeminiTrainer(_cfg(max_steps=2), toy_data, tmp_path / "a", "cpu").run()
    src = load_model(tmp_path / "a" / "last")
    t = GeminiTrainer(_cfg(max_steps=1, init=str(tmp_path / "a" / "last"), dice_weight=1.0), toy_data,
                      tmp_path / "b", "cpu")
    t._prepare()
    for (name, p), q in zip(t.G.state_dict().items(), src.generator.state_dict().values()):
        assert torch.equal(p, q), name
    assert t.run()["status"] == "done"
    # a different architecture is refused with the model's config file named
    other = dict(TINY["model"], widths=[4, 8])
    with pytest.raises(DataError, match="init model architecture"):
        GeminiTrainer(_cfg(model=other, max_steps=1, init=str(tmp_path / "a" / "last")), toy_data,
                      tmp_path / "c", "cpu")._prepare()


def test_init_grows_a_linear_acquired2d_model_with_tp_knots(toy_data, tmp_path):
    """`init` from a linear acquired-2d model into the same model with `tp_knots`: every saved tensor is
    loaded, the new through-plane head starts at zero (same outputs as the saved model), and it trains."""
    a2d = dict(TINY["model"], encoder="acquired-2d", input_to_heads=True)
    GeminiTrainer(_cfg(model=a2d, max_steps=2), toy_data, tmp_path / "a", "cpu").run()
    src = load_model(tmp_path / "a" / "last").generator.eval()
    t = GeminiTrainer(_cfg(model=dict(a2d, tp_knots=2), max_steps=3, init=str(tmp_path / "a" / "last")),
                      toy_data, tmp_path / "b", "cpu")
    t._prepare()
    for name, p in src.state_dict().items():
        assert torch.equal(t.G.state_dict()[name], p), name
    assert not t.G.tp_head.weight.any() and not t.G.tp_head.bias.any()
    x = torch.zeros(1, 24, 32, 32)
    x[0, 4:20] = torch.rand(4, 1, 32, 32).repeat_interleave(4, 0)[:, 0]
    t.G.eval()
    with torch.no_grad():
        torch.testing.assert_close(t.G(x)[0], src(x)[0])
    assert t.run()["status"] == "done"
    assert t.G.tp_head.weight.abs().sum() > 0
    # the other way (or any other difference) is refused
    with pytest.raises(DataError, match="init model architecture"):
        GeminiTrainer(_cfg(model=a2d, max_steps=1, init=str(tmp_path / "b" / "last")), toy_data,
                      tmp_path / "c", "cpu")._prepare()
