"""The paper's learned comparison networks (Table 2), with the Gemini-GAN generator's interface.

Every network takes one phase of the LR stack placed on the SR grid, (B, D, H, W) with the D slices as
channels (exactly Gemini-GAN's input), and returns `(image (B, D, H, W), logits (B, K, D, H, W))`, so that
`core.train.gemini.GeminiTrainer` trains them and `core.predict.run_stacks` runs them unchanged. A network
trained for one task only still returns both outputs: the segmentation-only networks return the input stack
as their image (no super-resolution), the image-only networks return all-zero logits (everything
background); the benchmark reports those cells as "n/a".

- `unet-seg`, `unet-img`: a 2D U-Net (Gemini-GAN's encoder, `core.models.blocks`) with one decoder and one
  1x1 head: the paper's single-task U-Net baselines (no adversarial loss).
- `srgan-seg`, `srgan-img`: an SR-GAN ResNet generator (Ledig et al.): a 3x3 stride-2 entry conv + PReLU,
  `blocks` residual blocks [conv-BN-PReLU-conv-BN + skip], conv-BN + a long skip, then the upsampling block
  (conv to 4w channels, PixelShuffle x2, PReLU) back to the SR grid and a 1x1 head. Trained with the same
  LSGAN discriminator (`core.models.discriminator.SRDiscriminator`) as Gemini-GAN, seeing the one output.
- `segsr-gan`: the SegSR-GAN comparison of the paper: the same SR-GAN backbone whose upsampling block has
  two outputs (image + segmentation heads), trained jointly with a discriminator seeing both; as in the
  paper's comparison there is no pre-interpolation of the input and no patch-wise inference.
The image outputs are residual (added to the input stack), as in Gemini-GAN's default, so that every learned
method starts from the same place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.models.blocks import DoubleConv, Down, Up
from gemini_cmr.core.models.gemini import ModelConfigJSON

# method -> (backbone, tasks); tasks are what the network is trained for ("image", "seg")
ARCHS: dict[str, tuple[str, tuple[str, ...]]] = {
    "unet-seg": ("unet", ("seg",)),
    "unet-img": ("unet", ("image",)),
    "srgan-seg": ("resnet", ("seg",)),
    "srgan-img": ("resnet", ("image",)),
    "segsr-gan": ("resnet", ("image", "seg")),
}


@dataclass
class BaselineConfig(ModelConfigJSON):
    method: str = "unet-seg"
    depth: int = 64
    n_classes: int = 4
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)  # U-Net levels
    width: int = 32  # ResNet trunk channels
    blocks: int = 6  # ResNet residual blocks (SR-GAN: 16)

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if self.method not in ARCHS:
            raise ModelError(f"unknown baseline {self.method!r} (use one of {', '.join(ARCHS)})")
        if len(self.widths) < 2 or min(self.widths) < 1 or self.width < 1 or self.blocks < 0:
            raise ModelError("invalid baseline widths/blocks")
        if self.depth < 1 or self.n_classes < 2:
            raise ModelError(f"invalid depth {self.depth} or n_classes {self.n_classes}")

    @property
    def backbone(self) -> str:
        return ARCHS[self.method][0]

    @property
    def tasks(self) -> tuple[str, ...]:
        return ARCHS[self.method][1]

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.widths) - 1) if self.backbone == "unet" else 2



class _Residual(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.PReLU(w),
                                  nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class BaselineGenerator(nn.Module):
    def __init__(self, config: BaselineConfig | None = None):
        super().__init__()
        self.config = cfg = config or BaselineConfig()
        d, k = cfg.depth, cfg.n_classes
        if cfg.backbone == "unet":
            w = cfg.widths
            self.inc = DoubleConv(d, w[0])
            self.downs = nn.ModuleList([Down(a, b) for a, b in zip(w[:-1], w[1:])])
            ups, ch = [], w[-1]
            for skip in reversed(w[:-1]):
                ups.append(Up(ch, skip, skip))
                ch = skip
            self.ups = nn.ModuleList(ups)
            out_ch = w[0]
        else:
            w = cfg.width
            self.entry = nn.Sequential(nn.Conv2d(d, w, 3, stride=2, padding=1), nn.PReLU(w))
            self.res = nn.Sequential(*[_Residual(w) for _ in range(cfg.blocks)])
            self.mid = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
            self.upsample = nn.Sequential(nn.Conv2d(w, 4 * w, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(w))
            out_ch = w
        self.image_head = nn.Conv2d(out_ch, d, 1) if "image" in cfg.tasks else None
        self.seg_head = nn.Conv2d(out_ch, k * d, 1) if "seg" in cfg.tasks else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.backbone == "unet":
            feats = [self.inc(x)]
            for down in self.downs:
                feats.append(down(feats[-1]))
            f = feats[-1]
            for up, skip in zip(self.ups, reversed(feats[:-1])):
                f = up(f, skip)
            return f
        f = self.entry(x)
        f = f + self.mid(self.res(f))
        return self.upsample(f)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        b, d, h, w = x.shape
        if d != cfg.depth:
            raise ValueError(f"input depth {d} != network depth {cfg.depth}")
        if h % cfg.multiple or w % cfg.multiple:
            raise ValueError(f"in-plane size {h}x{w} must be a multiple of {cfg.multiple}")
        f = self.features(x)
        img = x + self.image_head(f) if self.image_head is not None else x
        if self.seg_head is not None:
            seg = self.seg_head(f).view(b, cfg.n_classes, d, h, w)
        else:
            seg = x.new_zeros((b, cfg.n_classes, d, h, w))
        return img, seg


__all__ = ["ARCHS", "BaselineConfig", "BaselineGenerator"]
