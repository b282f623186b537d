"""The first phase as a second input channel (`GeminiConfig.first_phase_context`): the model takes it on the
same acquired slices, training stacks carry it under the same augmentation, and the predictor feeds the
cine's first phase beside every phase (whole field, heart box, test-time mirrorings)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import DataError, ModelError
from gemini_cmr.core.models.gemini import TTA_FLIPS, GeminiConfig, GeminiGenerator
from gemini_cmr.core.train.data import Augment
from gemini_cmr.core.train.lr_data import (
    LRItems,
    StackAugment,
    drop_every_other,
    load_acdc_split,
    load_lr_split,
)
from gemini_cmr.core.train.semi import SemiConfig, SemiTrainer, measure_step_seconds
from tests.core.train.test_ablation_options import A2D, acdc3  # noqa: F401 (fixture)

CTX = {**A2D, "first_phase_context": True}


def _stack(seed: int, b: int = 2) -> torch.Tensor:
    """(b, 24, 16, 16): 4 acquired slices, each repeated on 5 SR slices, depth padding around."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, 24, 16, 16)
    x[:, 2:22] = torch.rand(b, 4, 16, 16, generator=g).repeat_interleave(5, 1)
    return x


def test_config_is_acquired_2d_only_and_saved():
    assert GeminiConfig().first_phase_context is False
    assert GeminiConfig.from_dict(CTX).to_dict()["first_phase_context"] is True
    with pytest.raises(ModelError, match="first_phase_context"):
        GeminiConfig(encoder="shared-2d", first_phase_context=True)
    g = GeminiGenerator(GeminiConfig(**CTX))
    assert g.inc[0].weight.shape[1] == 2  # the phase and the first phase
    assert GeminiGenerator(GeminiConfig(**A2D)).inc[0].weight.shape[1] == 1


def test_model_needs_and_uses_the_context():
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(**CTX)).eval()
    x, first, other = _stack(0), _stack(1, 1), _stack(2, 1)
    with pytest.raises(ValueError, match="context"):
        g(x)
    with torch.no_grad():
        img, logits = g(x, first)
        # one context stack serves every phase of the batch: the same as giving it to each
        img2, logits2 = g(x, first.expand(2, -1, -1, -1).contiguous())
        img3, logits3 = g(x, other)
    torch.testing.assert_close(logits, logits2)
    torch.testing.assert_close(img, img2)
    assert not torch.allclose(logits, logits3)  # the first phase changes the result
    # inference (labels without the SR logits) agrees with forward, with and without mirrorings
    with torch.no_grad():
        _, lab = g.infer(x, context=first)
        assert torch.equal(lab, logits.argmax(1).to(torch.uint8))
        _, lab_tta = g.infer(x, flips=TTA_FLIPS, context=first)
        _, logits_tta = g.forward_tta(x, TTA_FLIPS, first)
    assert torch.equal(lab_tta, logits_tta.argmax(1).to(torch.uint8))


def test_training_items_carry_the_first_phase_under_the_same_augmentation(acdc3, tmp_path):  # noqa: F811
    plain = LRItems(load_acdc_split(acdc3, "train", cache_dir=tmp_path), depth=24, multiple=8)
    ctx_samples = load_lr_split("acdc", acdc3, "train", cache_dir=tmp_path, context=True)
    assert all(s.context is not None for s in ctx_samples)
    assert len(list(tmp_path.glob("*.npz"))) == 4  # their own cache files beside the plain ones
    again = load_lr_split("acdc", acdc3, "train", cache_dir=tmp_path, context=True)  # from the cache
    np.testing.assert_array_equal(again[1].context, ctx_samples[1].context)
    items = LRItems(ctx_samples, depth=24, multiple=8)
    aug = Augment(crop=16, heart_centred=0.7, flip=True, gain=0.15, noise=0.0)
    # every spatial transform, blur and resolution loss; gamma and contrast (whose range is the stack's,
    # here both channels') identities, so that the phase channel is the plain item up to float rounding
    extra = StackAugment(p=1.0, rotate_deg=30, elastic_px=2.0, slice_shift_px=1.0, blur_px=1.5,
                         gamma=(1.0, 1.0), contrast=(1.0, 1.0))
    full = StackAugment(p=1.0, rotate_deg=30, elastic_px=2.0, slice_shift_px=1.0, blur_px=1.5)
    for i in range(len(items)):
        s = items.samples[items.items[i][0]]
        x1, lab1, slab1 = plain.get(i, np.random.default_rng(i), aug, extra=extra)
        x2, lab2, slab2 = items.get(i, np.random.default_rng(i), aug, extra=extra)
        assert x2.shape == (24, 2, 16, 16)
        np.testing.assert_allclose(x2[:, 0], x1, rtol=0, atol=1e-6)  # the phase channel: the plain item
        np.testing.assert_array_equal(lab2, lab1)
        np.testing.assert_array_equal(slab2, slab1)
        if s.phase == 0:  # the first phase's own sample: both channels the same, under any augmentation
            np.testing.assert_array_equal(x2[:, 1], x2[:, 0])
            xf = items.get(i, np.random.default_rng(i), aug, extra=full)[0]
            np.testing.assert_array_equal(xf[:, 1], xf[:, 0])
        else:
            assert np.abs(x2[:, 1] - x2[:, 0]).max() > 0.1
            assert ((x2[:, 1] != 0).any(axis=(1, 2)) == (x2[:, 0] != 0).any(axis=(1, 2))).all()
        removed = drop_every_other(x2, slab2, 0)  # the same slices leave both channels
        ref = drop_every_other(x1, slab1, 0)
        np.testing.assert_allclose(removed[0][:, 0], ref[0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(removed[1], ref[1])


def _cfg(tmp_path, **kw) -> SemiConfig:
    return SemiConfig.from_dict({"model": CTX, "omega_gan": 0.0, "crop": 16, "batch_size": 2, "epochs": 100,
                                 "max_steps": 3, "amp": "off", "num_threads": 1, "val_crop": 0, "lr": 3e-3,
                                 "seg_target": "acquired", "class_weights": [1, 1, 1, 1],
                                 "checkpoint_every": 1, "cache_dir": str(tmp_path / "cache"), **kw})


def test_trains_with_dropped_slices_and_predicts_with_the_cines_first_phase(acdc3, tmp_path):  # noqa: F811
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.predict import Predictor

    cfg = _cfg(tmp_path, drop_slices=1.0, model={**CTX, "tp_knots": 1, "seg_tp_knots": 1})
    summary = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu").run()
    assert summary["status"] == "done" and summary["step"] == 3
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["model"]["first_phase_context"] is True
    assert measure_step_seconds(cfg, "cpu") > 0
    p = Predictor.load(tmp_path / "run" / "last", device="cpu", precision="float32")
    study = load_acdc(acdc3 / "patient005")
    assert study.n_phases == 2
    base = p.predict(study, phases=[1])
    assert np.isfinite(base.sr_image).all()
    # the prediction of phase 1 changes with phase 0 (its context) and with nothing else of phase 0
    other = load_acdc(acdc3 / "patient005")
    other.image[0] = other.image[0][:, ::-1]
    changed = p.predict(other, phases=[1])
    assert not np.allclose(changed.sr_image, base.sr_image)
    # the model called directly with the first phase placed like the input gives the predictor's labels
    from gemini_cmr.core.geometry import place_on_sr_grid, sr_grid
    from gemini_cmr.core.predict import run_stacks

    sr = sr_grid(study.grid)
    placed = place_on_sr_grid(study.image[[1]], study.grid, sr)
    first = place_on_sr_grid(study.image[[0]], study.grid, sr)
    _, lab = run_stacks(p._inference_model(), placed, torch.device("cpu"), "float32", base.scale, context=first)
    np.testing.assert_array_equal(lab, base.sr_labels)
    with pytest.raises(ValueError, match="context"):
        run_stacks(p._inference_model(), placed, torch.device("cpu"), "float32", base.scale)
    # the heart box path (a whole-field pass with the context, then the box) and test-time mirrorings
    p.loaded.config["inference"] = {"roi_mm": 24.0}
    boxed = p.predict(study, phases=[0, 1], tta=True)
    assert boxed.roi is not None and np.isfinite(boxed.sr_image).all()


def test_a_context_teacher_needs_a_context_student(acdc3, tmp_path):  # noqa: F811
    SemiTrainer(_cfg(tmp_path, max_steps=1), f"acdc:{acdc3}", tmp_path / "teacher", device="cpu").run()
    cfg = _cfg(tmp_path, model=A2D, distill=str(tmp_path / "teacher" / "last"))
    with pytest.raises(DataError, match="first phase"):
        SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "student", device="cpu").run()
