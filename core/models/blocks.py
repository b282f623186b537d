"""Building blocks of the U-Net family used by Gemini-GAN (spec section 3).

- `DoubleConv`: [3x3 conv, BatchNorm, ReLU] x 2 (bias-free convs, BN carries the bias).
- `Down`: 2x2 max-pool, then `DoubleConv`.
- `Up`: 2x upsampling (bilinear or transposed conv), concatenation with the skip, `DoubleConv`.
- `ThroughPlaneMix`: residual (3, 1, 1) 3D conv over the slice axis, for the "shared-2d" encoder variant
  whose 2D features are computed slice by slice.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch))


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

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, mode: str = "bilinear"):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.up = nn.ConvTranspose2d(in_ch, in_ch, 2, stride=2)
        elif mode != "bilinear":
            raise ValueError(f"unknown upsampling mode {mode!r}")
        self.conv = DoubleConv(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "transposed":
            x = self.up(x)
        else:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pad to the skip's size
            dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        if self.training:
            return self.conv(torch.cat([skip, x], dim=1))
        # Inference: conv(cat([skip, x])) as conv(skip) + conv(x) with the weight split by input channels,
        # the same sum without the concatenated copy (a slow interleaving copy in channels_last on the CPU).
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

    def __init__(self, channels: int, depth: int, kernel: int = 3):
        super().__init__()
        self.depth = depth
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bd, c, h, w = x.shape
        b = bd // self.depth
        v = x.view(b, self.depth, c, h, w).permute(0, 2, 1, 3, 4)  # (B, C, D, h, w)
        v = v + F.relu(self.norm(self.conv(v)))
        return v.permute(0, 2, 1, 3, 4).reshape(bd, c, h, w)
