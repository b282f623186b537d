"""The SR discriminator D_SR of Gemini-GAN (spec section 3).

Eight 3x3 convs with widths w, w, 2w, 2w, 4w, 4w, 8w, 8w (w = 64 in the paper: 64..512), stride 2 on every
second conv, BatchNorm after every conv but the first, LeakyReLU 0.2; then global average pooling and two
1x1 convs 8w -> 16w -> 1 (512 -> 1024 -> 1 in the paper). The output is a raw score per sample (B,); the
least-squares GAN objective is applied by the training code.

Its input is the concatenation of the SR image (B, D, H, W) and the segmentation (B, K, D, H, W), flattened
to (B, D + K*D, H, W) -- softmax probabilities or the one-hot argmax (see `core.train.gemini`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class DiscriminatorConfig:
    base_width: int = 64  # 64 = the paper's 64-64-128-128-256-256-512-512
    seg_input: str = "softmax"  # "softmax" | "argmax": what the discriminator sees of the segmentation

    def to_dict(self) -> dict:
        return asdict(self)


class SRDiscriminator(nn.Module):
    def __init__(self, in_channels: int, base_width: int = 64):
        super().__init__()
        w = base_width
        widths = [w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w]
        layers: list[nn.Module] = []
        ch = in_channels
        for i, out in enumerate(widths):
            stride = 2 if i % 2 == 1 else 1
            layers.append(nn.Conv2d(ch, out, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(ch, 2 * ch, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ch, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()


def discriminator_input(image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) image + (B, K, D, H, W) segmentation maps -> (B, D + K*D, H, W)."""
    b = image.shape[0]
    return torch.cat([image, seg.reshape(b, -1, *seg.shape[-2:])], dim=1)
