from __future__ import annotations

import pytest
import torch

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.models.discriminator import SRDiscriminator, discriminator_input
from gemini_cmr.core.models.gemini import REFERENCE_WIDTHS, GeminiConfig, GeminiGenerator, count_parameters


@pytest.mark.parametrize("encoder", ["slices-as-channels", "shared-2d"])
def test_generator_shapes(encoder):
    torch.manual_seed(0)
    cfg = GeminiConfig(depth=8, widths=(4, 8, 16), encoder=encoder)
    g = GeminiGenerator(cfg)
    x = torch.randn(2, 8, 32, 48)
    img, seg = g(x)
    assert img.shape == (2, 8, 32, 48)
    assert seg.shape == (2, 4, 8, 32, 48)
    with pytest.raises(ValueError):
        g(torch.randn(1, 8, 30, 32))  # not a multiple of 4
    with pytest.raises(ValueError):
        g(torch.randn(1, 7, 32, 32))  # wrong depth


@pytest.mark.parametrize("encoder", ["slices-as-channels", "shared-2d"])
def test_gradients_reach_both_decoders_and_the_shared_encoder(encoder):
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=4, widths=(4, 8, 8), encoder=encoder))
    x = torch.randn(2, 4, 16, 16)
    img, seg = g(x)
    # image loss only: the image decoder and the encoder get gradients, the seg decoder none
    img.pow(2).mean().backward(retain_graph=True)
    assert g.image_decoder.ups[-1].conv[0].weight.grad.abs().sum() > 0
    assert g.seg_decoder.ups[-1].conv[0].weight.grad is None
    assert g.inc[0].weight.grad.abs().sum() > 0
    g.zero_grad(set_to_none=True)
    seg.logsumexp(1).mean().backward()
    for mod in (g.seg_decoder.ups[0].conv[0], g.seg_head, g.inc[0], g.downs[-1][1][0]):
        assert mod.weight.grad is not None and mod.weight.grad.abs().sum() > 0


def test_skip_connections_feed_both_decoders():
    g = GeminiGenerator(GeminiConfig(depth=4, widths=(4, 8, 16)))
    # each Up block concatenates a skip from the shared encoder: input channels = upsampled + skip
    for dec in (g.image_decoder, g.seg_decoder):
        assert [u.conv[0].in_channels for u in dec.ups] == [16 + 8, 8 + 4]


def test_config_round_trip_and_validation():
    cfg = GeminiConfig(depth=16, widths=(8, 16, 32, 64, 64))
    assert GeminiConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.multiple == 16
    assert GeminiConfig.reference().widths == REFERENCE_WIDTHS
    with pytest.raises(ModelError, match="unknown model config keys"):
        GeminiConfig.from_dict({"depth": 4, "colour": 1})
    with pytest.raises(ModelError, match="unknown encoder"):
        GeminiConfig(encoder="3d")


def test_reference_widths_selectable():
    g = GeminiGenerator(GeminiConfig.reference())
    assert g.inc[0].out_channels == 64 and g.downs[-1][1][0].out_channels == 512
    assert count_parameters(g) > 10_000_000


def test_residual_image_head():
    g = GeminiGenerator(GeminiConfig(depth=4, widths=(4, 8), residual_image=True))
    torch.nn.init.zeros_(g.image_head.weight)
    torch.nn.init.zeros_(g.image_head.bias)
    x = torch.randn(1, 4, 8, 8)
    img, _ = g(x)
    assert torch.allclose(img, x)


def test_discriminator_matches_the_paper():
    d = SRDiscriminator(in_channels=4 * 5, base_width=64)
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.features) == 7
    assert isinstance(d.features[1], torch.nn.LeakyReLU) and d.features[1].negative_slope == 0.2
    heads = [m for m in d.head if isinstance(m, torch.nn.Conv2d)]
    assert [(h.in_channels, h.out_channels) for h in heads] == [(512, 1024), (1024, 1)]
    image = torch.randn(2, 4, 32, 32)
    seg = torch.softmax(torch.randn(2, 4, 4, 32, 32), 1)
    x = discriminator_input(image, seg)
    assert x.shape == (2, 20, 32, 32)
    assert d(x).shape == (2,)


@pytest.mark.parametrize("encoder", ["slices-as-channels", "shared-2d"])
def test_input_to_heads(encoder):
    g = GeminiGenerator(GeminiConfig(depth=4, widths=(4, 8), encoder=encoder, input_to_heads=True))
    per_slice = encoder == "shared-2d"
    assert g.image_head.in_channels == 4 + (1 if per_slice else 4)
    img, seg = g(torch.randn(2, 4, 16, 16))
    assert img.shape == (2, 4, 16, 16) and seg.shape == (2, 4, 4, 16, 16)
    seg.logsumexp(1).mean().backward()
    assert g.inc[0].weight.grad.abs().sum() > 0


def test_channels_last_training_split_convolution_matches_the_concatenation():
    """In training on channels_last activations, `Up` convolves the skip connection and the upsampled features
    separately (the weight split by input channels): the same outputs and gradients as the convolution of
    their concatenation, which NCHW training keeps; the model's weights only change memory format."""
    from gemini_cmr.core.models.blocks import Up, channels_last_convs

    torch.manual_seed(0)
    up = Up(8, 4, 4).train()
    x0, skip0 = torch.randn(3, 8, 6, 10), torch.randn(3, 4, 12, 20)
    outs, grads = [], []
    for channels_last in (False, True):
        channels_last_convs(up, channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = x0.clone(memory_format=fmt).requires_grad_()
        skip = skip0.clone(memory_format=fmt).requires_grad_()
        calls: list[int] = []
        hook = up.conv[0].register_forward_hook(lambda m, a, o, calls=calls: calls.append(a[0].shape[1]))
        y = up(x, skip)
        hook.remove()
        y.square().sum().backward()
        assert calls == ([12] if not channels_last else [])  # the concatenation's 12 channels, or split
        assert up.conv[0].weight.is_contiguous(memory_format=fmt)
        outs.append(y.detach())
        grads.append((x.grad, skip.grad, up.conv[0].weight.grad.clone()))
        up.zero_grad()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)  # float32 sums in another order
