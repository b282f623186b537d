"""V-AMA networks and the inference `Adapter` (spec section 4, paper section 3.2).

Design choices (see docs/vama.md):
- **Per-slice 2D on the LR in-plane grid.** Every LR slice of every phase is one 2D image; the networks
  are fully convolutional, so any in-plane size works (inputs are reflect-padded to a multiple of
  2**depth and cropped back).
- **Convolutional latent.** The encoder's last level gives `mu` and `log sigma` *maps* (1x1 convolutions,
  `latent_channels` x H/2**depth x W/2**depth): the latent grows with the image instead of hard-wiring a
  fully connected layer to one input size (the reference code's 400x400, 185 M parameters).
- **Residual outputs.** G_t returns I + lambda_t * I*_t, G_s returns I_s + lambda_s * I*_s.
- **Mixture.** G_s's posterior is mixed with G_t's: mu_m = mu_t + mu_s, sigma_m^2 = sigma_t^2 + sigma_s^2,
  z_m = mu_m + sigma_m * eps; G_t's encoder features are added to G_s's encoder features at every level
  ("injected likewise").
- **Intensities.** Each study is divided by its own 99.5th percentile (as Gemini-GAN's pre-processing)
  before the networks, which map contrast, gamma, noise and texture in that normalised space. The output
  is multiplied back by the same scale (`output_units` "source", the default: the study keeps its units,
  so SR images stay comparable with the input; Gemini-GAN is insensitive to the global scale anyway) or,
  with `output_units` "target", by the target domain's typical 99.5th percentile.
- At inference both networks take I_s (no alignment) and the latent is its mean (z = mu_m), so
  adaptation is deterministic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gemini_cmr.core.device import resolve_device
from gemini_cmr.core.errors import Cancelled, ModelError
from gemini_cmr.core.models import store
from gemini_cmr.core.models.preprocess import intensity_scale
from gemini_cmr.core.study import Study

log = logging.getLogger(__name__)

KIND = "vama"
VERSION = 1
ADAPTER_WEIGHTS = ("adapter.safetensors", "model.safetensors")
PICKLE_SUFFIXES = store.PICKLE_SUFFIXES
PERCENTILE = 99.5  # as core.models.preprocess (Gemini-GAN)

DEFAULT_MODEL = {
    "base_channels": 16,
    "depth": 3,
    "latent_channels": 16,
    "norm": "batch",
    "disc_channels": 32,
    "lambda_t": 1.0,
    "lambda_s": 1.0,
}
DEFAULT_LOSS = {"mse": 1.0, "kl": 0.5, "l1": 1.0, "gan": 0.05, "identity": 0.0}  # identity: L1(out, input)
LOGSIG_MIN, LOGSIG_MAX = -10.0, 5.0


# --- building blocks ----------------------------------------------------------------------------------
def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ModelError(f"unknown normalisation {kind!r} in the V-AMA config")


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by normalisation and ReLU (the paper's U-Net block)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), _norm(norm, cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), _norm(norm, cout), nn.ReLU(inplace=True),
    )


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL( N(mu, exp(logvar)) || N(0, 1) ), averaged over all latent elements.

    0.5 * (sigma^2 + mu^2 - log sigma^2 - 1) per element.
    """
    return 0.5 * torch.mean(torch.exp(logvar) + mu * mu - logvar - 1.0)


def mixture_posterior(mu_t, logsig_t, mu_s, logsig_s) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of two independent Gaussians: (mu_m, log sigma_m^2) with mu_m = mu_t + mu_s and
    sigma_m^2 = sigma_t^2 + sigma_s^2."""
    mu_m = mu_t + mu_s
    logvar_m = torch.logaddexp(2.0 * logsig_t, 2.0 * logsig_s)
    return mu_m, logvar_m


class VariationalUNet(nn.Module):
    """U-Net encoder-decoder with a convolutional Gaussian latent at the bottom and a residual output.

    `encode(x, inject)` returns the encoder features of every level and (mu, log sigma) maps;
    `inject` (one tensor per level, same shapes) is added to the encoder features (source mixture).
    `decode(z, feats)` returns I* (one channel); the caller forms I + lambda * I*.
    """

    def __init__(self, base_channels: int = 16, depth: int = 3, latent_channels: int = 16,
                 norm: str = "batch", in_channels: int = 1):
        super().__init__()
        self.depth = int(depth)
        chans = [base_channels * 2**i for i in range(self.depth + 1)]
        self.enc = nn.ModuleList(
            [_block(in_channels if i == 0 else chans[i - 1], chans[i], norm) for i in range(self.depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.mu = nn.Conv2d(chans[-1], latent_channels, 1)
        self.logsig = nn.Conv2d(chans[-1], latent_channels, 1)
        self.from_z = nn.Sequential(nn.Conv2d(latent_channels, chans[-1], 3, padding=1),
                                    _norm(norm, chans[-1]), nn.ReLU(inplace=True))
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(self.depth))]
        )
        self.dec = nn.ModuleList([_block(2 * chans[i], chans[i], norm) for i in reversed(range(self.depth))])
        self.out = nn.Conv2d(chans[0], 1, 1)
        # I* starts at zero, so I + lambda * I* starts as the identity and training moves it from there.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def encode(self, x: torch.Tensor, inject: list[torch.Tensor] | None = None):
        feats = []
        h = x
        for i, blk in enumerate(self.enc):
            if i > 0:
                h = self.pool(h)
            h = blk(h)
            if inject is not None:
                h = h + inject[i]
            feats.append(h)
        logsig = torch.clamp(self.logsig(h), LOGSIG_MIN, LOGSIG_MAX)
        return feats, self.mu(h), logsig

    def decode(self, z: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        h = self.from_z(z)
        for up, blk, skip in zip(self.up, self.dec, reversed(feats[:-1])):
            h = blk(torch.cat([up(h), skip], dim=1))
        return self.out(h)


def _sample(mu: torch.Tensor, logvar: torch.Tensor, stochastic: bool) -> torch.Tensor:
    if not stochastic:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class TargetNetwork(nn.Module):
    """G_t: variational target network. Output I_out = I + lambda_t * I*."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.lam = float(cfg["lambda_t"])
        self.net = VariationalUNet(cfg["base_channels"], cfg["depth"], cfg["latent_channels"], cfg["norm"])

    def forward(self, x: torch.Tensor, stochastic: bool | None = None) -> dict[str, torch.Tensor | list]:
        stochastic = self.training if stochastic is None else stochastic
        feats, mu, logsig = self.net.encode(x)
        logvar = 2.0 * logsig
        z = _sample(mu, logvar, stochastic)
        out = x + self.lam * self.net.decode(z, feats)
        return {"out": out, "mu": mu, "logsig": logsig, "logvar": logvar, "feats": feats}


class SourceMixtureNetwork(nn.Module):
    """G_s: variational source mixture network. Takes I_s and G_t's encoding of I_s (features, mu_t,
    log sigma_t); output I_s + lambda_s * I*_s decoded from the mixed latent."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.lam = float(cfg["lambda_s"])
        self.net = VariationalUNet(cfg["base_channels"], cfg["depth"], cfg["latent_channels"], cfg["norm"])

    def forward(self, x: torch.Tensor, target: dict, stochastic: bool | None = None) -> dict:
        stochastic = self.training if stochastic is None else stochastic
        feats, mu_s, logsig_s = self.net.encode(x, inject=target["feats"])
        mu_m, logvar_m = mixture_posterior(target["mu"], target["logsig"], mu_s, logsig_s)
        z = _sample(mu_m, logvar_m, stochastic)
        out = x + self.lam * self.net.decode(z, feats)
        return {"out": out, "mu": mu_m, "logvar": logvar_m, "mu_s": mu_s, "logsig_s": logsig_s}


class PatchDiscriminator(nn.Module):
    """D_t / D_s: a small fully convolutional PatchGAN giving a map of real/fake logits."""

    def __init__(self, channels: int = 32):
        super().__init__()
        c = int(channels)
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * c, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.InstanceNorm2d(2 * c, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * c, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def model_config(overrides: dict | None = None) -> dict:
    cfg = dict(DEFAULT_MODEL)
    for k, v in (overrides or {}).items():
        if k not in DEFAULT_MODEL:
            raise ModelError(f"unknown V-AMA model setting {k!r}")
        cfg[k] = type(DEFAULT_MODEL[k])(v)
    if cfg["depth"] < 1 or cfg["base_channels"] < 1 or cfg["latent_channels"] < 1:
        raise ModelError("V-AMA depth, base_channels and latent_channels must be positive")
    return cfg


class VAMA(nn.Module):
    """The four V-AMA networks. `adapt_normalised` is the inference path (both networks take I_s)."""

    def __init__(self, cfg: dict | None = None):
        super().__init__()
        self.cfg = model_config(cfg)
        self.g_t = TargetNetwork(self.cfg)
        self.g_s = SourceMixtureNetwork(self.cfg)
        self.d_t = PatchDiscriminator(self.cfg["disc_channels"])
        self.d_s = PatchDiscriminator(self.cfg["disc_channels"])

    @property
    def multiple(self) -> int:
        return 2 ** self.cfg["depth"]

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Reflect/replicate-pad (N, 1, H, W) so H and W are multiples of 2**depth."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, (h, w)

    def adapt_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) normalised source slices -> adapted slices (deterministic, no alignment)."""
        xp, (h, w) = self.pad(x)
        t = self.g_t(xp, stochastic=False)
        s = self.g_s(xp, t, stochastic=False)
        return s["out"][..., :h, :w]

    def generators_state(self) -> dict[str, torch.Tensor]:
        return {f"g_t.{k}": v for k, v in self.g_t.state_dict().items()} | {
            f"g_s.{k}": v for k, v in self.g_s.state_dict().items()
        }


# --- safetensors + JSON (through core.models.store) ----------------------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
    """Write tensors as safetensors atomically."""
    store.save_tensors(path, tensors, {k: str(v) for k, v in (meta or {}).items()})
    return Path(path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read safetensors (never unpickles; pickle-style suffixes are refused)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError("refusing to load a pickled checkpoint; V-AMA adapters are safetensors + JSON", path)
    return store.load_tensors(path)


sha256_file = store.file_sha256


def save_adapter(folder: str | Path, model: VAMA, config: dict) -> Path:
    """Write `folder/adapter.safetensors` (generators only) and `folder/config.json` atomically."""
    from gemini_cmr.core.io.atomic import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    cfg.update({"kind": KIND, "version": VERSION, "model": dict(model.cfg)})
    save_tensors(folder / ADAPTER_WEIGHTS[0], model.generators_state(), {"kind": KIND})
    atomic_write_text(folder / "config.json", json.dumps(cfg, indent=2, sort_keys=True))
    return folder


def record_evaluation(folder: str | Path, evaluation: dict) -> Path:
    """Merge `evaluation` into the adapter's `config.json` ("evaluation": measured effect of the adapter,
    e.g. {"source_labelled": ...} from training or {"held_out": ...} from an evaluation script)."""
    from gemini_cmr.core.io.atomic import atomic_write_text

    _, cfg_path = _resolve(folder)
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    config["evaluation"] = dict(config.get("evaluation") or {}) | dict(evaluation)
    atomic_write_text(cfg_path, json.dumps(config, indent=2, sort_keys=True))
    return cfg_path


def _resolve(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError("refusing to load a pickled checkpoint; V-AMA adapters are safetensors + JSON", path)
    if path.is_dir():
        cfg = path / "config.json"
        for name in ADAPTER_WEIGHTS:
            if (path / name).is_file():
                weights = path / name
                break
        else:
            raise ModelError("no adapter.safetensors or model.safetensors in the folder", path)
        if not cfg.is_file():
            raise ModelError("no config.json beside the adapter weights", path)
        return weights, cfg
    if path.suffix == ".safetensors" and path.is_file():
        cfg = path.with_suffix(".json")
        if not cfg.is_file():
            raise ModelError(f"no {cfg.name} beside the adapter weights", path)
        return path, cfg
    if not path.exists():
        raise ModelError("adapter not found", path)
    raise ModelError("not a V-AMA adapter (expected a folder or a .safetensors file)", path)


def percentile_scale(image: np.ndarray, q: float = PERCENTILE) -> float:
    """The normalisation scale of a study: its q-th intensity percentile (as Gemini-GAN's pre-processing)."""
    return intensity_scale(image, q)


ADAPTER_KEYS = ("kind", "version", "model", "gemini_model_id", "normalisation", "training", "alignment", "licence",
                "evaluation")
NORMS = ("batch", "instance", "none")


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, str | int | float | bool | type(None)) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def validate_config(config: dict, path: str | Path) -> None:
    """Check an adapter config whole (keys, types, ranges); the first problem is a one-line `ModelError`
    naming the file and the key (`kind` and `version` are checked by `Adapter.load` first)."""
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(float(v))

    def count(v: Any, lo: int, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    unknown = sorted(set(config) - set(ADAPTER_KEYS))
    if unknown:
        raise ModelError(f"unknown top-level key(s) {', '.join(map(repr, unknown))[:80]} in the adapter config "
                         f"(allowed: {', '.join(ADAPTER_KEYS)})", path)
    model = config.get("model") or {}
    if not isinstance(model, dict):
        raise ModelError(f"'model' must be a JSON object, not {_show(model)}", path)
    extra = sorted(set(model) - set(DEFAULT_MODEL))
    if extra:
        raise ModelError(f"unknown V-AMA model setting(s) {', '.join(map(repr, extra))[:80]}", path)
    checks = {"base_channels": (lambda v: count(v, 1, 1024), "an integer from 1 to 1024"),
              "depth": (lambda v: count(v, 1, 8), "an integer from 1 to 8"),
              "latent_channels": (lambda v: count(v, 1, 1024), "an integer from 1 to 1024"),
              "disc_channels": (lambda v: count(v, 1, 1024), "an integer from 1 to 1024"),
              "norm": (lambda v: v in NORMS, f"one of {', '.join(NORMS)}"),
              "lambda_t": (number, "a number"), "lambda_s": (number, "a number")}
    for key, (ok, expected) in checks.items():
        if key in model and not ok(model[key]):
            if key == "norm":
                raise ModelError(f"unknown normalisation {_show(model[key])} in model.norm (use {', '.join(NORMS)})",
                                 path)
            raise ModelError(f"invalid model section: model.{key} must be {expected}, not {_show(model[key])}",
                             path)
    top = model.get("base_channels", DEFAULT_MODEL["base_channels"]) * 2 ** model.get("depth", DEFAULT_MODEL["depth"])
    if top > 2048:
        raise ModelError(f"model is implausibly large (base_channels x 2^depth = {top} channels at the bottom; "
                         "at most 2048)", path)
    norm = config.get("normalisation")
    if not isinstance(norm, dict):
        raise ModelError(f"'normalisation' must be a JSON object with a positive target_scale, not {_show(norm)}",
                         path)
    extra = sorted(set(norm) - {"method", "percentile", "target_scale", "output_units"})
    if extra:
        raise ModelError(f"unknown key(s) in 'normalisation': {', '.join(map(str, extra))[:80]}", path)
    if not (number(norm.get("target_scale")) and norm["target_scale"] > 0):
        raise ModelError("config has no positive normalisation.target_scale", path)
    if norm.get("output_units", "source") not in ("source", "target"):
        raise ModelError(f"unknown normalisation.output_units {_show(norm.get('output_units'))}", path)
    if "percentile" in norm and not (number(norm["percentile"]) and 0 < norm["percentile"] <= 100):
        raise ModelError(f"normalisation.percentile must be a number above 0 and at most 100, not "
                         f"{_show(norm['percentile'])}", path)
    if norm.get("method", "percentile") != "percentile":
        raise ModelError(f"unknown normalisation.method {_show(norm.get('method'))} (expected \"percentile\")", path)
    gid = config.get("gemini_model_id")
    if gid is not None and not isinstance(gid, str):
        raise ModelError(f"gemini_model_id must be a string, not {_show(gid)}", path)
    for key, kind in (("training", dict), ("alignment", list)):
        if key in config and not isinstance(config[key], kind):
            raise ModelError(f"'{key}' must be a JSON {'object' if kind is dict else 'list'}, not "
                             f"{_show(config[key])}", path)


class Adapter:
    """A trained V-AMA adapter: maps a study from the source domain toward the target domain."""

    def __init__(self, model: VAMA, config: dict, adapter_id: str, path: Path | None = None,
                 device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.config = config
        self.adapter_id = adapter_id
        self.path = path
        self.device = torch.device(device)
        self.model.to(self.device)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Adapter:
        weights, cfg_path = _resolve(path)
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelError(f"unreadable config ({exc.__class__.__name__})", cfg_path) from None
        if not isinstance(config, dict) or config.get("kind") != KIND:
            kind = config.get("kind") if isinstance(config, dict) else None
            raise ModelError(f"not a V-AMA adapter (kind {kind!r}, expected {KIND!r})", cfg_path)
        version = config.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
            raise ModelError(f"unsupported adapter version {config.get('version')!r} (this build reads {VERSION})",
                             cfg_path)
        validate_config(config, cfg_path)
        try:
            model = VAMA(config.get("model") or {})
        except ModelError as exc:
            raise ModelError(str(exc), cfg_path) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"invalid model section in the config ({exc})", cfg_path) from None
        tensors = load_tensors(weights)
        expected = model.generators_state()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ModelError(
                f"weights do not match the config ({len(missing)} missing, {len(unexpected)} unexpected, "
                f"e.g. {(missing or unexpected)[0]})", weights)
        for k, v in tensors.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise ModelError(f"shape mismatch for {k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}",
                                 weights)
        model.g_t.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("g_t.")})
        model.g_s.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("g_s.")})
        dev = str(resolve_device(device))
        return cls(model, config, sha256_file(weights), Path(path), dev)

    @property
    def target_scale(self) -> float:
        """The target domain's typical 99.5th percentile (median over the training target studies)."""
        return float(self.config["normalisation"]["target_scale"])

    @property
    def output_units(self) -> str:
        """"source" (default): outputs are rescaled by the study's own normalisation scale, so they stay in
        the units of the study; "target": by `target_scale`, the target domain's typical units."""
        return str(self.config["normalisation"].get("output_units", "source"))

    @torch.no_grad()
    def adapt_array(self, image: np.ndarray, progress: Callable[[float, str], None] | None = None,
                    cancel: Callable[[], bool] | None = None, batch: int = 16) -> np.ndarray:
        """(T, Z, Y, X) source image -> adapted image (same shape, float32; units: `output_units`)."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 3:
            image = image[None]
        q = float(self.config["normalisation"].get("percentile", PERCENTILE))
        scale = percentile_scale(image, q)
        t, z, y, x = image.shape
        slices = torch.from_numpy(image.reshape(t * z, 1, y, x) / scale)
        out = np.empty((t * z, y, x), dtype=np.float32)
        for start in range(0, t * z, batch):
            if cancel is not None and cancel():
                raise Cancelled("V-AMA adaptation cancelled")
            chunk = slices[start:start + batch].to(self.device)
            out[start:start + batch] = self.model.adapt_normalised(chunk)[:, 0].float().cpu().numpy()
            if progress is not None:
                progress(min(1.0, (start + batch) / (t * z)), "V-AMA: adapting slices")
        back = scale if self.output_units == "source" else self.target_scale
        return (out * np.float32(back)).reshape(t, z, y, x)

    def adapt(self, study: Study, progress: Callable[[float, str], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> Study:
        """The study with intensities mapped toward the target domain (same grid, labels and metadata)."""
        image = self.adapt_array(study.image, progress, cancel)
        meta = replace(study.meta, warnings=list(study.meta.warnings),
                       extra={**study.meta.extra, "vama_adapter_id": self.adapter_id})
        return Study(image=image, affine=study.affine.copy(), phase_times_ms=study.phase_times_ms,
                     labels=None if study.labels is None else study.labels.copy(),
                     labelled_phases=list(study.labelled_phases), meta=meta)

    def describe(self) -> dict[str, Any]:
        return {"adapter_id": self.adapter_id, "gemini_model_id": self.config.get("gemini_model_id"),
                "path": str(self.path) if self.path else None, "training": self.config.get("training", {})}
