"""Deep supervision of the segmentation decoder in LR-label training (`SemiConfig.deep_supervision`).

With N levels (nnU-Net's deep supervision), 1x1 heads on the N coarser levels of the "acquired-2d"
generator's segmentation decoder (1/2, 1/4, ... of the crop; at most `len(widths) - 2`) give K logits per
acquired slice each. Each level is scored as the full-resolution logits are (`core.train.semi.seg_losses`:
class-weighted cross-entropy + soft Dice) against the acquired slices' labels reduced to its size
(`core.train.semi.downsample_labels`: the union of the classes each block may be), and the terms are
weighted 1, 1/2, 1/4, ... from full resolution down, normalised to sum 1 (`level_weights`). The validation
figures are the full-resolution ones.

The heads belong to the trainer, not to the generator: they are optimised and checkpointed with it
(`last/state.safetensors`, tensors prefixed "A.": `GeminiTrainer.aux`), while every model folder written (`last/`, `best/`,
exports) holds the generator alone, so the exported weights and the inference cost are those of the same
architecture trained without deep supervision.
"""

from __future__ import annotations

import torch
from torch import nn

from gemini_cmr.core.errors import DataError


def max_levels(widths) -> int:
    """Coarser decoder levels available for deep supervision (every decoder output but the last)."""
    return max(0, len(widths) - 2)


def level_weights(levels: int) -> list[float]:
    """Loss weights of full resolution and the `levels` coarser levels: 1, 1/2, 1/4, ... normalised to sum 1."""
    w = [0.5 ** i for i in range(levels + 1)]
    total = sum(w)
    return [v / total for v in w]


class DeepSupervisionHeads(nn.Module):
    """1x1 segmentation heads on the `levels` coarser levels of a generator's segmentation decoder:
    head l - 1 reads level l (widths[l] channels at 1/2**l of the input size), l = 1..levels."""

    def __init__(self, widths, n_classes: int, levels: int):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not 1 <= levels <= max_levels(widths):
            raise DataError(f"deep_supervision {levels}: 1 to {max_levels(widths)} levels for widths "
                            f"{list(widths)} (0 = off)")
        self.levels = levels
        self.heads = nn.ModuleList([nn.Conv2d(widths[i], n_classes, 1) for i in range(1, levels + 1)])

    def forward(self, seg_levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder levels, coarsest first (`GeminiGenerator.acquired_parts(x, seg_levels)`) -> logits of
        levels 1/2, 1/4, ... (finest first)."""
        return [head(seg_levels[-i]) for i, head in enumerate(self.heads, start=1)]


__all__ = ["DeepSupervisionHeads", "level_weights", "max_levels"]
