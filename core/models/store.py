"""Model files: safetensors tensors + a JSON config (docs/DEVELOPING.md, "Contract: model files").

A model is a folder holding `model.safetensors` + `config.json`, or a `NAME.safetensors` file with a
sibling `NAME.json`. Loading never unpickles: `.pt`, `.pth`, `.pkl`, `.ckpt` files are refused.
The model identity (`model_id`) is the sha256 of the weights file. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.io.atomic import atomic_write_bytes, atomic_write_text
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.resources import bundled_model_path

KIND = "gemini-gan"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
BUNDLED_MODEL_DIR = bundled_model_path()
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


def model_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, config) paths for a model folder or a `.safetensors` file; checks they exist."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(
            "pickle-based model files are not loaded (they can run arbitrary code); "
            "convert the weights to safetensors + a JSON config", p)
    if p.is_dir():
        weights, config = p / WEIGHTS_NAME, p / CONFIG_NAME
    elif p.suffix == ".safetensors":
        weights, config = p, p.with_suffix(".json")
    elif p.suffix == ".json" and p.exists():
        weights, config = p.with_suffix(".safetensors"), p
        if p.name == CONFIG_NAME:
            weights = p.with_name(WEIGHTS_NAME)
    else:
        raise ModelError("not a model: expected a folder with model.safetensors + config.json "
                         "or a .safetensors file with a sibling .json", p)
    if not weights.exists():
        raise ModelError("model weights not found", weights)
    if not config.exists():
        raise ModelError("model config (JSON) not found", config)
    return weights, config


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a model's JSON config (kind, version, model section)."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the model config: {exc}", path) from None
    if not isinstance(cfg, dict):
        raise ModelError("model config must be a JSON object", path)
    kind = cfg.get("kind")
    if kind != KIND:
        raise ModelError(f"unknown model kind {kind!r} (expected {KIND!r})", path)
    if cfg.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ModelError(f"unsupported model format version {cfg.get('version')!r}", path)
    if "model" not in cfg:
        raise ModelError("model config has no 'model' section", path)
    try:
        GeminiConfig.from_dict(cfg["model"])
    except ModelError as exc:
        raise ModelError(str(exc), path) from None
    return cfg


# --- tensors ---------------------------------------------------------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Atomically write a dict of tensors as safetensors."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(clean, metadata=metadata))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read safetensors file: {exc}", path) from None


def state_to_tensors(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        out[k] = v.to(dtype) if (dtype is not None and v.is_floating_point()) else v
    return out


def load_state_checked(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str | Path) -> None:
    """Load `tensors` into `model`: names and shapes must match exactly (else ModelError)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {unexpected[0]})")
        raise ModelError("weights do not match the config: " + ", ".join(parts), where)
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ModelError(
                f"shape mismatch for {k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}", where)
    model.load_state_dict({k: t.to(expected[k].dtype) for k, t in tensors.items()}, strict=True)


# --- generator models ------------------------------------------------------------------------------
def save_model(
    path: str | Path,
    model: GeminiGenerator,
    config: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write `model` as a model folder (or `NAME.safetensors` + `NAME.json`). Returns the weights path.

    `config` is the full JSON config (its "model" section is replaced by the model's own architecture).
    `half` stores floating-point tensors as float16.
    """
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError("models are written as safetensors + JSON only", p)
    if p.suffix == ".safetensors":
        weights, cfg_path = p, p.with_suffix(".json")
    else:
        weights, cfg_path = p / WEIGHTS_NAME, p / CONFIG_NAME
    cfg = dict(config or {})
    cfg["kind"] = KIND
    cfg["version"] = FORMAT_VERSION
    cfg["model"] = model.config.to_dict()
    cfg.setdefault("normalisation", {"method": "lr_percentile", "percentile": 99.5})
    cfg["weights_dtype"] = "float16" if half else "float32"
    save_tensors(weights, state_to_tensors(model, torch.float16 if half else None),
                 metadata={"kind": KIND, "format": "pt"})
    atomic_write_text(cfg_path, json.dumps(cfg, indent=2) + "\n")
    return weights


@dataclass
class LoadedModel:
    generator: GeminiGenerator
    config: dict[str, Any]
    model_id: str
    weights_path: Path


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a Gemini-GAN generator (eval mode, float32) from a model folder/file; None = bundled model."""
    weights, cfg_path = model_files(BUNDLED_MODEL_DIR if path is None else path)
    cfg = read_config(cfg_path)
    model = GeminiGenerator(GeminiConfig.from_dict(cfg["model"]))
    load_state_checked(model, load_tensors(weights), weights)
    model.to(device).eval()
    return LoadedModel(model, cfg, file_sha256(weights), weights)
