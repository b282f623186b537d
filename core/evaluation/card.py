"""A model's card for people: what the model is, what it was trained on, how accurate it was on patients it
never saw, and its licence, read from the model's files (`gemini-cmr info --model`, the app's
Help > About the Model).

`model_card(path)` reads the config (validated as for loading) and hashes the weights, without building the
network; `format_card(card)` is the plain text both the CLI and the app show. The accuracy figures are the
config's `evaluation` as the training commands wrote it (`gemini-cmr train cv` / `recipes/gemini-acdc/
export_cv.py`: Dice mean (sd) per structure at ED and ES, phenotype bias and limits of agreement); other
evaluations (a site fine-tuning's before/after, a recipe change measured on some folds) are named, and the
whole record is in the JSON form.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gemini_cmr.core.evaluation.report import PHENOTYPES
from gemini_cmr.core.models.store import file_sha256, model_files, read_config
from gemini_cmr.core.study import STRUCTURES

PHASES = ("ed", "es")
STRUCTURE_NAMES = {"lv_cavity": "LV cavity", "lv_myocardium": "LV myocardium", "rv_cavity": "RV cavity"}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _figures(ev: dict[str, Any]) -> dict[str, Any]:
    """Dice (structure -> phase -> {mean, sd}) and phenotype errors (key -> {bias, loa_low, loa_high,
    median_abs, n}) of an evaluation in the `train cv` summary form; empty where it has none."""
    dice: dict[str, dict[str, dict[str, float | None]]] = {}
    for s in STRUCTURES.values():
        for ph in PHASES:
            e = ev.get(f"dice_{ph}_{s}")
            if isinstance(e, dict) and _number(e.get("mean")) is not None:
                dice.setdefault(s, {})[ph] = {"mean": _number(e.get("mean")), "sd": _number(e.get("sd"))}
    errors: dict[str, dict[str, Any]] = {}
    for prefix, kind in (("err_", "acquired"), ("err_reported_", "reported")):
        for key, _, _ in PHENOTYPES:
            e = ev.get(prefix + key)
            if isinstance(e, dict) and _number(e.get("bias")) is not None:
                errors.setdefault(kind, {})[key] = {k: _number(e.get(k)) for k in
                                                    ("bias", "loa_low", "loa_high", "median_abs")}
                errors[kind][key]["n"] = e.get("n")
    return {"dice": dice, "errors": errors}


def model_card(path: str | Path) -> dict[str, Any]:
    """The card of the model folder (or `.safetensors` file) at `path`: {"path", "model_id" (12 hex digits),
    "sha256", "architecture", "weights_dtype", "training" (data, steps, seed, command, time, hardware),
    "inference", "licence", "evaluation" (text: data, held_out, protocol; "dice", "errors"; "other": the
    evaluation's other sections by name), "evaluation_record" (the config's evaluation as written)}. A
    missing or invalid file is a `ModelError` naming it."""
    weights, cfg_path = model_files(path)
    cfg = read_config(cfg_path)
    sha = file_sha256(weights)
    m = cfg["model"]
    tr = cfg.get("training") or {}
    ev = cfg.get("evaluation") or {}
    figures = _figures(ev)
    before = ev  # a chain of measured recipe changes: the nearest recipe before them with its own figures
    while isinstance(before.get("recipe_before_change"), dict) and not _figures(before)["dice"]:
        before = before["recipe_before_change"]
    before = before if before is not ev and _figures(before)["dice"] else None
    text = {k: ev[k] for k in ("data", "held_out", "protocol", "command") if isinstance(ev.get(k), str)}
    dropped = ev.get("dropped_slices") if isinstance(ev.get("dropped_slices"), dict) else {}
    on = ((dropped.get("summary") or {}).get("on") or {}) if isinstance(dropped.get("summary"), dict) else {}
    through = {m: _number((on.get(m) or {}).get("mean")) for m in ("sr", "shape_interpolation", "nearest")
               if isinstance(on.get(m), dict)}
    shown = set(text) | ({"dropped_slices"} if through.get("sr") else set())
    other = sorted(k for k in ev if k not in shown and not k.startswith(("dice_", "err_")))
    return {
        "path": str(Path(path)), "model_id": sha[:12], "sha256": sha,
        "architecture": {"encoder": m.get("encoder"), "widths": m.get("widths"), "depth": m.get("depth"),
                         "n_classes": m.get("n_classes")},
        "weights_dtype": cfg.get("weights_dtype", "float32"),
        "training": {**{k: tr[k] for k in ("data", "step", "seed", "command", "train_seconds", "hardware", "checkpoint")
                        if k in tr},
                     **({"init": tr["config"]["init"]} if isinstance(tr.get("config"), dict)
                        and tr["config"].get("init") else {})},
        "inference": dict(cfg.get("inference") or {}),
        "licence": cfg.get("licence", ""),
        "evaluation": {**text, **figures, "other": other,
                       **({"before_change": _figures(before)} if before else {}),
                       **({"dropped_slices": {"n": dropped.get("n"), **through}} if through.get("sr") else {})},
        "evaluation_record": ev,
    }


def _f(v: float | None, digits: int = 3, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _dice_lines(dice: dict[str, Any]) -> list[str]:
    lines = [f"  {'':16s}{'ED':>16s}{'ES':>16s}"]
    for s, name in STRUCTURE_NAMES.items():
        row = dice.get(s) or {}
        cells = [f"{_f(row[ph]['mean'])} ({_f(row[ph]['sd'])})" if ph in row else "n/a" for ph in PHASES]
        lines.append(f"  {name:16s}" + "".join(f"{c:>16s}" for c in cells))
    return lines


def _error_lines(errors: dict[str, Any]) -> list[str]:
    names = {k: (n, u) for k, n, u in PHENOTYPES}
    lines = []
    for kind, title in (("acquired", "from the labels on the acquired slices"), ("reported", "as reported, from the SR labels")):
        rows = errors.get(kind) or {}
        if not rows:
            continue
        lines.append(f"  Errors, prediction - manual, {title}: bias [95% limits of agreement], median |error|")
        for key, e in rows.items():
            name, unit = names[key]
            lines.append(f"    {name + ' (' + unit + ')':14s} {_f(e['bias'], 1, True):>6s} "
                         f"[{_f(e['loa_low'], 1, True)}, {_f(e['loa_high'], 1, True)}], {_f(e['median_abs'], 1)}"
                         + (f"  (n {e['n']})" if e.get("n") else ""))
    return lines


def format_card(card: dict[str, Any]) -> str:
    """Plain text of a `model_card` (what `gemini-cmr info --model` prints and the app shows)."""
    a, tr, ev = card["architecture"], card["training"], card["evaluation"]
    widths = "-".join(str(w) for w in a.get("widths") or [])
    lines = [f"Model {card['model_id']}  ({card['path']})",
             f"  sha256 {card['sha256']}",
             f"  Gemini-GAN, {a.get('encoder')} encoder, widths {widths}, {a.get('depth')} SR slices, "
             f"{card['weights_dtype']} weights"]
    inf = card["inference"]
    if inf.get("roi_mm"):
        lines.append(f"  Inference: heart found on the whole field of view, then a {inf['roi_mm']:g} mm box"
                     + (f" (network on the heart + {inf['roi_margin_mm']:g} mm)" if inf.get("roi_margin_mm") else ""))
    lines += ["", "Training"]
    for key, label in (("data", "data"), ("step", "steps"), ("seed", "seed"), ("checkpoint", "checkpoint"),
                       ("train_seconds", "time (s)"), ("hardware", "hardware"), ("command", "command")):
        if key in tr:
            more = f" (continuing the model {tr['init']})" if key == "step" and tr.get("init") else ""
            lines.append(f"  {label + ':':12s} {tr[key]}{more}")
    lines += ["", "Accuracy on patients the model never saw"]
    for key in ("data", "held_out", "protocol"):
        if key in ev:
            lines.append(f"  {ev[key]}")
    if ev.get("dice"):
        lines += ["  Dice per volume, mean (sd):"] + _dice_lines(ev["dice"])
        lines += _error_lines(ev.get("errors") or {})
    elif "before_change" in ev and ev["before_change"].get("dice"):
        lines += ["  The cross-validated recipe before the measured changes (recipe_before_change), Dice mean (sd):"]
        lines += _dice_lines(ev["before_change"]["dice"]) + _error_lines(ev["before_change"].get("errors") or {})
    elif not ev.get("other"):
        lines.append("  not recorded in this model's files")
    drop = ev.get("dropped_slices")
    if drop:
        lines.append(f"  Through-plane shape (every other slice removed, the labels at the removed slices; mean Dice "
                     f"of LV, myocardium, RV, {drop.get('n')} patients): SR {_f(drop.get('sr'))}, shape-based "
                     f"interpolation {_f(drop.get('shape_interpolation'))}, nearest slice {_f(drop.get('nearest'))}")
    if ev.get("other"):
        lines.append(f"  Further records in the model's config.json (\"evaluation\"): {', '.join(ev['other'])}")
    lines += ["", "Licence", f"  {card['licence'] or 'not stated in the model files'}"]
    return "\n".join(lines) + "\n"


__all__ = ["format_card", "model_card"]
