"""Model files: safetensors tensors + a JSON config (docs/DEVELOPING.md, "Contract: model files").

A model is a folder holding `model.safetensors` + `config.json`, or a `NAME.safetensors` file with a
sibling `NAME.json`. Loading never unpickles: `.pt`, `.pth`, `.pkl`, `.ckpt` files are refused.
The model identity (`model_id`) is the sha256 of the weights file. Writes are atomic.
The config is validated whole on load (`validate_config`): unknown keys, wrong types or values out of range
anywhere are a one-line `ModelError` naming the file and the key, never a failure later in a run.
"""

from __future__ import annotations

import hashlib
import json
import math
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


# --- config schema --------------------------------------------------------------------------------
#: Top-level keys of a model config and what each holds (anything else is refused).
TOP_LEVEL_KEYS = ("kind", "version", "model", "training", "normalisation", "inference", "licence", "evaluation",
                  "weights_dtype")
NORMALISATION_METHODS = ("lr_percentile",)
HEART_COMPONENT_BY = ("size", "myocardium", "ventricle")
WEIGHTS_DTYPES = ("float16", "float32")
# Architecture limits: far above every shipped or recipe model, low enough that a config cannot make the
# loader allocate an absurd network before the weights are compared with it.
MODEL_LIMITS = {"depth": (1, 1024), "n_classes": (2, 64), "mix_kernel": (1, 15), "tp_knots": (0, 64)}
MAX_WIDTH, MAX_LEVELS = 1024, 8
MAX_PARAMETERS = 200_000_000  # about 18 x sum(width^2) + the input and output layers (the paper's: ~11 M)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, str | int | float | bool | type(None)) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_model_section(model: Any, path: Path) -> None:
    """Types and ranges of the architecture (the `GeminiConfig` fields), before `GeminiConfig` sees it."""
    if not isinstance(model, dict):
        raise ModelError(f"'model' must be a JSON object, not {type(model).__name__}", path)
    for key, (lo, hi) in MODEL_LIMITS.items():
        if key in model and not (_is_int(model[key]) and lo <= model[key] <= hi):
            raise ModelError(f"model.{key} must be an integer from {lo} to {hi}, not {_show(model[key])}", path)
    if "mix_kernel" in model and model["mix_kernel"] % 2 == 0:
        raise ModelError(f"model.mix_kernel must be odd, not {model['mix_kernel']}", path)
    if "widths" in model:
        w = model["widths"]
        if not (isinstance(w, list) and 2 <= len(w) <= MAX_LEVELS
                and all(_is_int(v) and 1 <= v <= MAX_WIDTH for v in w)):
            raise ModelError(f"model.widths must list 2-{MAX_LEVELS} integers from 1 to {MAX_WIDTH}, "
                             f"not {_show(w) if not isinstance(w, list) else w}"[:160], path)
    widths = model.get("widths", [16, 32, 64, 128, 128])
    depth = model.get("depth", 64)
    rough = 18 * sum(w * w for w in widths) + 18 * depth * widths[0] + 9 * depth * widths[0]
    if rough > MAX_PARAMETERS:
        raise ModelError(f"model is implausibly large (about {rough / 1e6:.0f} million parameters in 'model')",
                         path)
    for key in ("encoder", "upsample", "norm"):
        if key in model and not isinstance(model[key], str):
            raise ModelError(f"model.{key} must be a string, not {_show(model[key])}", path)
    for key in ("residual_image", "input_to_heads"):
        if key in model and not isinstance(model[key], bool):
            raise ModelError(f"model.{key} must be true or false, not {_show(model[key])}", path)


def _check_section(cfg: dict, key: str, path: Path, allowed: dict[str, Any]) -> None:
    """`cfg[key]`, when present: an object whose keys are among `allowed`, each value passing its check."""
    if key not in cfg:
        return
    section = cfg[key]
    if section is None and key == "inference":
        return
    if not isinstance(section, dict):
        raise ModelError(f"'{key}' must be a JSON object, not {_show(section)}", path)
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ModelError(f"unknown key(s) in '{key}': {', '.join(map(str, unknown))[:80]} "
                         f"(allowed: {', '.join(allowed)})", path)
    for name, (ok, expected) in allowed.items():
        if name in section and not ok(section[name]):
            raise ModelError(f"{key}.{name} must be {expected}, not {_show(section[name])}", path)


def validate_config(cfg: Any, path: str | Path) -> dict[str, Any]:
    """Check a whole model config (docs/DEVELOPING.md, "Contract: model files"); the first problem is a
    one-line `ModelError` naming the file and the key. Returns `cfg`."""
    path = Path(path)
    if not isinstance(cfg, dict):
        raise ModelError("model config must be a JSON object", path)
    kind = cfg.get("kind")
    if kind != KIND:
        raise ModelError(f"unknown model kind {_show(kind)} (expected {KIND!r})", path)
    version = cfg.get("version", FORMAT_VERSION)
    if not _is_int(version) or version != FORMAT_VERSION:
        raise ModelError(f"unsupported model format version {_show(version)} (this build reads {FORMAT_VERSION})",
                         path)
    unknown = sorted(set(cfg) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ModelError(f"unknown top-level key(s) {', '.join(map(repr, unknown))[:80]} in the model config "
                         f"(allowed: {', '.join(TOP_LEVEL_KEYS)})", path)
    if "model" not in cfg:
        raise ModelError("model config has no 'model' section", path)
    _check_model_section(cfg["model"], path)
    for key in ("training", "evaluation"):
        if key in cfg and not isinstance(cfg[key], dict):
            raise ModelError(f"'{key}' must be a JSON object, not {_show(cfg[key])}", path)
    if "licence" in cfg and not isinstance(cfg["licence"], str):
        raise ModelError(f"'licence' must be a string, not {_show(cfg['licence'])}", path)
    if "weights_dtype" in cfg and cfg["weights_dtype"] not in WEIGHTS_DTYPES:
        raise ModelError(f"weights_dtype must be one of {', '.join(WEIGHTS_DTYPES)}, not {_show(cfg['weights_dtype'])}",
                         path)
    _check_section(cfg, "normalisation", path, {
        "method": (lambda v: v in NORMALISATION_METHODS, f"one of {', '.join(NORMALISATION_METHODS)}"),
        "percentile": (lambda v: _is_number(v) and 0 < v <= 100, "a number above 0 and at most 100"),
    })
    _check_section(cfg, "inference", path, {
        "roi_mm": (lambda v: v is None or (_is_number(v) and 0 <= v <= 10000), "null or a size in mm from 0 to 10000"),
        "roi_margin_mm": (lambda v: v is None or (_is_number(v) and 0 <= v <= 1000),
                          "null or a margin in mm from 0 to 1000"),
        "heart_pass_mm": (lambda v: v is None or (_is_number(v) and 0 <= v <= 20),
                          "null or an in-plane spacing in mm from 0 to 20"),
        "keep_largest_heart_component": (lambda v: isinstance(v, bool), "true or false"),
        "heart_component_by": (lambda v: v in HEART_COMPONENT_BY, f"one of {', '.join(HEART_COMPONENT_BY)}"),
    })
    try:
        GeminiConfig.from_dict(cfg["model"])
    except ModelError as exc:
        raise ModelError(str(exc), path) from None
    return cfg


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a model's JSON config (`validate_config`: every key, type and range)."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())
        raise ModelError(f"cannot read the model config: {reason}", path) from None
    return validate_config(cfg, path)


# --- tensors ---------------------------------------------------------------------------------------
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Atomically write a dict of tensors as safetensors, byte for byte the same for the same tensors and
    metadata (the model id is the file's sha256)."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, _metadata_in_order(save(clean, metadata=metadata), metadata))


def _metadata_in_order(data: bytes, metadata: dict[str, str] | None) -> bytes:
    """safetensors writes the header's `__metadata__` keys in a random order per process (a hash map):
    rewrite them in the order of `metadata`; the header keeps its length (the same keys and values)."""
    if not metadata:
        return data
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if set(header.get("__metadata__") or {}) != set(metadata):
        return data
    header["__metadata__"] = {k: header["__metadata__"][k] for k in metadata}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n:]


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
