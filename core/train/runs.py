"""The run folder a training writes: where its checkpoints and its trained model live.

Gemini-GAN (`core.train.gemini`): `RUN/last/` (model + `state.json`/`state.safetensors`, the resumable
state), `RUN/best/` (the best validated model) and `RUN/history.json` (validation metrics).
V-AMA (`core.train.vama`): `RUN/checkpoints/last.json` + `last.safetensors` + `rng.safetensors` (the
resumable state) and, once finished, `RUN/adapter.safetensors` + `RUN/config.json` (the adapter).

Standard library only: the app asks about run folders without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

GEMINI, VAMA = "gemini", "vama"

# Gemini-GAN
LAST_DIR = "last"  # the latest checkpoint: a loadable model and the state to resume from
BEST_DIR = "best"  # the model with the best validation score
STATE_JSON = "state.json"  # in LAST_DIR: step, total_steps, optimiser and RNG state
MODEL_WEIGHTS = "model.safetensors"  # in a model folder (core.models.store.WEIGHTS_NAME)
HISTORY_JSON = "history.json"  # validation metrics, one entry per validation
# A run with held-out subjects (fine-tuning, `core.train.semi.finish_finetune`)
FINETUNED_DIR = "model"  # the exported model: weights, config with the figures, MODEL_CARD.md
MODEL_CARD = "MODEL_CARD.md"  # in FINETUNED_DIR
COMPARISON_JSON = "finetune.json"  # before / after figures on the held-out subjects

# V-AMA
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_JSON = "last.json"  # in CHECKPOINTS_DIR: step, total_steps, optimiser and numpy RNG state
CHECKPOINT_WEIGHTS = "last.safetensors"  # in CHECKPOINTS_DIR: networks and optimisers
CHECKPOINT_RNG = "rng.safetensors"  # in CHECKPOINTS_DIR: the torch RNG state
ADAPTER_WEIGHTS = "adapter.safetensors"  # the trained adapter (core.models.vama.ADAPTER_WEIGHTS[0])

RunState = Literal["none", "run", "finished"]


def _check_kind(kind: str) -> None:
    if kind not in (GEMINI, VAMA):
        raise ValueError(f"unknown training kind {kind!r} (expected {GEMINI!r} or {VAMA!r})")


def run_state(kind: str, out: str | Path) -> RunState:
    """What the run folder `out` of a `kind` ("gemini" | "vama") training holds: "none" (no checkpoint),
    "run" (a checkpoint to resume) or "finished" (a finished run, or a checkpoint that cannot be read:
    never offered for resuming nor overwritten)."""
    _check_kind(kind)
    out = Path(out)
    if kind == GEMINI:
        state = out / LAST_DIR / STATE_JSON
        if state.exists():
            try:
                meta = json.loads(state.read_text(encoding="utf-8"))
                return "finished" if int(meta["step"]) >= int(meta["total_steps"]) else "run"
            except (OSError, ValueError, KeyError, TypeError):
                return "finished"
    elif (out / CHECKPOINTS_DIR / CHECKPOINT_JSON).exists():
        return "finished" if (out / ADAPTER_WEIGHTS).exists() else "run"
    return "none"


def trained_model_path(kind: str, out: str | Path) -> Path:
    """The model a finished run folder `out` offers: Gemini-GAN `RUN/model` (a run with held-out subjects,
    once compared), else `RUN/best` when it holds a model, else `RUN/last`; V-AMA the run folder itself
    (it holds the adapter)."""
    _check_kind(kind)
    out = Path(out)
    if kind == GEMINI:
        if (out / FINETUNED_DIR / MODEL_WEIGHTS).exists():
            return out / FINETUNED_DIR
        best = out / BEST_DIR
        return best if (best / MODEL_WEIGHTS).exists() else out / LAST_DIR
    return out


def history_path(out: str | Path) -> Path:
    """Gemini-GAN's validation history (a JSON list) in the run folder `out`."""
    return Path(out) / HISTORY_JSON


def comparison_path(out: str | Path) -> Path:
    """The before / after figures of a run with held-out subjects (`COMPARISON_JSON`)."""
    return Path(out) / COMPARISON_JSON
