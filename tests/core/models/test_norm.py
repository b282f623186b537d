"""The generator's normalisation choice (`GeminiConfig.norm`): batch norm keeps the shipped models as they
were; instance norm runs through inference, the inference copy, bf16 autocast and the model files."""

from __future__ import annotations

import json

import pytest
import torch

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.models.blocks import InstanceNorm
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.models.store import load_model, save_model, validate_config
from gemini_cmr.core.predict import inference_copy
from gemini_cmr.core.resources import resources_dir


def _stack(seed: int, b: int = 2, d: int = 64, h: int = 64, n: int = 8, per: int = 6) -> torch.Tensor:
    """b smooth random LR stacks of n slices, each repeated `per` times (nearest-slice placement), centred
    in depth d with zero padding."""
    g = torch.Generator().manual_seed(seed)
    lr = torch.nn.functional.avg_pool2d(torch.rand(b * n, 1, h + 6, h + 6, generator=g), 7, 1).view(b, n, h, h)
    x = torch.zeros(b, d, h, h)
    off = (d - n * per) // 2
    x[:, off:off + n * per] = lr.repeat_interleave(per, 1)
    return x


# Per-class mean of the segmentation logits and mean SR image of each bundled model on `_stack(0)` (eval,
# float32): the phantom models' measured before the norm option existed, the ACDC model's (204cfed8bb89,
# with through-plane residual images and scores) when it was exported.
BUNDLED_REFERENCE = {
    "gemini-acdc": ([5.71603, -0.98607, -2.44849, -3.21233], 0.377391),
    "gemini-phantom": ([7.82029, -3.16114, -1.90101, -2.98397], 0.367032),
    "gemini-phantom-sac": ([6.07955, -5.87817, -6.82861, -5.45793], 0.385145),
}


@pytest.mark.parametrize("name", sorted(BUNDLED_REFERENCE))
def test_bundled_models_keep_batch_norm_and_their_outputs(name):
    m = load_model(resources_dir() / "models" / name)
    g = m.generator
    assert g.config.norm == "batch" and m.config["model"].get("norm", "batch") == "batch"
    norms = [mod for mod in g.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm | torch.nn.InstanceNorm2d)]
    assert norms and all(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) for mod in norms)
    with torch.no_grad():
        img, seg = g(_stack(0))
    logit_means, img_mean = BUNDLED_REFERENCE[name]
    torch.testing.assert_close(seg.double().mean((0, 2, 3, 4)), torch.tensor(logit_means, dtype=torch.float64),
                               atol=2e-4, rtol=0)
    assert abs(float(img.double().mean()) - img_mean) < 2e-6
    # the same weights in a generator built with norm "batch" spelt out give the same outputs
    explicit = GeminiGenerator(GeminiConfig.from_dict({**m.config["model"], "norm": "batch"}))
    explicit.load_state_dict(g.state_dict())
    explicit.eval()
    with torch.no_grad():
        img2, seg2 = explicit(_stack(0))
    assert torch.equal(img, img2) and torch.equal(seg, seg2)


def test_norm_is_validated():
    assert GeminiConfig().norm == "batch"
    with pytest.raises(ModelError, match="norm"):
        GeminiConfig(norm="group")
    base = {"kind": "gemini-gan", "version": 1, "model": GeminiConfig(encoder="acquired-2d").to_dict()}
    validate_config(json.loads(json.dumps({**base, "model": {**base["model"], "norm": "instance"}})), "m.json")
    with pytest.raises(ModelError, match="model.norm must be a string"):
        validate_config({**base, "model": {**base["model"], "norm": 3}}, "m.json")
    with pytest.raises(ModelError, match="unknown norm"):
        validate_config({**base, "model": {**base["model"], "norm": "layer"}}, "m.json")


def test_instance_norm_module_keeps_the_memory_format_and_normalises_per_slice():
    torch.manual_seed(0)
    m = InstanceNorm(6)
    torch.nn.init.normal_(m.weight, 1.0, 0.3)
    torch.nn.init.normal_(m.bias, 0.0, 0.3)
    x = torch.randn(3, 6, 8, 8) * 4 + 2
    ref = torch.nn.functional.instance_norm(x, weight=m.weight, bias=m.bias, eps=m.eps)
    cl = m(x.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, ref)
    v = torch.randn(2, 6, 5, 8, 8)  # (B, C, D, h, w): each slice over its own plane
    out = m(v)
    for d in range(5):
        torch.testing.assert_close(out[:, :, d], torch.nn.functional.instance_norm(
            v[:, :, d], weight=m.weight, bias=m.bias, eps=m.eps))


def _instance_generator(encoder: str) -> GeminiGenerator:
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=32, widths=(8, 16, 16), encoder=encoder, norm="instance",
                                     input_to_heads=True))
    for mod in g.modules():  # affine weights away from the identity, so the norms matter
        if isinstance(mod, torch.nn.InstanceNorm2d):
            torch.nn.init.normal_(mod.weight, 1.0, 0.3)
            torch.nn.init.normal_(mod.bias, 0.0, 0.3)
    return g


@pytest.mark.parametrize("encoder", ["acquired-2d", "shared-2d", "slices-as-channels"])
def test_instance_norm_same_in_training_and_inference_paths(encoder):
    """No running statistics: train-mode and eval-mode outputs agree (so do the eval fast paths: the
    acquired-2d mixing convs on the acquired slices only, the shared-2d encoding of distinct slices); the
    inference copy keeps the instance norms (nothing to fold), in channels_last, also under bf16 autocast."""
    g = _instance_generator(encoder)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in g.modules())
    assert not any("running" in k or "num_batches" in k for k in g.state_dict())
    x = _stack(1, d=32, h=32, n=5, per=5)
    with torch.no_grad():
        img_t, seg_t = g.train()(x)
        img_e, seg_e = g.eval()(x)
        img_i, lab_i = g.infer(x)
        fast = inference_copy(g)
        img_f, lab_f = fast.infer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img_b, lab_b = fast.infer(x)
    torch.testing.assert_close(img_e, img_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seg_e, seg_t, atol=1e-5, rtol=1e-5)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in fast.modules()) == \
        sum(isinstance(m, torch.nn.InstanceNorm2d) for m in g.modules())
    assert fast.inc[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(img_f, img_i, atol=2e-5, rtol=1e-5)
    assert (lab_f != lab_i).float().mean() < 1e-3
    # bf16 rounding through an untrained network: the same size as a batch-norm one's (rms about 5% of the
    # image's spread, 2-3% of the labels on this input)
    rms = (img_b.float() - img_i).pow(2).mean().sqrt() / img_i.std()
    assert img_b.dtype == torch.float32 and rms < 0.1 and (lab_b != lab_i).float().mean() < 0.06


def test_instance_norm_does_not_mix_the_stacks_of_a_batch():
    """acquired-2d with instance norm: a stack's training-mode outputs do not depend on the other stacks
    in its batch (batch norm's do)."""
    g = _instance_generator("acquired-2d").train()
    x = _stack(2, b=2, d=32, h=32, n=5, per=5)
    with torch.no_grad():
        img_pair, seg_pair = g(x)
        img_one, seg_one = g(x[:1])
    torch.testing.assert_close(img_pair[:1], img_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seg_pair[:1], seg_one, atol=1e-5, rtol=1e-5)
    mix_norms = [m.norm for m in g.mix]
    assert all(isinstance(n, InstanceNorm) for n in mix_norms)


def test_instance_norm_model_files_round_trip(tmp_path):
    g = _instance_generator("acquired-2d").eval()
    save_model(tmp_path / "m", g, {"training": {"seed": 0}})
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model"]["norm"] == "instance"
    m = load_model(tmp_path / "m")
    assert m.generator.config.norm == "instance"
    x = _stack(3, d=32, h=32, n=5, per=5)
    with torch.no_grad():
        a, b = g.infer(x), m.generator.infer(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    save_model(tmp_path / "h", g, {}, half=True)  # float16 weights load back into the instance norms
    assert load_model(tmp_path / "h").generator.inc[1].weight.dtype == torch.float32
