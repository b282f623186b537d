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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gemini_cmr.core.device import autocast, autocast_dtype
from gemini_cmr.core.errors import DataError
from gemini_cmr.core.evaluation.metrics import dice_per_structure
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator, interpolate_acquired
from gemini_cmr.core.train.data import Augment
from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig, resolve_class_weights
from gemini_cmr.core.train.loop import init_distributed
from gemini_cmr.core.train.lr_data import (
    IGNORE,
    LRItems,
    StackAugment,
    class_frequencies,
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
    # "" = the source's own train/val split.
    fold: str = ""
    # Train on a box of this size (mm) around each study's labels, normalised by the box's own intensity
    # percentile, as the predictor runs a model whose config asks for `inference.roi_mm`; 0 = whole FOV.
    roi_mm: float = 0.0
    # Spatial and intensity augmentation of the stacks (`lr_data.StackAugment` keys; {} = off).
    augment: dict = field(default_factory=dict)


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
    ce = F.nll_loss(torch.log(q.clamp_min(1e-6)), lab, weight=class_weights, ignore_index=IGNORE)
    m = (lab != IGNORE).float()[:, None]  # (B, 1, J, h, w)
    onehot = F.one_hot(lab.clamp(max=k - 1), k).permute(0, 4, 1, 2, 3).float() * m
    qm = q * m
    inter = (qm * onehot).sum((0, 2, 3, 4))[1:]
    denom = (qm.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4)))[1:]
    dice = 1 - ((2 * inter + 1.0) / (denom + 1.0)).mean()
    s = torch.einsum("bdhw,bdj->bjhw", sr, an)
    t = torch.einsum("bdhw,bdj->bjhw", x, an)
    pm = present.float()[:, :, None, None]
    degrade = (((s - t) ** 2) * pm).sum() / (pm.sum() * h * w).clamp(min=1)
    return {"ce": ce, "dice": dice, "degrade": degrade, "q": q}


def acquired_losses(model: GeminiGenerator, x: torch.Tensor, labels: torch.Tensor, slab: torch.Tensor,
                    class_weights: torch.Tensor, amp=None, seg_target: str = "slab") -> dict[str, Any]:
    """The same losses as `slab_losses`, computed per acquired slice for the "acquired-2d" generator
    (no (B, K, D, h, w) tensors: only the SR slices inside each slab are interpolated and averaged).
    seg_target "acquired": the segmentation terms compare each acquired slice's own probabilities
    (no slab averaging) with its labels."""
    if seg_target not in ("slab", "acquired"):
        raise DataError(f"seg_target must be 'slab' or 'acquired', not {seg_target!r}")
    dev = x.device
    with autocast(dev, amp):
        a_img, a_seg, plan, a_res = model.acquired_parts(x)
    n = plan.n
    if n == 0:
        zero = x.sum() * 0
        return {"ce": zero, "dice": zero, "degrade": zero, "q": None, "plan": plan, "labels": None}
    a_img, a_seg = a_img.float(), a_seg.float()
    sr_img, sr_seg = interpolate_acquired(a_img, a_seg, plan, None if a_res is None else a_res.float())
    ia = plan.ia.to(dev)
    cnt = torch.bincount(ia, minlength=n).clamp(min=1).float()
    k = a_seg.shape[1]
    if seg_target == "acquired":
        q = torch.softmax(a_seg, 1)
    else:
        q = torch.zeros_like(a_seg).index_add_(0, ia, torch.softmax(sr_seg, 1)) / cnt[:, None, None, None]
    s = torch.zeros_like(a_img).index_add_(0, ia, sr_img) / cnt[:, None, None]
    b, d, h, w = x.shape
    src = plan.src.to(dev)
    target = x.reshape(b * d, h, w)[src]
    lab = labels[src // d, slab.reshape(-1)[src]]  # (N, h, w)
    ce = F.nll_loss(torch.log(q.clamp_min(1e-6)), lab, weight=class_weights, ignore_index=IGNORE)
    m = (lab != IGNORE).float()[:, None]
    onehot = F.one_hot(lab.clamp(max=k - 1), k).permute(0, 3, 1, 2).float() * m
    qm = q * m
    inter = (qm * onehot).sum((0, 2, 3))[1:]
    denom = (qm.sum((0, 2, 3)) + onehot.sum((0, 2, 3)))[1:]
    dice = 1 - ((2 * inter + 1.0) / (denom + 1.0)).mean()
    degrade = ((s - target) ** 2).mean()
    return {"ce": ce, "dice": dice, "degrade": degrade, "q": q, "plan": plan, "labels": lab}


class SemiTrainer(GeminiTrainer):
    """`GeminiTrainer` with LR-labelled data (`acdc:` / `mnms:` / `pairs:` sources) and the losses above."""

    def _prepare(self) -> None:
        cfg = self.cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.dist = init_distributed(self.device)
        if self.dist.enabled:
            raise DataError("LR-label training runs in one process (no torchrun)")
        src = parse_source(self.data)
        if src is None:
            raise DataError("LR-label training needs --data acdc:PATH, mnms:PATH or pairs:MANIFEST.json",
                            self.data)
        kind, root = src
        cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        fold = parse_fold(cfg.fold)
        self.extra_aug = StackAugment.from_dict(cfg.augment)
        train = load_lr_split(kind, root, "train", cfg.percentile, cache, fold, cfg.roi_mm)
        if not train:
            raise DataError("no training subjects", root)
        self.val_samples = load_lr_split(kind, root, cfg.val_split, cfg.percentile, cache, fold, cfg.roi_mm)
        self.val = self.val_samples  # run() checks truthiness
        mcfg = GeminiConfig.from_dict(dict(cfg.model))
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
        self.G = GeminiGenerator(mcfg).to(self.device)
        self.D = None
        self.opt_d = None
        self.G_train = self.G
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      weight_decay=cfg.weight_decay)
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=False)
        self.steps_per_epoch = max(1, math.ceil(len(self.items) / cfg.batch_size))
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.w_tensor = torch.tensor(self.class_weights, dtype=torch.float32, device=self.device)

    def _batch(self, step: int) -> tuple[torch.Tensor, ...]:
        cfg = self.cfg
        epoch, kk = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.items))
        xs, labs, slabs = [], [], []
        for j in range(cfg.batch_size):
            idx = int(perm[(kk * cfg.batch_size + j) % len(perm)])
            rng = np.random.default_rng([cfg.seed, epoch, 0, kk, j])
            x, lab, slab = self.items.get(idx, rng, self.aug, extra=self.extra_aug)
            xs.append(x)
            labs.append(lab)
            slabs.append(slab)
        dev = self.device
        return (torch.from_numpy(np.stack(xs)).to(dev), torch.from_numpy(np.stack(labs)).to(dev),
                torch.from_numpy(np.stack(slabs)).to(dev))

    def _step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        factor = self._lr(step)
        for g in self.opt_g.param_groups:
            g["lr"] = cfg.lr * factor
        x, lab, slab = self._batch(step)
        self.G_train.train()
        if self.G.config.encoder == "acquired-2d":
            parts = acquired_losses(self.G, x, lab, slab, self.w_tensor, self.amp_dtype, cfg.seg_target)
        else:
            with autocast(self.device, self.amp_dtype):
                sr, logits = self.G_train(x)
            parts = slab_losses(sr.float(), logits.float(), x, lab, slab, self.w_tensor)
        loss = parts["ce"] + cfg.lambda_dice * parts["dice"] + cfg.lambda_degrade * parts["degrade"]
        self.opt_g.zero_grad(set_to_none=True)
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
                xt = torch.from_numpy(x[None]).to(self.device)
                lt, st = torch.from_numpy(lab[None]).to(self.device), torch.from_numpy(slab[None]).to(self.device)
                nj = int(slab.max()) + 1
                if self.G.config.encoder == "acquired-2d":
                    parts = acquired_losses(self.G, xt, lt, st, self.w_tensor, self.amp_dtype,
                                            self.cfg.seg_target)
                    pred = parts["q"].argmax(1).cpu().numpy()
                    truth = parts["labels"].cpu().numpy()
                else:
                    with autocast(self.device, self.amp_dtype):
                        sr, logits = self.G(xt)
                    parts = slab_losses(sr.float(), logits.float(), xt, lt, st, self.w_tensor)
                    pred = parts["q"][0, :, :nj].argmax(0).cpu().numpy()
                    truth = lab[:nj]
                d = dice_per_structure(pred.astype(np.uint8), truth.astype(np.uint8))
                rows.append({"subject": s.subject, "phase": s.phase, "ed": s.is_ed, **d,
                             "degrade_mse": float(parts["degrade"])})
        self.G.train()
        if not rows:
            return {}
        keys = ("lv_cavity", "lv_myocardium", "rv_cavity")
        res: dict[str, Any] = {}
        for tag, sel in (("", rows), ("ed_", [r for r in rows if r["ed"]]), ("es_", [r for r in rows if not r["ed"]])):
            for key in keys:
                res[tag + key] = float(np.nanmean([r[key] for r in sel])) if sel else float("nan")
        res["mean_dice"] = float(np.mean([res[k] for k in keys]))
        res["psnr"] = float("nan")
        res["ssim"] = float("nan")
        res["degrade_mse"] = float(np.mean([r["degrade_mse"] for r in rows]))
        res["n"] = len(rows)
        return res

    def _model_config(self, step: int, extra: dict | None = None) -> dict:
        d = super()._model_config(step, extra)
        d["training"]["data_kind"] = "lr-labels"
        return d
