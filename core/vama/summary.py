"""What an adapter is, in a few lines for the app and the command line, read from its `config.json` alone
(no torch, no weights): the Gemini-GAN model it was trained for, its source and target domains and its
measured effect (`config.evaluation`, written by training and by evaluation scripts through
`core.models.vama.record_evaluation`)."""

from __future__ import annotations

import json
from pathlib import Path

from gemini_cmr.core.errors import ModelError

NAMES = {"lv_cavity": "LV cavity", "lv_myocardium": "myocardium", "rv_cavity": "RV cavity"}

# When an adapter is worth using (docs/vama.md, "When V-AMA helps"); the app's Adapter control shows it.
WHEN = ("A V-AMA adapter maps a new scanner's images toward the model's training domain before Gemini-GAN "
        "runs. It helps when the model fails on a site's studies because their contrast differs strongly "
        "(shifted phantom domains: RV Dice 0.63 -> 0.85). Where the model already segments a site well it "
        "does not: on three GE series with the ACDC model a free adapter lowered Dice (myocardium "
        "0.79 -> 0.72) and one held near the identity changed nothing (docs/real-data.md). Check the "
        "adapter's measured effect; without one, prefer No adapter.")


def _config_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        return path / "config.json"
    return path.with_suffix(".json")


def effect_line(name: str, effect: dict) -> str:
    """"Dice without -> with the adapter (NAME): LV cavity 0.906 -> 0.910, ..."."""
    before, after = effect.get("before") or {}, effect.get("after") or {}
    parts = [f"{NAMES.get(k, k)} {before[k]:.3f} -> {after[k]:.3f}" for k in before
             if k in after and isinstance(before[k], int | float) and isinstance(after[k], int | float)]
    where = effect.get("where") or name
    return f"Dice without -> with the adapter ({where}): " + (", ".join(parts) or "nothing scored")


def adapter_summary(path: str | Path) -> str:
    """A few lines: the model the adapter was trained for, its source and target, its measured effect.
    Raises `ModelError` naming the file when it is not a readable adapter config."""
    cfg_path = _config_path(path)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"not a V-AMA adapter: unreadable config ({exc.__class__.__name__})", cfg_path) from None
    if not isinstance(config, dict) or config.get("kind") != "vama":
        kind = config.get("kind") if isinstance(config, dict) else None
        raise ModelError(f"not a V-AMA adapter (kind {kind!r}, expected 'vama')", cfg_path)
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    gid = config.get("gemini_model_id")
    lines = [f"V-AMA adapter for Gemini-GAN model {str(gid)[:12] if gid else '(not recorded)'}"]
    for role, what in (("source", "adapts studies like"), ("target", "toward the training domain")):
        text = training.get(f"{role}_description") or training.get(role)
        if text:
            lines.append(f"{what}: {str(text)[:300]}")
    evaluation = config.get("evaluation") if isinstance(config.get("evaluation"), dict) else {}
    for name, effect in evaluation.items():
        if isinstance(effect, dict) and isinstance(effect.get("before"), dict):
            lines.append(effect_line(name.replace("_", " "), effect))
        elif isinstance(effect, str):
            lines.append(effect[:300])
    if not evaluation:
        lines.append("effect not measured (no labelled source studies)")
    return "\n".join(lines)
