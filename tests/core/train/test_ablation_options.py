"""Recipe options for the ablations of the ACDC recipe: deep supervision of the segmentation decoder
(`SemiConfig.deep_supervision`, training only) and instance norm (`model.norm`), each in a few real steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.models.store import load_model, load_tensors
from gemini_cmr.core.train.deep_supervision import DeepSupervisionHeads, level_weights
from gemini_cmr.core.train.lr_data import IGNORE, SET_BASE, LRItems, load_acdc_split
from gemini_cmr.core.train.semi import SemiConfig, SemiTrainer, acquired_losses, downsample_labels, seg_losses
from tests.core.train.test_lr_labels import _acdc_patient

A2D = {"depth": 24, "widths": [4, 8, 8, 8], "encoder": "acquired-2d", "input_to_heads": True}


@pytest.fixture(scope="module")
def acdc3(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc-abl") / "training"
    for n, seed in ((1, 0), (2, 1), (5, 2)):
        _acdc_patient(root, n, seed)
    return root


def _cfg(tmp_path, **kw) -> SemiConfig:
    return SemiConfig.from_dict({"model": A2D, "omega_gan": 0.0, "crop": 16, "batch_size": 2, "epochs": 100,
                                 "max_steps": 3, "amp": "off", "num_threads": 1, "val_crop": 0, "lr": 3e-3,
                                 "seg_target": "acquired", "class_weights": [1, 1, 1, 1],
                                 "checkpoint_every": 1, "cache_dir": str(tmp_path / "cache"), **kw})


def test_level_weights_halve_and_sum_to_one():
    assert level_weights(0) == [1.0]
    np.testing.assert_allclose(level_weights(2), [4 / 7, 2 / 7, 1 / 7])


def test_downsampled_labels_are_the_union_of_each_block():
    k = 4
    set_bg_rv = SET_BASE + 0b1001  # a slice annotating the LV only: background or RV
    lab = torch.tensor([[[1, 1, 2, 1, 0, 0, 3, IGNORE],
                         [1, 1, 1, 1, 0, 0, 3, 3],
                         [set_bg_rv, set_bg_rv, set_bg_rv, 1, 2, 2, 0, 3],
                         [set_bg_rv, set_bg_rv, set_bg_rv, set_bg_rv, 2, 2, 1, 2]]])
    got = downsample_labels(lab, 2, k)
    assert got.dtype == lab.dtype and got.shape == (1, 2, 4)
    assert got[0, 0].tolist() == [1, SET_BASE + 0b0110, 0, IGNORE]  # exact, LV or myo, exact, unlabelled
    assert got[0, 1].tolist() == [set_bg_rv, SET_BASE + 0b1011, 2, IGNORE]  # every class -> IGNORE
    assert downsample_labels(lab, 4, k).tolist() == [[[IGNORE, IGNORE]]]
    assert torch.equal(downsample_labels(lab, 1, k), lab)
    # the coarse codes mean what the block's pixels allow: the loss of a prediction that puts each block's
    # probability on one of its pixels' classes is zero cross-entropy on the exact and set pixels
    q = torch.zeros(1, k, 2, 4)
    q[0, 1, 0, 0] = q[0, 1, 0, 1] = q[0, 0, 0, 2] = q[0, 0, 1, 0] = q[0, 1, 1, 1] = q[0, 2, 1, 2] = 1.0
    q[0, 0, 0, 3] = q[0, 0, 1, 3] = 1.0
    ce, _ = seg_losses(q, got, torch.ones(k))
    assert float(ce) < 1e-5


def _batch(root, n: int = 2):
    items = LRItems(load_acdc_split(root, "train"), depth=24, multiple=8)
    batch = [items.get(i, None, None, crop=16) for i in range(n)]
    return (torch.from_numpy(np.stack(v)) for v in zip(*batch))


def test_deep_supervision_losses_weight_the_coarser_levels(acdc3):
    torch.manual_seed(0)
    x, lab, slab = _batch(acdc3)
    g = GeminiGenerator(GeminiConfig(**A2D))
    heads = DeepSupervisionHeads(g.config.widths, 4, 2)
    w = torch.ones(4)
    plain = acquired_losses(g, x, lab, slab, w, seg_target="acquired")
    deep = acquired_losses(g, x, lab, slab, w, seg_target="acquired", aux_heads=heads)
    torch.testing.assert_close(deep["q"], plain["q"])  # the generator's outputs are untouched
    torch.testing.assert_close(deep["degrade"], plain["degrade"])
    (ce0, d0), (ce1, d1), (ce2, d2) = deep["levels"]
    torch.testing.assert_close(ce0, plain["ce"])
    torch.testing.assert_close(d0, plain["dice"])
    torch.testing.assert_close(deep["ce"], (4 * ce0 + 2 * ce1 + ce2) / 7)
    torch.testing.assert_close(deep["dice"], (4 * d0 + 2 * d1 + d2) / 7)
    levels: list[torch.Tensor] = []
    g.acquired_parts(x, levels)
    assert [tuple(t.shape[1:]) for t in levels] == [(8, 4, 4), (8, 8, 8)]  # 1/4 then 1/2 of the 16 px crop
    (deep["ce"] + deep["dice"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    with pytest.raises(DataError, match="deep_supervision 3"):
        DeepSupervisionHeads(g.config.widths, 4, 3)


def test_deep_supervision_trains_resumes_and_exports_the_generator_alone(acdc3, tmp_path):
    """A few real steps with deep supervision: the heads train and are checkpointed (exact resume), every
    model folder holds exactly the generator's tensors, and the exported model infers as the trainer's
    generator does."""
    cfg = _cfg(tmp_path, deep_supervision=2)
    t = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu")
    summary = t.run()
    assert summary["status"] == "done" and summary["step"] == 3
    expected = set(GeminiGenerator(GeminiConfig(**A2D)).state_dict())
    for folder in ("last", "best"):
        assert set(load_tensors(tmp_path / "run" / folder / "model.safetensors")) == expected
    state = load_tensors(tmp_path / "run" / "last" / "state.safetensors")
    assert {k for k in state if k.startswith("A.")} == {"A.heads.0.weight", "A.heads.0.bias",
                                                          "A.heads.1.weight", "A.heads.1.bias"}
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["training"]["config"]["deep_supervision"] == 2
    m = load_model(tmp_path / "run" / "last")
    x, _, _ = _batch(acdc3, 1)
    t.G.eval()
    with torch.no_grad():
        a, b = t.G.infer(x), m.generator.infer(x)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    # stopped after 2 steps and resumed: the same weights as the uninterrupted run
    part = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run2", device="cpu").run(stop_after=2)
    assert part["status"] == "stopped"
    resumed = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run2", device="cpu").run(resume=True)
    assert resumed["weights_sha256"] == summary["weights_sha256"]
    # the checkpoint and the config must agree on deep supervision
    with pytest.raises(DataError, match="with deep supervision"):
        SemiTrainer(_cfg(tmp_path), f"acdc:{acdc3}", tmp_path / "run2", device="cpu").run(resume=True)
    with pytest.raises(DataError, match="deep_supervision must be"):
        _cfg(tmp_path, deep_supervision=-1)


def test_instance_norm_recipe_trains_and_predicts(acdc3, tmp_path):
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.predict import Predictor

    cfg = _cfg(tmp_path, model={**A2D, "norm": "instance"})
    summary = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu").run()
    assert summary["status"] == "done" and summary["step"] == 3
    p = Predictor.load(tmp_path / "run" / "last", device="cpu", precision="bfloat16")
    assert p.config["model"]["norm"] == "instance"
    pred = p.predict(load_acdc(acdc3 / "patient005"), phases=[0])
    assert pred.sr_labels.shape[0] == 1 and np.isfinite(pred.sr_image).all()
