"""Gemini-GAN generator (spec section 3): a shared U-Net encoder and two identical decoders.

Input: one phase of the LR stack placed on the SR grid (nearest-slice placement), shape (B, D, H, W), with
D the network depth (slices as channels) and H, W multiples of 2**(len(widths) - 1) (16 for 5 widths).
Outputs: the SR image (B, D, H, W) and segmentation logits (B, K, D, H, W).

Two encoder variants (config `encoder`):
- "slices-as-channels" (the paper): a 2D U-Net whose input channels are the D slices.
- "shared-2d": the same 2D encoder weights applied to every slice (input (B*D, 1, H, W)); the skip
  connections and the bottleneck are mixed through-plane by residual (3, 1, 1) 3D convs before they feed
  the decoders, which also run slice by slice and output 1 image channel and K logits per slice.
With `residual_image` (default True) the image head predicts a correction added to the input stack.
With `input_to_heads` the 1x1 heads also see the input stack itself (concatenated to the decoder features),
so a narrow full-resolution decoder (16 channels for 64 slices) can still mix the acquired slices
through-plane per pixel; off by default (the paper's heads), on for the bundled CPU model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from core.errors import ModelError
from core.models.blocks import DoubleConv, Down, ThroughPlaneMix, Up

ENCODERS = ("slices-as-channels", "shared-2d")
REFERENCE_WIDTHS = (64, 128, 256, 512, 512)


@dataclass
class GeminiConfig:
    """Architecture of the generator. `widths` has one entry per resolution level (len - 1 poolings)."""

    depth: int = 64
    n_classes: int = 4
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    encoder: str = "slices-as-channels"
    upsample: str = "bilinear"
    residual_image: bool = True
    input_to_heads: bool = False  # concatenate the input stack to the decoder features fed to the 1x1 heads
    mix_kernel: int = 3  # shared-2d only: through-plane kernel of the mixing convs

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if self.encoder not in ENCODERS:
            raise ModelError(f"unknown encoder {self.encoder!r} (use one of {', '.join(ENCODERS)})")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ModelError(f"widths must list at least 2 positive sizes, got {list(self.widths)}")
        if self.depth < 1 or self.n_classes < 2:
            raise ModelError(f"invalid depth {self.depth} or n_classes {self.n_classes}")
        if self.upsample not in ("bilinear", "transposed"):
            raise ModelError(f"unknown upsample {self.upsample!r}")

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    @classmethod
    def reference(cls, **kw) -> GeminiConfig:
        """The paper's widths 64-128-256-512-512."""
        return cls(widths=REFERENCE_WIDTHS, **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeminiConfig:
        if not isinstance(d, dict):
            raise ModelError("model config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"unknown model config keys: {', '.join(unknown)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"invalid model config: {exc}") from None


class _Decoder(nn.Module):
    def __init__(self, widths: tuple[int, ...], upsample: str):
        super().__init__()
        ups = []
        ch = widths[-1]
        for skip in reversed(widths[:-1]):
            ups.append(Up(ch, skip, skip, upsample))
            ch = skip
        self.ups = nn.ModuleList(ups)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
        return x


class GeminiGenerator(nn.Module):
    """G: shared encoder -> (image decoder, segmentation decoder) -> 1x1 heads."""

    def __init__(self, config: GeminiConfig | None = None):
        super().__init__()
        self.config = cfg = config or GeminiConfig()
        w = cfg.widths
        per_slice = cfg.encoder == "shared-2d"
        in_ch = 1 if per_slice else cfg.depth
        self.inc = DoubleConv(in_ch, w[0])
        self.downs = nn.ModuleList([Down(a, b) for a, b in zip(w[:-1], w[1:])])
        self.mix = nn.ModuleList([ThroughPlaneMix(c, cfg.depth, cfg.mix_kernel) for c in w]) if per_slice else None
        self.image_decoder = _Decoder(w, cfg.upsample)
        self.seg_decoder = _Decoder(w, cfg.upsample)
        head_in = w[0] + (in_ch if cfg.input_to_heads else 0)
        self.image_head = nn.Conv2d(head_in, 1 if per_slice else cfg.depth, 1)
        self.seg_head = nn.Conv2d(head_in, cfg.n_classes * (1 if per_slice else cfg.depth), 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        if self.mix is not None:
            feats = [m(f) for m, f in zip(self.mix, feats)]
        return feats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        b, d, h, w = x.shape
        if d != cfg.depth:
            raise ValueError(f"input depth {d} != network depth {cfg.depth}")
        m = cfg.multiple
        if h % m or w % m:
            raise ValueError(f"in-plane size {h}x{w} must be a multiple of {m}")
        inp = x.reshape(b * d, 1, h, w) if cfg.encoder == "shared-2d" else x
        feats = self.encode(inp)
        fi, fs = self.image_decoder(feats), self.seg_decoder(feats)
        if cfg.input_to_heads:
            fi, fs = torch.cat([fi, inp], 1), torch.cat([fs, inp], 1)
        img = self.image_head(fi)
        seg = self.seg_head(fs)
        if cfg.encoder == "shared-2d":
            img = img.view(b, d, h, w)
            seg = seg.view(b, d, cfg.n_classes, h, w).permute(0, 2, 1, 3, 4)
        else:
            seg = seg.view(b, cfg.n_classes, d, h, w)
        if cfg.residual_image:
            img = img + x
        return img, seg


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ENCODERS", "REFERENCE_WIDTHS", "GeminiConfig", "GeminiGenerator", "count_parameters"]
