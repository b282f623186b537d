"""Gemini-GAN training (spec section 3): CE (class-weighted) + lambda MSE + omega LSGAN, weight decay beta.

```python
from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig
t = GeminiTrainer(TrainConfig(epochs=10), data="DATA", out="RUN", device="auto", callback=print)
summary = t.run(resume=False)
```
RUN layout: `config.json` (the effective training config), `last/` and `best/` model folders
(`model.safetensors` + `config.json`, loadable by `core.predict.Predictor`), `last/state.safetensors` +
`last/state.json` (generator, discriminator, both Adam states, torch RNG, step/epoch/best/history: all
safetensors/JSON, no pickle), `cache/` (preprocessed samples) and `history.json`.

Determinism: the sample order of epoch e is a permutation seeded by (seed, e) and every item's augmentation
by (seed, e, rank, step, slot), so `resume` continues exactly where the last checkpoint stopped.
Under `torchrun` the generator is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA), ranks
take interleaved shards of each epoch, the discriminator's gradients are all-reduced by hand, and rank 0
validates and writes checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from gemini_cmr.core.device import autocast, autocast_dtype, resolve_device
from gemini_cmr.core.errors import DataError, ModelError
from gemini_cmr.core.evaluation.metrics import dice_per_structure, psnr, ssim
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.manifest import read_manifest
from gemini_cmr.core.models.blocks import channels_last_convs
from gemini_cmr.core.models.discriminator import SRDiscriminator, discriminator_input
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator, count_parameters
from gemini_cmr.core.models.store import (
    load_state_checked,
    load_tensors,
    model_files,
    read_config,
    save_model,
    state_to_tensors,
)
from gemini_cmr.core.predict import run_stacks
from gemini_cmr.core.train.data import Augment, TrainItems, class_frequencies, load_split
from gemini_cmr.core.train.loop import (
    DistInfo,
    Eta,
    EventCallback,
    StopFlag,
    all_reduce_mean_grads,
    any_rank,
    barrier,
    init_distributed,
    load_optimizer_state,
    optimizer_state,
    read_state,
    rng_state,
    set_rng_state,
    write_state,
)
from gemini_cmr.core.train.runs import BEST_DIR, HISTORY_JSON, LAST_DIR, STATE_JSON

log = logging.getLogger(__name__)
AUX_PREFIX = "A."  # tensors of the training-only modules (`GeminiTrainer.aux`) in state.safetensors


def read_training_config(path: str | Path) -> dict:
    """A training config file as a dict; `DataError` naming the file when it cannot be read or is not a
    JSON object."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the training config: {exc}", path) from None
    if not isinstance(d, dict):
        raise DataError("training config must be a JSON object", path)
    return d


# Model config counts that a saved model with 0 may grow into (`GeminiTrainer._init_from`) -> their head.
GROWABLE_HEADS = {"tp_knots": "tp_head", "seg_tp_knots": "seg_tp_head", "seg_tp_hidden": "seg_tp_deep"}


@dataclass
class TrainConfig:
    model: dict = field(default_factory=lambda: GeminiConfig().to_dict())
    disc_width: int = 64  # D_SR base width (64 = the paper's 64..512)
    seg_input: str = "softmax"  # what D_SR sees of the segmentation: "softmax" | "argmax"
    lr: float = 1e-4
    lr_d: float | None = None  # None = lr
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-6  # beta: L2 weight decay
    lambda_mse: float = 1.0
    omega_gan: float = 1e-3
    class_weights: Any = "auto"  # "auto" (inverse sqrt of training frequencies) or a list of K floats
    dice_weight: float = 0.0  # soft Dice loss on the foreground classes added to CE (0 = the paper's CE only)
    init: str | None = None  # model folder whose generator weights start a new run (fine-tuning); None = random
    lr_schedule: str = "cosine"  # "cosine" (to 5% of lr) | "poly" ((1 - t)^0.9, nnU-Net's) | "constant"
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 4
    crop: int = 128
    heart_centred: float = 0.8
    flip: bool = True
    gain: float = 0.15
    noise: float = 0.02
    val_every: int = 1  # epochs
    checkpoint_every: int = 200  # steps
    seed: int = 0
    amp: str = "auto"  # "auto" | "off" | "bf16" | "fp16"
    percentile: float = 99.5
    num_threads: int = 0  # 0 = torch default
    val_split: str = "val"
    max_phases: int = 4  # labelled phases per subject (ED, ES + evenly spaced others); 0 = all
    cache_dir: str | None = None  # preprocessed-sample cache; None = RUN/cache

    def __post_init__(self):
        if self.seg_input not in ("softmax", "argmax"):
            raise DataError(f"seg_input must be 'softmax' or 'argmax', got {self.seg_input!r}")
        if self.lr_schedule not in ("cosine", "poly", "constant"):
            raise DataError(f"lr_schedule must be 'cosine', 'poly' or 'constant', got {self.lr_schedule!r}")
        try:
            self.check_model()
        except ModelError as exc:
            raise DataError(f"training config: {exc}") from None
        self.betas = tuple(self.betas)

    def check_model(self) -> None:
        """Validate `model` (ModelError); hook for the baselines' configs (core.baselines)."""
        GeminiConfig.from_dict(dict(self.model))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown training config keys: {', '.join(unknown)}")
        d = dict(d)
        if "model" in d:
            d["model"] = {**GeminiConfig().to_dict(), **d["model"]}
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TrainConfig:
        d = read_training_config(path)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes over the batch; `mask` (B, D, 1, 1) selects the slices."""
    k = logits.shape[1]
    probs = torch.softmax(logits, 1)[:, 1:] * mask[:, None]
    truth = _one_hot(labels, k)[:, 1:] * mask[:, None]
    dims = (0, 2, 3, 4)
    inter = (probs * truth).sum(dims)
    denom = probs.sum(dims) + truth.sum(dims)
    return 1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean()


def _one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(B, D, H, W) int64 -> (B, K, D, H, W) float."""
    return F.one_hot(labels, k).permute(0, 4, 1, 2, 3).float()


def resolve_class_weights(value, frequencies, k: int) -> list[float]:
    """CE class weights: "auto" = inverse square root of the training label frequencies (`frequencies()`,
    floored at 1e-4), normalised to mean 1; else the K values given."""
    if value == "auto":
        w = np.maximum(frequencies(), 1e-4) ** -0.5
        w = w / w.mean()
    else:
        w = np.asarray(value, np.float64)
        if w.shape != (k,):
            raise DataError(f"class_weights must list {k} values")
    return [float(v) for v in w]


class GeminiTrainer:
    # Hooks for the comparison methods (core.baselines): the outputs trained (losses and what D_SR sees),
    # the networks, the validation score that picks `best/`, and how a generator is saved.
    tasks: tuple[str, ...] = ("image", "seg")
    # Whether validation chooses `best/`; False (held-out subjects, `core.train.semi`): they are validated
    # for the curves only and `best/` is the last step.
    choose_best: bool = True
    # Training-only modules optimised with the generator (deep supervision heads, `core.train.semi`): kept in
    # the checkpoint state (`last/state.safetensors`, prefix AUX_PREFIX), never in a model folder.
    aux: torch.nn.Module | None = None

    def parse_model_config(self, model: dict):
        return GeminiConfig.from_dict(dict(model))

    def build_networks(self, mcfg, k: int) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        g = GeminiGenerator(mcfg)
        in_ch = mcfg.depth * (("image" in self.tasks) + ("seg" in self.tasks) * k)
        return g, (SRDiscriminator(in_ch, self.cfg.disc_width) if self.cfg.omega_gan > 0 else None)

    def score(self, res: dict[str, Any]) -> float:
        return res["mean_dice"]

    def save_generator(self, folder: Path, config: dict) -> None:
        save_model(folder, self.G, config)

    def __init__(self, config: TrainConfig, data: str | Path, out: str | Path, device: str = "auto",
                 callback: EventCallback | None = None, stop: StopFlag | None = None):
        self.cfg = config
        self.data = Path(data)
        self.out = Path(out)
        self.device = resolve_device(device)
        self.callback = callback
        self.stop = stop if stop is not None else StopFlag()
        self.dist: DistInfo = DistInfo()
        self._seconds_before = 0.0  # training time of the sessions before a resume (state.json)
        self._t0 = time.perf_counter()

    # --- events ------------------------------------------------------------------------------------
    def emit(self, event: str, **kw) -> None:
        if self.callback is not None and self.dist.main:
            self.callback({"event": event, **kw})

    # --- set-up ------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        read_manifest(self.data)  # layout errors before anything else
        cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        if self.dist.main:
            train = load_split(self.data, "train", cfg.percentile, cache, cfg.max_phases)
            barrier(self.dist)
        else:
            barrier(self.dist)
            train = load_split(self.data, "train", cfg.percentile, cache, cfg.max_phases)
        if not train:
            raise DataError("no subjects with split 'train' in the manifest", self.data / "manifest.json")
        self.val = (load_split(self.data, cfg.val_split, cfg.percentile, cache, 2) if self.dist.main else [])
        mcfg = self.parse_model_config(cfg.model)
        self.items = TrainItems(train, mcfg.depth, mcfg.multiple)
        if cfg.crop and cfg.crop % mcfg.multiple:
            raise DataError(f"crop {cfg.crop} must be a multiple of {mcfg.multiple}")
        self.aug = Augment(cfg.crop, cfg.heart_centred, cfg.flip, cfg.gain, cfg.noise)
        k = mcfg.n_classes
        self.class_weights = resolve_class_weights(cfg.class_weights, lambda: class_frequencies(train, k), k)
        torch.manual_seed(cfg.seed)
        self.G, self.D = self.build_networks(mcfg, k)
        if cfg.init:
            self._init_from(cfg.init)
        self.G = self.place(self.G)
        self.D = self.D.to(self.device) if self.D is not None else None
        self.G_train = DistributedDataParallel(self.G) if self.dist.enabled else self.G
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      weight_decay=cfg.weight_decay)
        self.opt_d = (torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d or cfg.lr, betas=cfg.betas,
                                       weight_decay=cfg.weight_decay) if self.D is not None else None)
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        world = self.dist.world
        per_rank = max(1, len(self.items) // world)
        self.steps_per_epoch = max(1, math.ceil(per_rank / cfg.batch_size))
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.w_tensor = torch.tensor(self.class_weights, dtype=torch.float32, device=self.device)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on the training device; on the CPU with its 2D convolutions in channels_last
        (`channels_last_convs`: oneDNN's convolutions and their backward are faster so, and the decoders then
        convolve their skip connections split instead of concatenated; the same weights, the arithmetic the
        same up to rounding; benchmarks/bench_train_step.py)."""
        model = model.to(self.device)
        return channels_last_convs(model) if self.device.type == "cpu" else model

    def _init_from(self, folder: str) -> None:
        """Start from the generator weights of a saved model (same architecture), e.g. to fine-tune.
        Growing a linear acquired-2d model (`tp_knots` / `seg_tp_knots` 0) into one with through-plane
        residuals, or adding the non-linear score-residual head (`seg_tp_hidden`), is allowed: the new heads
        start at zero, so the new model starts exactly where the saved one was."""
        weights, cfg_path = model_files(folder)
        saved = read_config(cfg_path).get("model", {})
        theirs, mine = GeminiConfig.from_dict(dict(saved)).to_dict(), self.G.config.to_dict()
        grown = [k for k in GROWABLE_HEADS if theirs[k] == 0 and mine[k] > 0]
        if theirs != dict(mine, **dict.fromkeys(grown, 0)):
            raise DataError(f"init model architecture {saved} differs from the training config's "
                            f"{self.G.config.to_dict()}", cfg_path)
        tensors = load_tensors(weights)
        heads = tuple(GROWABLE_HEADS[k] + "." for k in grown)
        if heads:
            tensors.update({k: v for k, v in self.G.state_dict().items() if k.startswith(heads)})
        load_state_checked(self.G, tensors, weights)
        log.info("generator initialised from %s%s", folder,
                 f" ({', '.join(GROWABLE_HEADS[k] for k in grown)} added)" if grown else "")

    # --- data order ----------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, ...]:
        cfg = self.cfg
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.items))
        seq = perm[self.dist.rank::self.dist.world][: max(1, len(self.items) // self.dist.world)]
        xs, imgs, labs, masks = [], [], [], []
        for j in range(cfg.batch_size):
            idx = int(seq[(k * cfg.batch_size + j) % len(seq)])
            rng = np.random.default_rng([cfg.seed, epoch, self.dist.rank, k, j])
            x, img, lab, mask = self.items.get(idx, rng, self.aug)
            xs.append(x)
            imgs.append(img)
            labs.append(lab)
            masks.append(mask)
        dev = self.device
        return (torch.from_numpy(np.stack(xs)).to(dev), torch.from_numpy(np.stack(imgs)).to(dev),
                torch.from_numpy(np.stack(labs)).to(dev), torch.from_numpy(np.stack(masks)).to(dev))

    def _lr(self, step: int) -> float:
        if self.cfg.lr_schedule == "constant":
            return 1.0
        t = min(1.0, step / max(1, self.total_steps))
        if self.cfg.lr_schedule == "poly":
            return (1.0 - t) ** 0.9
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    # --- one step --------------------------------------------------------------------------------------
    def _step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        k = self.G.config.n_classes
        factor = self._lr(step)
        for opt, base in ((self.opt_g, cfg.lr), (self.opt_d, cfg.lr_d or cfg.lr)):
            if opt is not None:
                for g in opt.param_groups:
                    g["lr"] = base * factor
        x, img_t, lab_t, mask = self._batch(step)
        m = mask.float()[:, :, None, None]  # (B, D, 1, 1)
        self.G_train.train()
        with autocast(self.device, self.amp_dtype):
            sr, logits = self.G_train(x)
        sr, logits = sr.float(), logits.float()
        out: dict[str, float] = {}
        fake = None
        if self.D is not None:
            self.D.train()
            probs = torch.softmax(logits, 1)
            seg = probs if cfg.seg_input == "softmax" else _one_hot(probs.argmax(1), k)
            fake = self._d_input(sr * m, seg * m[:, None])
            real = self._d_input(img_t * m, _one_hot(lab_t, k) * m[:, None])
            for p in self.D.parameters():
                p.requires_grad_(True)
            with autocast(self.device, self.amp_dtype):
                d_real = self.D(real).float()
                d_fake = self.D(fake.detach()).float()
            loss_d = 0.5 * (((d_real - 1) ** 2).mean() + (d_fake**2).mean())
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(loss_d).backward()
            all_reduce_mean_grads(self.D.parameters(), self.dist)
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            out["loss_d"] = float(loss_d.detach())
            for p in self.D.parameters():
                p.requires_grad_(False)
        vox_w = self.w_tensor[lab_t] * m
        ce = (F.cross_entropy(logits, lab_t, weight=self.w_tensor, reduction="none") * m).sum() / vox_w.sum()
        n_vox = m.sum() * x.shape[-1] * x.shape[-2]
        mse = (((sr - img_t) ** 2) * m).sum() / n_vox
        if cfg.dice_weight > 0:
            ce = ce + cfg.dice_weight * soft_dice_loss(logits, lab_t, m)
        loss = (ce if "seg" in self.tasks else 0.0) + (cfg.lambda_mse * mse if "image" in self.tasks else 0.0)
        if fake is not None:
            with autocast(self.device, self.amp_dtype):
                g_adv = ((self.D(fake).float() - 1) ** 2).mean()
            loss = loss + cfg.omega_gan * g_adv
            out["gan"] = float(g_adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        out.update(loss=float(loss.detach()), ce=float(ce.detach()), mse=float(mse.detach()),
                   lr=cfg.lr * factor)
        return out

    def _d_input(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        if "seg" not in self.tasks:
            return image
        if "image" not in self.tasks:
            return seg.reshape(seg.shape[0], -1, *seg.shape[-2:])
        return discriminator_input(image, seg)

    # --- validation ---------------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        self.G.eval()
        rows = []
        for s in self.val:
            img, lab = run_stacks(self.G, s.x[None].astype(np.float32), self.device)
            tgt = s.image.astype(np.float32)
            rng_ = float(tgt.max() - tgt.min()) or 1.0
            d = dice_per_structure(lab[0], s.labels)
            rows.append({"subject": s.subject, "phase": s.phase, **d, "psnr": psnr(img[0], tgt, rng_),
                         "ssim": ssim(img[0], tgt, rng_) if min(tgt.shape) >= 7 else float("nan")})
        self.G.train()
        if not rows:
            return {}
        keys = ("lv_cavity", "lv_myocardium", "rv_cavity", "psnr", "ssim")
        res = {key: float(np.nanmean([r[key] for r in rows])) for key in keys}
        res["mean_dice"] = float(np.mean([res["lv_cavity"], res["lv_myocardium"], res["rv_cavity"]]))
        res["n"] = len(rows)
        return res

    # --- checkpoints ------------------------------------------------------------------------------------
    def _model_config(self, step: int, extra: dict | None = None) -> dict:
        return {"training": {"seed": self.cfg.seed, "data": str(self.data), "step": step,
                             "epoch": step / self.steps_per_epoch, "config": self.cfg.to_dict(),
                             "class_weights": self.class_weights, **(extra or {})},
                "normalisation": {"method": "lr_percentile", "percentile": self.cfg.percentile}}

    def _save_last(self, step: int, best: float | None, history: list) -> None:
        folder = self.out / LAST_DIR
        self.save_generator(folder, self._model_config(step))
        tensors = {f"G.{k}": v for k, v in state_to_tensors(self.G).items()}
        if self.aux is not None:
            tensors.update({f"{AUX_PREFIX}{k}": v for k, v in state_to_tensors(self.aux).items()})
        t, meta_g = optimizer_state(self.opt_g, "opt_g")
        tensors.update(t)
        meta: dict[str, Any] = {"step": step, "epoch": step / self.steps_per_epoch, "best_score": best,
                                "train_seconds": self._train_seconds(),
                                "history": history, "opt_g": meta_g, "config": self.cfg.to_dict(),
                                "total_steps": self.total_steps, "world_size": self.dist.world}
        if self.D is not None:
            tensors.update({f"D.{k}": v for k, v in state_to_tensors(self.D).items()})
            t, meta_d = optimizer_state(self.opt_d, "opt_d")
            tensors.update(t)
            meta["opt_d"] = meta_d
        tensors.update(rng_state())
        write_state(folder, tensors, meta)
        self.emit("checkpoint", kind="last", step=step, path=str(folder))

    def _train_seconds(self) -> float | None:
        """Training time of the run so far, resumed sessions included (None when an earlier one is unknown)."""
        if self._seconds_before is None:
            return None
        return self._seconds_before + time.perf_counter() - self._t0

    def _load_last(self) -> tuple[int, float | None, list]:
        folder = self.out / LAST_DIR
        tensors, meta = read_state(folder)
        load_state_checked(self.G, {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}, folder)
        aux = {k[len(AUX_PREFIX):]: v for k, v in tensors.items() if k.startswith(AUX_PREFIX)}
        if self.aux is not None:
            if not aux:
                raise DataError("the checkpoint was trained without deep supervision (the config asks for it)",
                                folder)
            load_state_checked(self.aux, aux, folder)
        elif aux:
            raise DataError("the checkpoint was trained with deep supervision (the config has none)", folder)
        load_optimizer_state(self.opt_g, "opt_g", tensors, meta["opt_g"])
        if self.D is not None:
            if "opt_d" not in meta:
                raise DataError("the checkpoint has no discriminator (trained with omega_gan 0)", folder)
            load_state_checked(self.D, {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}, folder)
            load_optimizer_state(self.opt_d, "opt_d", tensors, meta["opt_d"])
        set_rng_state(tensors)
        before = meta.get("train_seconds")  # None: a checkpoint that did not record it (time unknown)
        self._seconds_before = None if before is None else float(before)
        return int(meta["step"]), meta.get("best_score"), list(meta.get("history", []))

    # --- main loop ----------------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train; returns a summary. `stop_after` (global step) stops early with a last checkpoint."""
        cfg = self.cfg
        self._prepare()
        step, best, history = 0, None, []
        if resume:
            step, best, history = self._load_last()
        elif (self.out / LAST_DIR / STATE_JSON).exists() and self.dist.main:
            log.warning("%s already holds a run; starting over (use --resume to continue)", self.out)
        if self.dist.main:
            atomic_write_text(self.out / "config.json", json.dumps(
                {"training": cfg.to_dict(), "data": str(self.data.resolve()), "device": str(self.device),
                 "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                 "world_size": self.dist.world, "class_weights": self.class_weights}, indent=2) + "\n")
        self.emit("start", step=step, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                  n_train_items=len(self.items), n_val=len(self.val), device=str(self.device),
                  amp=str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                  world_size=self.dist.world, generator_parameters=count_parameters(self.G),
                  resumed=bool(resume))
        eta = Eta(self.total_steps, step)
        t0 = self._t0 = time.perf_counter()
        status = "done"
        last_saved = step
        end = self.total_steps if stop_after is None else min(self.total_steps, stop_after)
        while step < end:
            if any_rank(bool(self.stop), self.dist):
                status = "interrupted"
                break
            losses = self._step(step)
            step += 1
            epoch = step / self.steps_per_epoch
            self.emit("step", step=step, total_steps=self.total_steps, epoch=epoch, **losses,
                      eta_s=eta(step), elapsed_s=time.perf_counter() - t0)
            epoch_end = step % self.steps_per_epoch == 0
            if epoch_end and self.dist.main and self.val and (step // self.steps_per_epoch) % cfg.val_every == 0:
                res = self.validate()
                history.append({"step": step, "epoch": epoch, **res})
                improved = self.choose_best and (best is None or self.score(res) > best)
                if improved:
                    best = self.score(res)
                    self.save_generator(self.out / BEST_DIR, self._model_config(step, {"val": res}))
                self.emit("val", step=step, epoch=epoch, best=improved, **res)
                atomic_write_text(self.out / HISTORY_JSON, json.dumps(history, indent=2) + "\n")
            if (step - last_saved >= cfg.checkpoint_every or epoch_end) and self.dist.main:
                self._save_last(step, best, history)
                last_saved = step
            barrier(self.dist)
        if status == "done" and step < self.total_steps:
            status = "stopped"
        if self.dist.enabled:  # BN running statistics: every rank ends with rank 0's (saved) buffers
            for buf in self.G.buffers():
                dist.broadcast(buf, 0)
        if (status == "done" and self.dist.main and self.val
                and (not history or history[-1]["step"] != step)):
            res = self.validate()
            history.append({"step": step, "epoch": step / self.steps_per_epoch, **res})
            improved = self.choose_best and (best is None or self.score(res) > best)
            if improved:
                best = self.score(res)
                self.save_generator(self.out / BEST_DIR, self._model_config(step, {"val": res}))
            self.emit("val", step=step, epoch=step / self.steps_per_epoch, best=improved, **res)
            atomic_write_text(self.out / HISTORY_JSON, json.dumps(history, indent=2) + "\n")
            last_saved = -1
        if self.dist.main:
            if last_saved != step or not (self.out / LAST_DIR / STATE_JSON).exists():
                self._save_last(step, best, history)
            if not self.val and status == "done":
                self.save_generator(self.out / BEST_DIR, self._model_config(step, {"note": "no validation split"}))
            elif not self.choose_best and status == "done":
                self.save_generator(self.out / BEST_DIR, self._model_config(
                    step, {"note": "last step: the validation subjects are held out and chose nothing",
                           "val": history[-1] if history else {}}))
        barrier(self.dist)
        summary = {"status": status, "step": step, "total_steps": self.total_steps, "best_score": best,
                   "elapsed_s": time.perf_counter() - t0, "out": str(self.out),
                   "train_seconds": self._train_seconds(),
                   "weights_sha256": _state_digest(self.G)}
        self.emit(status, **summary)
        if self.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()
        return summary


def _state_digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
