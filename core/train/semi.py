"""Semi-supervised Gemini-GAN training on cohorts with LR labels only (docs/real-data.md).

No HR image or HR labels exist for these subjects, so the generator is trained through the acquisition:
- segmentation: the SR segmentation probabilities are averaged over the SR slices that make up each
  acquired slice (a box slice profile, the same model as nearest-slice placement), and compared with the
  manual LR labels by class-weighted cross-entropy + soft Dice (LV cavity, myocardium, RV cavity);
- image: degradation consistency: the SR image averaged over each acquired slice's SR slices must
  reproduce the acquired (input) slice (MSE), so the SR stack is an LR-consistent refinement of the
  interpolation the "acquired-2d" generator starts from.
No discriminator (no real HR images to show it). Everything else (checkpoints, resume, progress events,
bf16 autocast, cosine schedule, seeded augmentation) is `core.train.gemini.GeminiTrainer`'s.

Partial labels (`core.train.lr_data`: structures a subject, phase or slice does not annotate): the
cross-entropy takes the summed probability of the classes a voxel may be (background + the unannotated
structures: a marginal loss), and a structure's soft Dice counts only voxels where it is known, so a missing
structure is never taught as background; slices without labels are ignored.

Fine-tuning on a user's cohort (`holdout`, `init`; docs/real-data.md "Fine-tuning on your own studies"):
`finetune_config` scales the real-data recipe to the cohort, the held-out subjects are validated for the
curves but never choose the checkpoint (the model is the last step), and `finish_finetune` compares the
starting model with the fine-tuned one on them through the whole pipeline and writes `RUN/model/` (weights,
config with the recipe, data summary and figures, `MODEL_CARD.md`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gemini_cmr.core.device import autocast, autocast_dtype
from gemini_cmr.core.errors import DataError
from gemini_cmr.core.models.gemini import (
    GeminiConfig,
    GeminiGenerator,
    interpolate_acquired,
    interpolate_rows,
)
from gemini_cmr.core.train.data import Augment
from gemini_cmr.core.train.deep_supervision import DeepSupervisionHeads, level_weights
from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig, resolve_class_weights
from gemini_cmr.core.train.loop import init_distributed
from gemini_cmr.core.train.lr_data import (
    IGNORE,
    SET_BASE,
    LRItems,
    StackAugment,
    class_frequencies,
    drop_every_other,
    load_lr_split,
    parse_fold,
    parse_source,
)

log = logging.getLogger(__name__)


@dataclass
class SemiConfig(TrainConfig):
    lambda_dice: float = 1.0  # soft Dice on the slab-averaged probabilities
    lambda_degrade: float = 1.0  # degradation consistency of the SR image
    val_crop: int = 160  # validation: heart-centred crop (SR in-plane pixels); 0 = whole field of view
    # "acquired-2d" only: what the LR labels are compared with. "slab": the SR segmentation averaged over
    # each acquired slice's SR slices (the slice-profile model); "acquired": each acquired slice's own
    # logits (what a per-slice 2D U-Net is trained on; the SR slices in between are interpolated).
    seg_target: str = "slab"
    # Cross-validation: "k/n" holds fold k out (validation) and trains on the others (`lr_data.fold_of`);
    # "all" = every subject trains (a recipe's final model); "" = the source's own train/val split.
    fold: str = ""
    # Train on a box of this size (mm) around each study's labels, normalised by the box's own intensity
    # percentile, as the predictor runs a model whose config asks for `inference.roi_mm`; 0 = whole FOV.
    roi_mm: float = 0.0
    # Spatial and intensity augmentation of the stacks (`lr_data.StackAugment` keys; {} = off).
    augment: dict = field(default_factory=dict)
    # Held-out subject ids: they validate (the curves) and never choose the checkpoint (the model is the
    # last step); after training `finish_finetune` compares models on them. [] = the source's split / fold.
    holdout: list = field(default_factory=list)
    # Keep the BatchNorm statistics of the starting model (its BN layers in eval mode while training): a
    # small cohort's batches estimate them poorly. The BN weights and biases still train.
    freeze_bn: bool = False
    # Deep supervision ("acquired-2d"): 1x1 segmentation heads on this many coarser levels of the
    # segmentation decoder (1/2, 1/4, ...), their losses weighted 1/2, 1/4, ... of full resolution's and
    # the whole normalised to sum 1; training only, the exported model is the generator alone
    # (`core.train.deep_supervision`). 0 = off.
    deep_supervision: int = 0
    # Dropped-slice self-supervision ("acquired-2d"): this fraction of the training stacks loses every
    # other acquired slice (twice the slice spacing, `lr_data.drop_every_other`); the SR slices at the
    # centres of the removed slices are compared with those slices' own labels (CE + soft Dice, weight
    # `lambda_drop`) and image (MSE, weight `lambda_drop_image`): through-plane shape and detail taught by
    # real anatomy between acquired slices. 0 = off.
    drop_slices: float = 0.0
    lambda_drop: float = 1.0
    lambda_drop_image: float = 1.0
    # Distillation ("acquired-2d"): a saved model (its folder; "{fold}" as in `init`) whose class scores on
    # every acquired slice, labelled or not, the trained model also learns: KL divergence of the two
    # softmaxes at temperature `distill_temperature` (times its square), weight `lambda_distill`. The
    # teacher runs in eval mode on the same augmented stacks; it must share depth and classes. "" = off.
    distill: str = ""
    lambda_distill: float = 1.0
    distill_temperature: float = 1.0
    # "acquired-2d": cross-entropy weight of the labelled acquired slices just beyond each structure's
    # extent in the stack (`beyond_end_rows`: absent there, present in the neighbour), against 1 elsewhere:
    # the basal and apical decisions (a slice that must not hold the structure, e.g. the RV in the basal
    # slice at end-systole) weigh more than their share of the voxels. 1 = off.
    end_slice_weight: float = 1.0
    # Only the generator's parameters whose names start with one of these prefixes train (e.g. ["tp_head",
    # "seg_tp_head", "seg_tp_deep"]: the through-plane residual heads); every other parameter keeps the
    # starting model's value and every BatchNorm layer outside them keeps its statistics (eval mode), so the
    # acquired slices' outputs stay exactly the starting model's. [] = everything trains.
    train_only: list = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        if not float(self.end_slice_weight) > 0:
            raise DataError(f"end_slice_weight must be > 0, not {self.end_slice_weight!r}")
        if float(self.lambda_distill) < 0 or not float(self.distill_temperature) > 0:
            raise DataError(f"lambda_distill must be >= 0 and distill_temperature > 0, not "
                            f"{self.lambda_distill!r} and {self.distill_temperature!r}")
        if not 0.0 <= float(self.drop_slices) <= 1.0:
            raise DataError(f"drop_slices must be a fraction in [0, 1], not {self.drop_slices!r}")
        if not (isinstance(self.deep_supervision, int) and not isinstance(self.deep_supervision, bool)
                and self.deep_supervision >= 0):
            raise DataError(f"deep_supervision must be a number of levels >= 0, not {self.deep_supervision!r}")


def freeze_except(model: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Module]:
    """With `prefixes` (SemiConfig.train_only), freeze every parameter of `model` whose name starts with none
    of them; returns the BatchNorm modules outside them (to be kept in eval mode while training, so that their
    running statistics stay the starting model's). A prefix that names no parameter is a DataError. [] = no
    change, no modules."""
    if not prefixes:
        return []
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n == p or n.startswith(p + ".") for n in names)]
    if unknown:
        raise DataError(f"train_only names no parameter of the model: {', '.join(unknown)} (top-level modules: "
                        f"{', '.join(sorted({n.split('.')[0] for n in names}))})")

    def trained(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    for n, p in model.named_parameters():
        p.requires_grad_(trained(n))
    return [m for n, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not trained(n)]


def allowed_classes(lab: torch.Tensor, k: int) -> torch.Tensor:
    """(N, ...) label codes (`core.train.lr_data`: 0..K-1 exact, SET_BASE + mask, IGNORE) -> (N, K, ...)
    bool: the classes each voxel may be (IGNORE: every class)."""
    one = torch.ones_like(lab)
    code = torch.where(lab < k, torch.bitwise_left_shift(one, lab.clamp(max=k - 1)),
                       torch.where(lab == IGNORE, one * ((1 << k) - 1), lab - SET_BASE))
    bits = torch.arange(k, device=lab.device).view(1, k, *([1] * (lab.dim() - 1)))
    return (torch.bitwise_right_shift(code.unsqueeze(1), bits) & 1).bool()


def downsample_labels(lab: torch.Tensor, factor: int, k: int) -> torch.Tensor:
    """(N, h, w) label codes (`core.train.lr_data`: 0..K-1 exact, SET_BASE + class mask, IGNORE) ->
    (N, h // factor, w // factor) codes, for deep supervision (`core.train.deep_supervision`): each coarse
    pixel may be any class one of its factor x factor pixels may be (the union of their `allowed_classes`,
    a max-pool of the class masks). One class: that class, exact; every class: IGNORE (an unlabelled pixel
    leaves its block unlabelled); otherwise the set code, a partial label to the loss (marginal
    cross-entropy, not counted in those structures' Dice), so a boundary block teaches none of its
    classes as another."""
    if factor == 1:
        return lab
    if k > 7:
        raise DataError(f"label codes hold at most 7 classes, not {k}")
    pooled = F.max_pool2d(allowed_classes(lab, k).to(torch.float32), factor, factor) > 0  # (N, K, h', w')
    bits = torch.bitwise_left_shift(torch.ones(k, dtype=torch.long, device=lab.device),
                                    torch.arange(k, device=lab.device)).view(1, k, 1, 1)
    mask = (pooled.long() * bits).sum(1)  # (N, h', w')
    coded = torch.where((mask & (mask - 1)) == 0, pooled.to(torch.uint8).argmax(1), SET_BASE + mask)
    return torch.where(mask == (1 << k) - 1, torch.full_like(coded, IGNORE), coded).to(lab.dtype)


def annotated_classes(lab: torch.Tensor, k: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(K,) bool: the classes annotated somewhere in coded labels `lab` (N, ...): a voxel labelled with the
    class, an exact background voxel (a slice that annotates every structure it may hold), or a set code
    that excludes the class. A structure known only to be absent from other structures' voxels is not
    annotated (its Dice there would measure nothing)."""
    allowed = allowed_classes(lab, k) if allowed is None else allowed
    dims = (0, *range(2, allowed.dim()))
    present = torch.stack([(lab == c).any() for c in range(k)])
    coded_set = ((lab >= SET_BASE) & (lab != IGNORE)).unsqueeze(1)
    excluded = (coded_set & ~allowed).sum(dims) > 0
    return present | excluded | (lab == 0).any()


def seg_losses(q: torch.Tensor, lab: torch.Tensor, class_weights: torch.Tensor,
               row_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, 1 - soft Dice) of probabilities q (N, K, ...) against coded labels lab (N, ...).
    CE: -log of the summed probability of the voxel's allowed classes, weighted by its class (background's
    weight for a set) and by its row's `row_weights` (N,) when given, IGNORE excluded; with exact labels
    only and no row weights it is `F.nll_loss(log q, lab, weight, ignore_index=IGNORE)`. Dice of each
    structure over the voxels where it is known (exact labels, and sets that exclude it), averaged over the
    structures annotated somewhere in the batch (`annotated_classes`)."""
    k = q.shape[1]
    exact = lab < k
    valid = lab != IGNORE
    allowed = allowed_classes(lab, k)
    p = (q * allowed).sum(1)
    w = torch.where(exact, class_weights[lab.clamp(max=k - 1)], class_weights[0]) * valid
    if row_weights is not None:
        w = w * row_weights.reshape(-1, *([1] * (lab.dim() - 1)))
    ce = -(w * torch.log(p.clamp_min(1e-6))).sum() / w.sum().clamp_min(1e-12)
    onehot = (allowed & exact.unsqueeze(1)).float()
    known = (exact.unsqueeze(1) | ~allowed).float()
    qm = q * known
    dims = (0, *range(2, q.dim()))
    inter = (qm * onehot).sum(dims)[1:]
    denom = (qm.sum(dims) + onehot.sum(dims))[1:]
    has = annotated_classes(lab, k, allowed)[1:]
    if not bool(has.any()):
        return ce, q.sum() * 0
    dice = 1 - ((2 * inter + 1.0) / (denom + 1.0))[has].mean()
    return ce, dice


def partial_dice(pred: np.ndarray, coded: np.ndarray, n_classes: int = 4) -> dict[str, float]:
    """3D Dice per structure of a prediction against coded labels, each over the voxels where that
    structure is known (NaN when it is not annotated: `annotated_classes`; 1 when absent from both, as
    `dice`)."""
    from gemini_cmr.core.study import STRUCTURES

    lab = torch.from_numpy(np.asarray(coded).astype(np.int64))
    allowed = allowed_classes(lab[None], n_classes)
    known_all = (lab < n_classes).unsqueeze(0) | ~allowed[0]
    annotated = annotated_classes(lab[None], n_classes, allowed)
    out = {}
    for c, key in STRUCTURES.items():
        known = known_all[c].numpy()
        if not bool(annotated[c]):
            out[key] = float("nan")
            continue
        p, t = (pred == c) & known, (coded == c)
        denom = int(p.sum()) + int(t.sum())
        out[key] = 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom
    return out


def beyond_end_rows(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(B, J) bool: the labelled acquired slices of each stack (labels (B, J, h, w), IGNORE rows unlabelled)
    just beyond an end of a structure's extent (the slice before its first or after its last slice with an
    exact label of that class), for every class 1..k-1 present in the stack: slices that do not hold the
    structure while their neighbour does."""
    b, j = labels.shape[:2]
    rows = torch.zeros(b, j, dtype=torch.bool, device=labels.device)
    if j == 0:
        return rows
    flat = labels.reshape(b, j, -1)
    labelled = (flat != IGNORE).any(-1)
    idx = torch.arange(j, device=labels.device)
    for c in range(1, k):
        pres = (flat == c).any(-1)  # (B, J)
        has = pres.any(1)
        first = torch.where(pres, idx, j).min(1).values
        last = torch.where(pres, idx, -1).max(1).values
        beyond = (idx[None] == (first - 1)[:, None]) | (idx[None] == (last + 1)[:, None])
        rows |= beyond & has[:, None]
    return rows & labelled


def slab_losses(sr: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
                slab: torch.Tensor, class_weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """CE + soft Dice of the slab-averaged probabilities vs LR labels; degradation MSE of the SR image.

    sr, x (B, D, h, w); logits (B, K, D, h, w); labels (B, J, h, w) (IGNORE where no acquired slice);
    slab (B, D) row of each SR slice's acquired slice (-1 = padding).
    """
    b, k, d, h, w = logits.shape
    j = labels.shape[1]
    valid = slab >= 0
    a = F.one_hot(slab.clamp(min=0), j).float() * valid[..., None]  # (B, D, J)
    cnt = a.sum(1)  # (B, J)
    an = a / cnt.clamp(min=1)[:, None, :]
    present = cnt > 0
    probs = torch.softmax(logits, 1)
    q = torch.einsum("bkdhw,bdj->bkjhw", probs, an)  # slab-averaged probabilities
    lab = torch.where(present[:, :, None, None], labels, torch.full_like(labels, IGNORE))
    ce, dice = seg_losses(q, lab, class_weights)
    s = torch.einsum("bdhw,bdj->bjhw", sr, an)
    t = torch.einsum("bdhw,bdj->bjhw", x, an)
    pm = present.float()[:, :, None, None]
    degrade = (((s - t) ** 2) * pm).sum() / (pm.sum() * h * w).clamp(min=1)
    return {"ce": ce, "dice": dice, "degrade": degrade, "q": q}


def acquired_losses(model: GeminiGenerator, x: torch.Tensor, labels: torch.Tensor, slab: torch.Tensor,
                    class_weights: torch.Tensor, amp=None, seg_target: str = "slab",
                    aux_heads: DeepSupervisionHeads | None = None, drop: torch.Tensor | None = None,
                    drop_image: torch.Tensor | None = None, teacher_seg: torch.Tensor | None = None,
                    temperature: float = 1.0, end_weight: float = 1.0,
                    context: torch.Tensor | None = None) -> dict[str, Any]:
    """The same losses as `slab_losses`, computed per acquired slice for the "acquired-2d" generator
    (no (B, K, D, h, w) tensors: only the SR slices inside each slab are interpolated and averaged).
    seg_target "acquired": the segmentation terms compare each acquired slice's own probabilities
    (no slab averaging) with its labels.
    `aux_heads` (deep supervision, `core.train.deep_supervision`): "ce" and "dice" are the level-weighted
    sums over full resolution and the heads' coarser levels, each level's logits of every acquired slice
    against its labels reduced by `downsample_labels`; "levels" lists each level's (ce, dice), full
    resolution first.
    `drop` (B, D) (dropped-slice training, `lr_data.drop_every_other`): for the SR slices at the centres of
    removed acquired slices, the removed slice's label row (-1 elsewhere); "drop_ce", "drop_dice" compare
    those SR slices' scores with the labels, "drop_mse" their image with `drop_image` (B, D, h, w, the
    stacks before the removal); zero without such slices.
    `teacher_seg` (N, K, h, w): a teacher's logits of the same acquired slices (`acquired_parts` of the same
    stacks); "distill" is the KL divergence of the teacher's softmax from the model's at `temperature`,
    times its square, the mean over the slices' pixels (zero without a teacher).
    `end_weight`: the cross-entropy weight of the acquired slices just beyond a structure's extent
    (`beyond_end_rows`), 1 elsewhere (`SemiConfig.end_slice_weight`).
    `context` (B, D, h, w): the first phase's stacks, for models with `first_phase_context`."""
    if seg_target not in ("slab", "acquired"):
        raise DataError(f"seg_target must be 'slab' or 'acquired', not {seg_target!r}")
    dev = x.device
    seg_levels: list[torch.Tensor] | None = [] if aux_heads is not None else None
    s_res: list[torch.Tensor] = []
    with autocast(dev, amp):
        a_img, a_seg, plan, a_res = model.acquired_parts(x, seg_levels, s_res, context=context)
        aux = aux_heads(seg_levels) if aux_heads is not None and plan.n else []
    n = plan.n
    zero = x.sum() * 0
    if n == 0:
        return {"ce": zero, "dice": zero, "degrade": zero, "q": None, "plan": plan, "labels": None,
                "drop_ce": zero, "drop_dice": zero, "drop_mse": zero, "distill": zero}
    a_img, a_seg = a_img.float(), a_seg.float()
    a_res = None if a_res is None else a_res.float()
    s_res_t = s_res[0].float() if s_res else None
    sr_img, sr_seg = interpolate_acquired(a_img, a_seg if seg_target == "slab" else None, plan, a_res, s_res_t)
    ia = plan.ia.to(dev)
    cnt = torch.bincount(ia, minlength=n).clamp(min=1).float()
    if seg_target == "acquired":
        q = torch.softmax(a_seg, 1)
    else:
        q = torch.zeros_like(a_seg).index_add_(0, ia, torch.softmax(sr_seg, 1)) / cnt[:, None, None, None]
    s = torch.zeros_like(a_img).index_add_(0, ia, sr_img) / cnt[:, None, None]
    b, d, h, w = x.shape
    src = plan.src.to(dev)
    target = x.reshape(b * d, h, w)[src]
    rows = slab.reshape(-1)[src]
    lab = labels[src // d, rows]  # (N, h, w)
    row_w = None
    if end_weight != 1.0:
        row_w = torch.where(beyond_end_rows(labels, a_seg.shape[1])[src // d, rows], float(end_weight), 1.0)
    ce, dice = seg_losses(q, lab, class_weights, row_w)
    out = {"q": q, "plan": plan, "labels": lab}
    if aux:
        k = a_seg.shape[1]
        levels = [(ce, dice)] + [seg_losses(torch.softmax(logits.float(), 1),
                                            downsample_labels(lab, 2 ** i, k), class_weights, row_w)
                                 for i, logits in enumerate(aux, start=1)]
        wts = level_weights(len(aux))
        ce = sum(wl * c for wl, (c, _) in zip(wts, levels))
        dice = sum(wl * d for wl, (_, d) in zip(wts, levels))
        out["levels"] = levels
    degrade = ((s - target) ** 2).mean()
    out.update(drop_ce=zero, drop_dice=zero, drop_mse=zero, distill=zero)
    if teacher_seg is not None:
        out["distill"] = distill_loss(a_seg, teacher_seg.float(), temperature)
    if drop is not None:
        out.update(_dropped_losses(a_img, a_seg, a_res, s_res_t, plan, labels, drop, drop_image, class_weights))
    return {"ce": ce, "dice": dice, "degrade": degrade, **out}


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || model) of the class softmaxes (dim 1) at `temperature`, times its square (Hinton's
    scaling, so the gradients keep their size across temperatures), the mean over pixels."""
    if logits.shape != teacher.shape:
        raise DataError(f"the teacher's scores {tuple(teacher.shape)} do not match the model's {tuple(logits.shape)}")
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1), reduction="none", log_target=True)
    return kl.sum(1).mean() * (t * t)


def _dropped_losses(a_img: torch.Tensor, a_seg: torch.Tensor, a_res: torch.Tensor | None,
                    s_res: torch.Tensor | None, plan, labels: torch.Tensor, drop: torch.Tensor,
                    drop_image: torch.Tensor | None, class_weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """`acquired_losses`' dropped-slice terms (see there)."""
    b, d = drop.shape
    dev = a_seg.device
    flat = drop.reshape(-1)
    rows = torch.nonzero(flat >= 0).flatten()
    if not rows.numel():
        return {}
    where = torch.full((b * d,), -1, dtype=torch.long, device=dev)
    where[plan.out.to(dev)] = torch.arange(len(plan.out), device=dev)
    m = where[rows]
    if bool((m < 0).any()):
        raise DataError("a dropped slice's centre lies on depth padding")
    ia, ib, t = plan.ia.to(dev)[m], plan.ib.to(dev)[m], plan.t.to(dev)[m]
    q = torch.softmax(interpolate_rows(a_seg, ia, ib, t, s_res), 1)
    ce, dice = seg_losses(q, labels[rows // d, flat[rows]], class_weights)
    res = {"drop_ce": ce, "drop_dice": dice}
    if drop_image is not None:
        img = interpolate_rows(a_img, ia, ib, t, a_res)
        res["drop_mse"] = ((img - drop_image.reshape(b * d, *drop_image.shape[2:])[rows].float()) ** 2).mean()
    return res


class SemiTrainer(GeminiTrainer):
    """`GeminiTrainer` with LR-labelled data (`acdc:` / `mnms:` / `ukbb:` / `pairs:` sources) and the losses
    above; with `holdout` the held-out subjects validate but never choose the checkpoint; `init` starts from
    a saved model's weights."""

    def _prepare(self) -> None:
        cfg = self.cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.dist = init_distributed(self.device)
        if self.dist.enabled:
            raise DataError("LR-label training runs in one process (no torchrun)")
        src = parse_source(self.data)
        if src is None:
            raise DataError("LR-label training needs --data acdc:PATH, mnms:PATH, ukbb:PATH or pairs:MANIFEST.json",
                            self.data)
        kind, root = src
        cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        fold = parse_fold(cfg.fold)
        self.extra_aug = StackAugment.from_dict(cfg.augment)
        holdout = [str(v) for v in cfg.holdout]
        self.choose_best = not holdout  # held-out subjects never choose the checkpoint
        mcfg = GeminiConfig.from_dict(dict(cfg.model))
        ctx = mcfg.first_phase_context
        train = load_lr_split(kind, root, "train", cfg.percentile, cache, fold, cfg.roi_mm, holdout, ctx)
        if not train:
            raise DataError("no training subjects", root)
        self.val_samples = load_lr_split(kind, root, cfg.val_split, cfg.percentile, cache, fold, cfg.roi_mm,
                                         holdout, ctx)
        self.val = self.val_samples  # run() checks truthiness
        if mcfg.encoder != "acquired-2d":
            log.warning("LR-label training with encoder %r: the slab losses work, but only acquired-2d "
                        "encodes each acquired slice once", mcfg.encoder)
        self.items = LRItems(train, mcfg.depth, mcfg.multiple)
        self.val_items = LRItems(self.val_samples, mcfg.depth, mcfg.multiple)
        if cfg.crop and cfg.crop % mcfg.multiple:
            raise DataError(f"crop {cfg.crop} must be a multiple of {mcfg.multiple}")
        self.aug = Augment(cfg.crop, cfg.heart_centred, cfg.flip, cfg.gain, cfg.noise)
        k = mcfg.n_classes
        self.class_weights = resolve_class_weights(cfg.class_weights, lambda: class_frequencies(train, k), k)
        torch.manual_seed(cfg.seed)
        self.G = GeminiGenerator(mcfg)
        if cfg.init:
            self._init_from(cfg.init)
        self.G = self.place(self.G)
        self.teacher = self._teacher(cfg.distill, mcfg) if cfg.distill else None
        self.D = None
        self.opt_d = None
        self.G_train = self.G
        self.frozen_modules = freeze_except(self.G, [str(v) for v in cfg.train_only])
        params = [p for p in self.G.parameters() if p.requires_grad]
        if cfg.drop_slices and mcfg.encoder != "acquired-2d":
            raise DataError(f"drop_slices needs the acquired-2d encoder, not {mcfg.encoder!r}")
        if float(cfg.end_slice_weight) != 1.0 and mcfg.encoder != "acquired-2d":
            raise DataError(f"end_slice_weight needs the acquired-2d encoder, not {mcfg.encoder!r}")
        if cfg.deep_supervision:
            if mcfg.encoder != "acquired-2d":
                raise DataError(f"deep_supervision needs the acquired-2d encoder, not {mcfg.encoder!r}")
            self.aux = DeepSupervisionHeads(mcfg.widths, k, cfg.deep_supervision).to(self.device)
            params += list(self.aux.parameters())
        self.opt_g = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=False)
        self.steps_per_epoch = max(1, math.ceil(len(self.items) / cfg.batch_size))
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.w_tensor = torch.tensor(self.class_weights, dtype=torch.float32, device=self.device)

    def _teacher(self, path: str, mcfg: GeminiConfig) -> GeminiGenerator:
        """The distillation teacher: the saved model at `path`, frozen, in eval mode, on the device."""
        from gemini_cmr.core.models.store import load_model

        loaded = load_model(path, device=self.device)
        self.teacher_id = loaded.model_id
        t = loaded.generator
        tc = t.config
        if mcfg.encoder != "acquired-2d" or tc.encoder != "acquired-2d":
            raise DataError("distillation needs acquired-2d models (the teacher's and the trained one's)", path)
        if (tc.depth, tc.n_classes) != (mcfg.depth, mcfg.n_classes):
            raise DataError(f"the distillation teacher has depth {tc.depth} and {tc.n_classes} classes; the "
                            f"trained model {mcfg.depth} and {mcfg.n_classes}", path)
        if tc.first_phase_context and not mcfg.first_phase_context:
            raise DataError("the distillation teacher takes the first phase as context; the trained model "
                            "does not (set model.first_phase_context)", path)
        if self.cfg.crop and self.cfg.crop % tc.multiple:
            raise DataError(f"crop {self.cfg.crop} must be a multiple of the teacher's {tc.multiple}", path)
        for p in t.parameters():  # load_model gives it in eval mode, float32, on the device
            p.requires_grad_(False)
        return t

    def _batch(self, step: int) -> dict[str, torch.Tensor | None]:
        """The step's stacks: "x", "labels", "slab", "context" (the first phase's stacks, models with
        `first_phase_context`; else None) and with `drop_slices` "drop" and "drop_image" (the stacks
        before the removal)."""
        cfg = self.cfg
        epoch, kk = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.items))
        xs, labs, slabs, drops, whole = [], [], [], [], []
        for j in range(cfg.batch_size):
            idx = int(perm[(kk * cfg.batch_size + j) % len(perm)])
            rng = np.random.default_rng([cfg.seed, epoch, 0, kk, j])
            x, lab, slab = self.items.get(idx, rng, self.aug, extra=self.extra_aug)
            drop = np.full(slab.shape, -1, np.int64)
            whole.append(x)
            if cfg.drop_slices and rng.random() < cfg.drop_slices:
                removed = drop_every_other(x, slab, int(rng.integers(2)))
                if removed is not None:
                    x, slab, drop = removed
            xs.append(x)
            labs.append(lab)
            slabs.append(slab)
            drops.append(drop)
        dev = self.device
        x = torch.from_numpy(np.stack(xs)).to(dev)
        context = None
        if x.dim() == 5:  # (B, D, 2, h, w): the phase and the first phase (`LRItems`)
            x, context = x[:, :, 0].contiguous(), x[:, :, 1].contiguous()
        batch = {"x": x, "labels": torch.from_numpy(np.stack(labs)).to(dev),
                 "slab": torch.from_numpy(np.stack(slabs)).to(dev), "context": context,
                 "drop": None, "drop_image": None}
        if cfg.drop_slices:
            whole_t = torch.from_numpy(np.stack(whole)).to(dev)
            batch.update(drop=torch.from_numpy(np.stack(drops)).to(dev),
                         drop_image=whole_t[:, :, 0].contiguous() if whole_t.dim() == 5 else whole_t)
        return batch

    def _step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        factor = self._lr(step)
        for g in self.opt_g.param_groups:
            g["lr"] = cfg.lr * factor
        batch = self._batch(step)
        x, lab, slab, context = batch["x"], batch["labels"], batch["slab"], batch["context"]
        drop, drop_image = batch["drop"], batch["drop_image"]
        self.G_train.train()
        if cfg.freeze_bn:
            for m in self.G.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for m in self.frozen_modules:
            m.eval()
        if self.aux is not None:
            self.aux.train()
        if self.G.config.encoder == "acquired-2d":
            teacher_seg = None
            if self.teacher is not None:
                with torch.no_grad(), autocast(self.device, self.amp_dtype):
                    teacher_seg = self.teacher.acquired_parts(x, context=context)[1]
            parts = acquired_losses(self.G, x, lab, slab, self.w_tensor, self.amp_dtype, cfg.seg_target,
                                    self.aux, drop, drop_image, teacher_seg, cfg.distill_temperature,
                                    float(cfg.end_slice_weight), context)
        else:
            with autocast(self.device, self.amp_dtype):
                sr, logits = self.G_train(x)
            parts = slab_losses(sr.float(), logits.float(), x, lab, slab, self.w_tensor)
        loss = parts["ce"] + cfg.lambda_dice * parts["dice"] + cfg.lambda_degrade * parts["degrade"]
        if drop is not None:
            loss = loss + cfg.lambda_drop * (parts["drop_ce"] + cfg.lambda_dice * parts["drop_dice"]) \
                + cfg.lambda_drop_image * parts["drop_mse"]
        if self.teacher is not None:
            loss = loss + cfg.lambda_distill * parts["distill"]
        self.opt_g.zero_grad(set_to_none=True)
        if loss.requires_grad:  # with `train_only`, a batch may reach none of the trained parameters
            self.scaler_g.scale(loss).backward()
            self.scaler_g.step(self.opt_g)
            self.scaler_g.update()
        return {"loss": float(loss.detach()), "ce": float(parts["ce"].detach()),
                "dice": float(parts["dice"].detach()), "mse": float(parts["degrade"].detach()),
                "lr": cfg.lr * factor}

    def validate(self) -> dict[str, Any]:
        """3D Dice on the acquired slices (argmax of the slab-averaged probabilities), ED and ES."""
        self.G.eval()
        rows = []
        crop = self.cfg.val_crop
        with torch.inference_mode():
            for i in range(len(self.val_items)):
                si = self.val_items.items[i][0]
                s = self.val_samples[si]
                x, lab, slab = self.val_items.get(i, None, None, crop=crop)
                context = None
                if x.ndim == 4:  # the phase and the first phase (`LRItems`)
                    x, context = np.ascontiguousarray(x[:, 0]), torch.from_numpy(x[None, :, 1].copy()).to(self.device)
                xt = torch.from_numpy(x[None]).to(self.device)
                lt, st = torch.from_numpy(lab[None]).to(self.device), torch.from_numpy(slab[None]).to(self.device)
                nj = int(slab.max()) + 1
                if self.G.config.encoder == "acquired-2d":
                    parts = acquired_losses(self.G, xt, lt, st, self.w_tensor, self.amp_dtype,
                                            self.cfg.seg_target, context=context)
                    pred = parts["q"].argmax(1).cpu().numpy()
                    truth = parts["labels"].cpu().numpy()
                else:
                    with autocast(self.device, self.amp_dtype):
                        sr, logits = self.G(xt)
                    parts = slab_losses(sr.float(), logits.float(), xt, lt, st, self.w_tensor)
                    pred = parts["q"][0, :, :nj].argmax(0).cpu().numpy()
                    truth = lab[:nj]
                d = partial_dice(pred.astype(np.uint8), truth.astype(np.uint8), self.G.config.n_classes)
                rows.append({"subject": s.subject, "phase": s.phase, "ed": s.is_ed, **d,
                             "degrade_mse": float(parts["degrade"])})
        self.G.train()
        if not rows:
            return {}
        keys = ("lv_cavity", "lv_myocardium", "rv_cavity")
        res: dict[str, Any] = {}
        for tag, sel in (("", rows), ("ed_", [r for r in rows if r["ed"]]), ("es_", [r for r in rows if not r["ed"]])):
            for key in keys:
                vals = [r[key] for r in sel if np.isfinite(r[key])]
                res[tag + key] = float(np.mean(vals)) if vals else float("nan")
        known = [res[k] for k in keys if np.isfinite(res[k])]
        res["mean_dice"] = float(np.mean(known)) if known else float("nan")
        res["psnr"] = float("nan")
        res["ssim"] = float("nan")
        res["degrade_mse"] = float(np.mean([r["degrade_mse"] for r in rows]))
        res["n"] = len(rows)
        return res

    def _model_config(self, step: int, extra: dict | None = None) -> dict:
        d = super()._model_config(step, extra)
        d["training"]["data_kind"] = "lr-labels"
        if getattr(self, "teacher", None) is not None:
            d["training"]["distill_teacher_id"] = self.teacher_id
        return d


# --- fine-tuning on a user's cohort ------------------------------------------------------------------------
# The real-data recipe's settings (recipes/gemini-acdc/cpu.json, the CPU recipe of the ACDC model), which
# `finetune_config` scales to a cohort.
REAL_DATA_RECIPE: dict[str, Any] = {
    "omega_gan": 0.0, "lr": 2e-3, "lr_schedule": "poly", "weight_decay": 1e-5, "lambda_dice": 1.0,
    "lambda_degrade": 1.0, "class_weights": [1.0, 1.0, 1.0, 1.0], "batch_size": 8, "crop": 112,
    "heart_centred": 0.7, "flip": True, "gain": 0.15, "noise": 0.03,
    "augment": {"p": 0.2, "rotate_deg": 180, "scale": [0.7, 1.4], "slice_shift_px": 2.0, "gamma": [0.7, 1.5],
                "contrast": [0.75, 1.25], "blur_px": 1.0, "lowres": 0.5},
    "checkpoint_every": 50, "amp": "auto", "seed": 0, "seg_target": "acquired", "roi_mm": 176,
}
FINETUNE_LR_FACTOR = 0.1  # fine-tuning starts from trained weights: a tenth of the recipe's learning rate
# Stack presentations (steps x batch): from scratch the recipe's 60 epochs of ACDC's 160 items (9,600),
# fine-tuning 50 per item; both clamped to the ranges below.
PRESENTATIONS = {"finetune": (50, 200, 4000), "scratch": (60, 2000, 9600)}


def init_model_config(init: str | Path) -> dict:
    """The JSON config of the model a fine-tuning starts from (`core.models.store.read_config`)."""
    from gemini_cmr.core.models.store import model_files, read_config

    return read_config(model_files(init)[1])


def finetune_config(n_items: int, init: str | Path | None = None, holdout: list[str] | None = None,
                    model: dict | None = None) -> dict:
    """A `SemiConfig` dict for `n_items` training stacks (labelled phases of the training subjects): the
    real-data recipe (`REAL_DATA_RECIPE`) with, when fine-tuning from `init`, its architecture, heart box and
    training augmentation (where its config records one: fine-tuning keeps what the model was made robust to,
    e.g. noise and orientation) and a tenth of the learning rate; the batch at most the items; steps for 50
    presentations per item (200-4,000; from scratch 60 per item, 2,000-9,600); about 10 validations of the
    held-out subjects.
    `model`: the architecture from scratch (default the CPU recipe's widths 16-128)."""
    from gemini_cmr.core.models.gemini import GeminiConfig

    n_items = max(1, int(n_items))
    cfg = json.loads(json.dumps(REAL_DATA_RECIPE))
    if init:
        saved = init_model_config(init)
        cfg["model"] = saved["model"]
        cfg["init"] = str(init)
        cfg["lr"] = REAL_DATA_RECIPE["lr"] * FINETUNE_LR_FACTOR
        roi = (saved.get("inference") or {}).get("roi_mm")
        cfg["roi_mm"] = float(roi) if roi else 0.0
        augment = ((saved.get("training") or {}).get("config") or {}).get("augment")
        if isinstance(augment, dict) and augment:
            cfg["augment"] = dict(augment)
        per, lo, hi = PRESENTATIONS["finetune"]
    else:
        base = {"depth": 64, "n_classes": 4, "widths": [16, 32, 64, 128, 128], "encoder": "acquired-2d",
                "residual_image": True, "input_to_heads": True, "mix_kernel": 3}
        cfg["model"] = GeminiConfig.from_dict({**base, **(model or {})}).to_dict()
        per, lo, hi = PRESENTATIONS["scratch"]
    batch = max(1, min(cfg["batch_size"], n_items))
    steps_per_epoch = math.ceil(n_items / batch)
    steps = max(1, int(round(min(hi, max(lo, per * n_items)) / batch)))
    epochs = math.ceil(steps / steps_per_epoch)
    cfg.update(batch_size=batch, max_steps=steps, epochs=epochs, val_every=max(1, round(epochs / 10)),
               checkpoint_every=min(cfg["checkpoint_every"], steps), holdout=list(holdout or []))
    return cfg


def measure_step_seconds(cfg: SemiConfig, device: str = "auto", slices: int = 10, batch: int = 2) -> float:
    """Seconds of one training step of `cfg` on `device`, measured here: one step of `batch` random stacks
    of `slices` acquired slices at the training crop (after one warm-up step), scaled to the config's batch
    size. Changes no global state but torch's RNG."""
    from gemini_cmr.core.device import resolve_device

    dev = resolve_device(device)
    mcfg = GeminiConfig.from_dict(dict(cfg.model))
    g = GeminiGenerator(mcfg).to(dev).train()
    aux = (DeepSupervisionHeads(mcfg.widths, mcfg.n_classes, cfg.deep_supervision).to(dev)
           if cfg.deep_supervision and mcfg.encoder == "acquired-2d" else None)
    opt = torch.optim.Adam(list(g.parameters()) + (list(aux.parameters()) if aux is not None else []), lr=1e-6)
    amp = autocast_dtype(dev, cfg.amp)
    crop = cfg.crop or 128
    per = max(1, mcfg.depth // slices)
    slab = torch.full((batch, mcfg.depth), -1, dtype=torch.int64)
    n = min(slices, mcfg.depth)
    slab[:, : n * per] = torch.arange(n).repeat_interleave(per)
    x = torch.zeros(batch, mcfg.depth, crop, crop)
    x[:, : n * per] = torch.rand(batch, n, crop, crop).repeat_interleave(per, 1)
    lab = torch.randint(0, mcfg.n_classes, (batch, mcfg.depth, crop, crop))
    w = torch.ones(mcfg.n_classes)
    x, lab, slab, w = x.to(dev), lab.to(dev), slab.to(dev), w.to(dev)
    context = x.flip(-1) if mcfg.first_phase_context else None  # any stack of the same slices

    def step():
        if mcfg.encoder == "acquired-2d":
            parts = acquired_losses(g, x, lab, slab, w, amp, cfg.seg_target, aux, context=context)
        else:
            with autocast(dev, amp):
                sr, logits = g(x)
            parts = slab_losses(sr.float(), logits.float(), x, lab, slab, w)
        loss = parts["ce"] + parts["dice"] + parts["degrade"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    step()
    t0 = time.perf_counter()
    step()
    return (time.perf_counter() - t0) * max(1, cfg.batch_size) / batch


def estimate_seconds(cfg: SemiConfig, step_s: float, n_val_items: int, n_holdout: int) -> float:
    """A run's time from a measured step: the steps, the validations (a held-out stack costs about a third
    of a training stack), and the comparison on the held-out subjects (two models through the whole
    pipeline, about 3 training stacks' time each)."""
    steps = cfg.max_steps or cfg.epochs
    per_stack = step_s / max(1, cfg.batch_size)
    validations = max(1, steps // max(1, cfg.val_every * max(1, math.ceil(n_val_items / cfg.batch_size))))
    return steps * step_s + validations * n_val_items * per_stack / 3 + 2 * n_holdout * 2 * 3 * per_stack


# --- after fine-tuning: before / after on the held-out subjects, the model folder ----------------------------
PHENOTYPE_NEEDS = {"lv_edv_ml": (("ed", 1),), "lv_esv_ml": (("es", 1),), "lv_ef_pct": (("ed", 1), ("es", 1)),
                   "lv_mass_g": (("ed", 2),), "rv_edv_ml": (("ed", 3),)}


def evaluate_partial(resolver, study, name: str = "") -> dict[str, Any]:
    """Whole-pipeline evaluation of one study with full or partial labels (`lr_data.annotation`): Dice per
    structure at ED and ES (`partial_dice`: each structure on the voxels where it is known) and the
    phenotypes of prediction and manual labels on the annotated slices (a predicted structure counts only
    where it is annotated; a phenotype whose structure is not annotated in its phase is NaN). With full
    labels the figures are `core.evaluation.real.evaluate_study`'s."""
    from gemini_cmr.core.evaluation.real import REAL_PHENOTYPES, ed_es_phenotypes
    from gemini_cmr.core.train.lr_data import coded_study_labels

    coded, ann = coded_study_labels(study)
    phases = [t for t in study.labelled_phases if any(a is not None for a in ann[t])]
    ed, es = study.meta.ed_phase, study.meta.es_phase
    t0 = time.perf_counter()
    r = resolver.run(study, phases=phases, meshes="none")
    row: dict[str, Any] = {"subject": name or study.meta.patient_id, "group": study.meta.group,
                           "seconds": time.perf_counter() - t0, "model_id": r.model_id, "phases": phases}
    pred = {t: r.lr_labels[r.phases.index(t)] for t in phases}
    per_phase = {t: partial_dice(pred[t], coded[t]) for t in phases}
    keys = list(per_phase[phases[0]]) if phases else []
    for key in keys:
        vals = [per_phase[t][key] for t in phases if np.isfinite(per_phase[t][key])]
        row[f"dice_{key}"] = float(np.mean(vals)) if vals else float("nan")
        for tag, t in (("ed", ed), ("es", es)):
            row[f"{tag}_{key}"] = per_phase[t][key] if t in per_phase else float("nan")
    for k, _, _ in REAL_PHENOTYPES:
        row[f"pred_{k}"] = row[f"manual_{k}"] = float("nan")
    if ed in pred and es in pred:
        lab = torch.from_numpy(coded.astype(np.int64))
        masked, truth = {}, {}
        for t in (ed, es):
            known = ((lab[t] < 4).unsqueeze(0) | ~allowed_classes(lab[t][None], 4)[0]).numpy()  # (K, Z, Y, X)
            p = pred[t].astype(np.int64)
            masked[t] = np.where(np.take_along_axis(known, p[None], 0)[0], p, 0).astype(np.uint8)
            truth[t] = np.where(coded[t] < 4, coded[t], 0).astype(np.uint8)
        got_p = ed_es_phenotypes(masked[ed], masked[es], study.grid)
        got_m = ed_es_phenotypes(truth[ed], truth[es], study.grid)
        for k, _, _ in REAL_PHENOTYPES:
            needs = PHENOTYPE_NEEDS.get(k, ())
            if all(any(a is not None and c in a for a in ann[ed if tag == "ed" else es]) for tag, c in needs):
                row[f"pred_{k}"], row[f"manual_{k}"] = got_p[k], got_m[k]
    return row


def summarise_partial(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (sd) Dice per structure (all labelled phases, ED, ES) and phenotype errors (prediction -
    manual: bias, median |error|, n) over the subjects where each is defined."""
    from gemini_cmr.core.evaluation.metrics import mean_sd
    from gemini_cmr.core.evaluation.real import REAL_PHENOTYPES
    from gemini_cmr.core.study import STRUCTURES

    out: dict[str, Any] = {"n": len(rows)}
    for key in STRUCTURES.values():
        for tag in ("dice", "ed", "es"):
            vals = [r[f"{tag}_{key}"] for r in rows if np.isfinite(r.get(f"{tag}_{key}", float("nan")))]
            m, sd = mean_sd(vals) if vals else (float("nan"), float("nan"))
            out[f"{tag}_{key}" if tag == "dice" else f"dice_{tag}_{key}"] = {"mean": m, "sd": sd, "n": len(vals)}
    for k, _, _ in REAL_PHENOTYPES:
        err = [r[f"pred_{k}"] - r[f"manual_{k}"] for r in rows
               if np.isfinite(r[f"pred_{k}"]) and np.isfinite(r[f"manual_{k}"])]
        out[f"err_{k}"] = {"bias": float(np.mean(err)) if err else float("nan"),
                           "median_abs": float(np.median(np.abs(err))) if err else float("nan"), "n": len(err)}
    return out


def _comparison_markdown(before: dict, after: dict, names: tuple[str, str]) -> str:
    from gemini_cmr.core.evaluation.real import REAL_PHENOTYPES
    from gemini_cmr.core.study import STRUCTURE_NAMES

    def f(v, fmt):
        return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)

    lines = [f"| held-out subjects | {names[0]} | {names[1]} |", "|---|---|---|"]
    for key, name in STRUCTURE_NAMES.items():
        a, b = before[f"dice_{key}"], after[f"dice_{key}"]
        if a["n"] or b["n"]:
            lines.append(f"| {name} Dice (labelled phases, mean) | {f(a['mean'], '.3f')} | {f(b['mean'], '.3f')} |")
    for k, name, unit in REAL_PHENOTYPES:
        a, b = before[f"err_{k}"], after[f"err_{k}"]
        if a["n"] or b["n"]:
            lines.append(f"| {name} median abs error ({unit}) | {f(a['median_abs'], '.1f')} | "
                         f"{f(b['median_abs'], '.1f')} |")
    return "\n".join(lines)


def finish_finetune(cfg: SemiConfig, data: str | Path, out: str | Path, device: str = "auto",
                    callback=None, train_seconds: float | None = None, command: str = "") -> dict[str, Any]:
    """After a run with held-out subjects: export the trained model to `RUN/model/` (float16, the starting
    model's inference settings and licence), evaluate the starting model (`cfg.init`, else the shipped
    ACDC model) and the new one on the held-out subjects through the whole pipeline (`evaluate_partial`),
    and write the figures to `RUN/finetune.json` and into the model folder (`config.json` "evaluation",
    `MODEL_CARD.md`). The folder is built beside `RUN/model` and renamed into place when complete.
    `callback` receives "compare" events (model, subject, index, total) and one "compared" event."""
    import shutil

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.atomic import atomic_write_text
    from gemini_cmr.core.io.jsonio import dumps
    from gemini_cmr.core.models.store import file_sha256, load_model, model_files, save_model
    from gemini_cmr.core.resources import acdc_model_path
    from gemini_cmr.core.train import runs
    from gemini_cmr.core.train.lr_data import lr_subjects

    emit = callback or (lambda e: None)
    out = Path(out)
    kind, root = parse_source(data)
    holdout = [str(v) for v in cfg.holdout]
    every = lr_subjects(kind, root)
    subjects = [s for s in every if s.sid in set(holdout)]
    if not subjects:
        raise DataError("no held-out subjects to evaluate", root)
    reference = Path(cfg.init) if cfg.init else acdc_model_path()
    ref_cfg = init_model_config(reference)
    trained = load_model(out / runs.BEST_DIR if (out / runs.BEST_DIR / runs.MODEL_WEIGHTS).exists()
                         else out / runs.LAST_DIR)
    final = out / runs.FINETUNED_DIR
    stage = out / f"{runs.FINETUNED_DIR}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    training = dict(trained.config.get("training", {}))
    training.update(data=str(data), init=str(cfg.init) if cfg.init else None, holdout=holdout,
                    command=command or training.get("command", ""),
                    checkpoint="last step (the held-out subjects chose nothing)",
                    n_train_subjects=len(every) - len(subjects))
    if train_seconds is not None:
        training["train_seconds"] = float(train_seconds)
    model_cfg = {"training": training, "normalisation": trained.config.get("normalisation", {}),
                 "inference": ref_cfg.get("inference") or {"roi_mm": cfg.roi_mm or None,
                                                           "keep_largest_heart_component": True,
                                                           "heart_component_by": "ventricle"}}
    if cfg.init and ref_cfg.get("licence"):
        model_cfg["licence"] = "Fine-tuned from " + Path(cfg.init).name + ": " + ref_cfg["licence"]
    save_model(stage, trained.generator, model_cfg, half=True)
    if cfg.init:
        lic = model_files(cfg.init)[1].parent / "LICENCE.md"
        if lic.is_file():
            shutil.copyfile(lic, stage / "LICENCE.md")
    t0 = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {}
    names = {"before": reference.name if cfg.init else f"shipped {reference.name}", "after": "fine-tuned"}
    if not cfg.init:
        names["after"] = "trained from scratch"
    for which, model in (("before", reference), ("after", stage)):
        resolver = SuperResolver(model=model, device=device)
        rows = []
        for i, subj in enumerate(subjects):
            emit({"event": "compare", "model": which, "subject": subj.sid, "index": i + 1, "total": len(subjects)})
            rows.append(evaluate_partial(resolver, subj.load(), subj.sid))
        results[which] = rows
    summary = {w: summarise_partial(rows) for w, rows in results.items()}
    model_id = file_sha256(stage / "model.safetensors")[:12]
    figures = {"held_out": holdout, "models": {"before": {"path": str(reference), "name": names["before"],
                                                           "model_id": results["before"][0]["model_id"][:12]},
                                                "after": {"path": str(final), "name": names["after"],
                                                          "model_id": model_id}},
               "summary": summary, "rows": results, "eval_seconds": time.perf_counter() - t0,
               "protocol": "whole pipeline (core.engine.SuperResolver) on the held-out subjects' labelled phases; "
                           "SR labels on the acquired slices vs the manual labels, each structure where it is "
                           "annotated; phenotypes on the annotated slices"}
    model_cfg["evaluation"] = {"data": f"held-out subjects {', '.join(holdout)} of {data}",
                               "protocol": figures["protocol"], "before": summary["before"],
                               "after": summary["after"], "before_model": figures["models"]["before"]}
    written = json.loads((stage / "config.json").read_text(encoding="utf-8"))
    written["evaluation"] = model_cfg["evaluation"]
    atomic_write_text(stage / "config.json", json.dumps(written, indent=2) + "\n")
    table = _comparison_markdown(summary["before"], summary["after"], (names["before"], names["after"]))
    atomic_write_text(stage / runs.MODEL_CARD, _model_card(model_id, cfg, data, training, figures, table))
    if final.exists():
        old = out / f"{runs.FINETUNED_DIR}.old"
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        stage.rename(final)
        shutil.rmtree(old)
    else:
        stage.rename(final)
    figures["markdown"] = table
    atomic_write_text(out / runs.COMPARISON_JSON, dumps(figures) + "\n")
    emit({"event": "compared", "path": str(final), "model_id": model_id, "markdown": table})
    return figures


def _model_card(model_id: str, cfg: SemiConfig, data, training: dict, figures: dict, table: str) -> str:
    """MODEL_CARD.md of a fine-tuned model: what it started from, the data, the recipe, the time and the
    before / after figures on the held-out subjects."""
    rows = figures["rows"]["after"]
    n_train = training.get("n_train_subjects", "")
    minutes = training.get("train_seconds")
    lines = [
        f"# Gemini-GAN model {model_id} ({'fine-tuned' if cfg.init else 'trained from scratch'})", "",
        f"- **Started from**: {cfg.init or 'random weights'}"
        + (f" (model {figures['models']['before']['model_id']})" if cfg.init else ""),
        f"- **Data**: `{data}`; {n_train} training subject(s); held out (never used to choose the checkpoint): "
        f"{', '.join(figures['held_out'])}",
        f"- **Recipe**: {training.get('step', '?')} steps, batch {cfg.batch_size}, learning rate {cfg.lr:g} "
        f"({cfg.lr_schedule}), crop {cfg.crop}, heart box {cfg.roi_mm:g} mm; the full config is "
        "`training.config` in config.json; the model is the last step",
        f"- **Command**: `{training.get('command') or 'gemini-cmr train gemini'}`",
    ]
    if minutes is not None:
        lines.append(f"- **Training time**: {minutes / 60:.1f} min; evaluation {figures['eval_seconds']:.0f} s")
    lines += ["", "## Held-out subjects: before and after", "", table, "",
              "Per subject (fine-tuned): " + "; ".join(
                  f"{r['subject']} " + ", ".join(f"{k.removeprefix('dice_')} {r[k]:.3f}" for k in r
                                                  if k.startswith("dice_") and np.isfinite(r[k]))
                  for r in rows), "",
              f"Protocol: {figures['protocol']}. Few held-out subjects give wide uncertainty; the figures are "
              "measured, not a guarantee for other studies.", ""]
    if (figures["models"]["before"]["path"] and cfg.init):
        lines += ["Licence: the starting model's terms apply to this model too (see `licence` in config.json"
                  " and LICENCE.md when present).", ""]
    return "\n".join(lines)
