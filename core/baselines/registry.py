"""The comparison methods of the paper's Table 2 and how each is trained, saved and loaded.

```python
from gemini_cmr.core.baselines.registry import METHODS, train_method, load_method
summary = train_method("srgan-seg", data="DATA", out="RUN/srgan-seg", settings=Settings(max_steps=50))
net = load_method("srgan-seg", "RUN/srgan-seg/best")      # generator, eval mode
```
Every learned method is trained by `core.train.gemini.GeminiTrainer` (same data pipeline, augmentation,
schedule, checkpoints, resume and validation); the baselines only swap the networks and the trained
outputs through the trainer's hooks (`BaselineTrainer`). Gemini-GAN itself is the unmodified trainer.
Baseline models are folders with `model.safetensors` + `config.json` (kind "gemini-cmr-baseline").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gemini_cmr.core.baselines.interpolation import ORDERS
from gemini_cmr.core.baselines.models import ARCHS, BaselineConfig, BaselineGenerator
from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.models.discriminator import SRDiscriminator
from gemini_cmr.core.models.store import (
    file_sha256,
    load_model,
    load_state_checked,
    load_tensors,
    model_files,
    save_tensors,
    state_to_tensors,
)
from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig

KIND = "gemini-cmr-baseline"


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # as in the paper's Table 2
    kind: str  # "interp" | "baseline" | "gemini"
    tasks: tuple[str, ...]  # outputs it produces: "image", "seg"
    gan: bool = False


METHODS: dict[str, Method] = {
    "nearest": Method("nearest", "NN interpolation", "interp", ("image", "seg")),
    "linear": Method("linear", "Linear interpolation", "interp", ("image", "seg")),
    "bspline": Method("bspline", "B-spline interpolation", "interp", ("image", "seg")),
    "unet-seg": Method("unet-seg", "U-Net (seg only)", "baseline", ("seg",)),
    "unet-img": Method("unet-img", "U-Net (img only)", "baseline", ("image",)),
    "srgan-seg": Method("srgan-seg", "SR-GAN (seg only)", "baseline", ("seg",), gan=True),
    "srgan-img": Method("srgan-img", "SR-GAN (img only)", "baseline", ("image",), gan=True),
    "segsr-gan": Method("segsr-gan", "SegSR-GAN (joint)", "baseline", ("image", "seg"), gan=True),
    "gemini-gan": Method("gemini-gan", "Gemini-GAN (joint)", "gemini", ("image", "seg"), gan=True),
    # the same Gemini-GAN with the "acquired-2d" encoder (2D U-Net per acquired slice,
    # through-plane mixing, SR slices interpolated), the default for real cohorts
    "gemini-gan-a2d": Method("gemini-gan-a2d", "Gemini-GAN, acquired-2d (ours)", "gemini", ("image", "seg"),
                             gan=True),
}
GEMINI_ENCODERS = {"gemini-gan": "slices-as-channels", "gemini-gan-a2d": "acquired-2d"}
assert set(ORDERS) | set(ARCHS) | set(GEMINI_ENCODERS) == set(METHODS)


@dataclass
class Settings:
    """Training budget and sizes shared by every learned method of one benchmark."""

    epochs: int = 30
    max_steps: int | None = None
    quick: bool = False  # small networks, small crops (a smoke test)
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0
    depth: int = 64
    amp: str = "auto"


def model_dict(name: str, s: Settings) -> dict:
    """Architecture of a learned method at the benchmark's size."""
    widths = [8, 16, 32, 64] if s.quick else [16, 32, 64, 128, 128]
    if name in GEMINI_ENCODERS:
        d = {"depth": s.depth, "widths": widths, "input_to_heads": True}
        if GEMINI_ENCODERS[name] != "slices-as-channels":
            d["encoder"] = GEMINI_ENCODERS[name]
        return d
    return BaselineConfig(method=name, depth=s.depth, widths=widths, width=16 if s.quick else 32,
                          blocks=2 if s.quick else 6).to_dict()


def train_config(name: str, s: Settings) -> TrainConfig:
    m = METHODS[name]
    kw: dict[str, Any] = dict(
        model=model_dict(name, s), disc_width=8, lr=1e-3, omega_gan=1e-3 if m.gan else 0.0,
        epochs=s.epochs, max_steps=s.max_steps, batch_size=2 if s.quick else 4, crop=64 if s.quick else 128,
        seed=s.seed, amp=s.amp, num_threads=s.num_threads, max_phases=4, checkpoint_every=10**6,
    )
    return (TrainConfig if m.kind == "gemini" else BaselineTrainConfig)(**kw)


class BaselineTrainConfig(TrainConfig):
    def check_model(self) -> None:
        BaselineConfig.from_dict(dict(self.model))


class BaselineTrainer(GeminiTrainer):
    """`GeminiTrainer` with a baseline network: only its outputs are trained and shown to D_SR."""

    def parse_model_config(self, model: dict) -> BaselineConfig:
        cfg = BaselineConfig.from_dict(dict(model))
        self.tasks = cfg.tasks
        return cfg

    def build_networks(self, mcfg: BaselineConfig, k: int):
        g = BaselineGenerator(mcfg)
        in_ch = mcfg.depth * (("image" in mcfg.tasks) + ("seg" in mcfg.tasks) * k)
        return g, (SRDiscriminator(in_ch, self.cfg.disc_width) if self.cfg.omega_gan > 0 else None)

    def score(self, res: dict[str, Any]) -> float:
        # image-only networks: validation PSNR picks the best checkpoint (their Dice is always 0)
        return res["mean_dice"] if "seg" in self.tasks else res["psnr"]

    def save_generator(self, folder: Path, config: dict) -> None:
        save_baseline(folder, self.G, config)


def save_baseline(folder: str | Path, model: BaselineGenerator, config: dict | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(config or {}, kind=KIND, version=1, model=model.config.to_dict())
    cfg.setdefault("normalisation", {"method": "lr_percentile", "percentile": 99.5})
    weights = folder / "model.safetensors"
    save_tensors(weights, state_to_tensors(model), metadata={"kind": KIND, "format": "pt"})
    atomic_write_text(folder / "config.json", json.dumps(cfg, indent=2) + "\n")
    return weights


@dataclass
class LoadedMethod:
    name: str
    model: torch.nn.Module
    config: dict
    model_id: str


def load_method(name: str, path: str | Path, device: str | torch.device = "cpu") -> LoadedMethod:
    """A trained learned method from its model folder (eval mode)."""
    if METHODS[name].kind == "gemini":
        lm = load_model(path, device)
        return LoadedMethod(name, lm.generator, lm.config, lm.model_id)
    weights, cfg_path = model_files(path)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the model config: {exc}", cfg_path) from None
    if not isinstance(cfg, dict) or cfg.get("kind") != KIND:
        raise ModelError(f"not a baseline model (kind {cfg.get('kind') if isinstance(cfg, dict) else None!r})",
                         cfg_path)
    bc = BaselineConfig.from_dict(cfg.get("model", {}))
    if bc.method != name:
        raise ModelError(f"model is {bc.method!r}, expected {name!r}", cfg_path)
    net = BaselineGenerator(bc)
    load_state_checked(net, load_tensors(weights), weights)
    return LoadedMethod(name, net.to(device).eval(), cfg, file_sha256(weights))


def trainer_for(name: str, data: str | Path, out: str | Path, settings: Settings, callback=None) -> GeminiTrainer:
    m = METHODS[name]
    if m.kind == "interp":
        raise ModelError(f"{name} is an interpolation: nothing to train")
    cls = GeminiTrainer if m.kind == "gemini" else BaselineTrainer
    return cls(train_config(name, settings), data, out, device=settings.device, callback=callback)


def train_method(name: str, data: str | Path, out: str | Path, settings: Settings, callback=None) -> dict:
    """Train one learned method into OUT (resuming an interrupted run there); returns the trainer's summary."""
    out = Path(out)
    resume = (out / "last" / "state.json").exists()
    return trainer_for(name, data, out, settings, callback).run(resume=resume)
