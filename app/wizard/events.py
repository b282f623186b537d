"""Readable text for the training process's `--progress-json` events (no Qt)."""

from __future__ import annotations

import math


def fmt_time(seconds: float | None) -> str:
    """MM:SS, or H:MM:SS from an hour; "--:--" when unknown."""
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def fmt_dice(v) -> str:
    """A Dice value, or "n/a" (a structure the held-out subjects do not annotate)."""
    return f"{v:.3f}" if _finite(v) else "n/a"


def event_line(e: dict) -> str:
    """A readable log line for the events worth keeping in the log view (not every step)."""
    kind = e.get("event")
    if kind == "start":
        extra = (f", {e['n_train_items']} training items, {e['n_val']} validation samples, "
                 f"{e.get('generator_parameters', 0):,} generator parameters" if "n_train_items" in e else "")
        return (f"{'resumed at step ' + str(e.get('step')) if e.get('step') else 'started'}: "
                f"{e.get('total_steps')} steps on {e.get('device')}{extra}")
    if kind == "val":
        image = ""
        if _finite(e.get("psnr")):
            image = f", PSNR {e['psnr']:.2f} dB, SSIM {e.get('ssim', float('nan')):.3f}"
        return (f"validation at step {e['step']}: Dice LV {fmt_dice(e.get('lv_cavity'))}, "
                f"myo {fmt_dice(e.get('lv_myocardium'))}, RV {fmt_dice(e.get('rv_cavity'))}{image}"
                + ("  (best so far)" if e.get("best") else ""))
    if kind == "compare":
        return (f"held-out subject {e.get('subject')} ({e.get('index')}/{e.get('total')}): "
                f"{'starting' if e.get('model') == 'before' else 'new'} model through the whole pipeline")
    if kind == "compared":
        return f"model {e.get('model_id')} written to {e.get('path')} with MODEL_CARD.md"
    if kind == "epoch":
        losses = ", ".join(f"{k} {v:.4f}" for k, v in (e.get("losses") or {}).items())
        return f"{e.get('stage', '')} stage epoch {e.get('epoch')} (step {e.get('step')}): {losses}"
    if kind in ("done", "interrupted", "stopped"):
        return f"{kind} at step {e.get('step')}/{e.get('total_steps')}" + (
            f" in {fmt_time(e['elapsed_s'])}" if "elapsed_s" in e else "")
    if kind in ("data", "resume"):
        return ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("event", "kind"))
    return ""
