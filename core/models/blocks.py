"""Building blocks of the U-Net family used by Gemini-GAN (spec section 3).

- `DoubleConv`: [3x3 conv, norm, ReLU] x 2 (bias-free convs, the norm carries the bias).
- `Down`: 2x2 max-pool, then `DoubleConv`.
- `Up`: 2x upsampling (bilinear or transposed conv), concatenation with the skip, `DoubleConv`.
- `ThroughPlaneMix`: residual (3, 1, 1) 3D conv over the slice axis, for the "shared-2d" encoder variant
  whose 2D features are computed slice by slice.

The norm (`NORMS`, `norm_layer`): "batch" = BatchNorm (running statistics at inference), "instance" =
InstanceNorm with affine weights (each image's own statistics per channel, nnU-Net's choice; the mixing
convs normalise each slice over its plane; `InstanceNorm`). Same parameter names (`weight`, `bias`);
instance norm has no running-statistics buffers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("batch", "instance")


class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm with affine weights that keeps its input's memory format (torch's returns NCHW from
    channels_last input, which costs every following channels_last convolution a layout conversion). 5D
    features (B, C, D, h, w) (the mixing convs') are normalised per slice: each (b, c, d) over its h x w
    plane, so a slice's statistics never depend on its neighbours or on the zero slices between stacks."""

    def __init__(self, channels: int):
        super().__init__(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            b, c, d, h, w = x.shape
            y = super().forward(x.transpose(1, 2).reshape(b * d, c, h, w))
            return y.reshape(b, d, c, h, w).transpose(1, 2)
        y = super().forward(x)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous(memory_format=torch.channels_last)
        return y


def norm_layer(kind: str, channels: int, planes: bool = False) -> nn.Module:
    """The norm after a convolution: "batch" -> BatchNorm2d (BatchNorm3d for `planes`, the 5D mixing-conv
    features), "instance" -> `InstanceNorm` (affine; per slice for `planes`)."""
    if kind == "batch":
        return nn.BatchNorm3d(channels) if planes else nn.BatchNorm2d(channels)
    if kind == "instance":
        return InstanceNorm(channels)
    raise ValueError(f"unknown norm {kind!r} (use one of {', '.join(NORMS)})")


class DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch"):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            norm_layer(norm, out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            norm_layer(norm, out_ch),
            nn.ReLU(inplace=True),
        )


def channels_last_convs(model: nn.Module, on: bool = True) -> nn.Module:
    """`model`'s 2D convolution weights in channels_last memory format (in place; returns `model`; `on`
    False: back to contiguous). On the CPU oneDNN's convolutions and their backward run faster on
    channels_last tensors, and a convolution whose weight is channels_last returns its output in that
    format, so the activations follow (benchmarks/bench_train_step.py)."""
    fmt = torch.channels_last if on else torch.contiguous_format
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.to(memory_format=fmt)
    return model


class Down(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch"):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch, norm))


class MaxPool2x2(nn.Module):
    """`nn.MaxPool2d(2)` for inference: the maximum of the four strided 2x2 phases (three elementwise
    maxima), the same values. On the CPU in channels_last bf16 about 2-3.5x faster than `max_pool2d`, which
    also computes the argmax indices (benchmarks/bench_acquired_eval.py). Odd sizes: `max_pool2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            return F.max_pool2d(x, 2)
        return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]),
                             torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2]))


class Up(nn.Module):
    """Upsample `x` by 2, concatenate the skip connection, double conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, mode: str = "bilinear", norm: str = "batch"):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.up = nn.ConvTranspose2d(in_ch, in_ch, 2, stride=2)
        elif mode != "bilinear":
            raise ValueError(f"unknown upsampling mode {mode!r}")
        self.conv = DoubleConv(in_ch + skip_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "transposed":
            x = self.up(x)
        else:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pad to the skip's size
            dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        if self.training and not x.is_contiguous(memory_format=torch.channels_last):
            return self.conv(torch.cat([skip, x], dim=1))
        # conv(cat([skip, x])) as conv(skip) + conv(x) with the weight split by input channels: the same sum
        # without the concatenated copy (a slow interleaving copy in channels_last on the CPU); in training (on
        # channels_last activations, `channels_last_convs`) the upsampling's backward also gets its gradient
        # straight from the convolution instead of a channel slice of the concatenation's, a slow layout
        # (benchmarks/bench_train_step.py).
        first = self.conv[0]
        cs = skip.shape[1]
        w = first.weight
        pad = first.padding
        y = F.conv2d(skip, w[:, :cs], first.bias, padding=pad) + F.conv2d(x, w[:, cs:], None, padding=pad)
        for layer in list(self.conv)[1:]:
            y = layer(y)
        return y


class ThroughPlaneMix(nn.Module):
    """Mix features along the slice axis: (B*D, C, h, w) -> same shape, via a residual (k, 1, 1) Conv3d."""

    def __init__(self, channels: int, depth: int, kernel: int = 3, norm: str = "batch"):
        super().__init__()
        self.depth = depth
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0), bias=False)
        self.norm = norm_layer(norm, channels, planes=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bd, c, h, w = x.shape
        b = bd // self.depth
        v = x.view(b, self.depth, c, h, w).permute(0, 2, 1, 3, 4)  # (B, C, D, h, w)
        v = v + F.relu(self.norm(self.conv(v)))
        return v.permute(0, 2, 1, 3, 4).reshape(bd, c, h, w)
