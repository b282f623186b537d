"""`gemini-cmr benchmark table2`: the paper's Table 2 on a paired dataset.

```python
from gemini_cmr.core.baselines.table2 import run_table2
report = run_table2("DATA", "OUT", methods=None, settings=Settings(quick=True))
```
1. every learned method is trained into OUT/runs/<method> by the shared training machinery
   (`core.baselines.registry`); a finished run is reused, an interrupted one resumed;
2. every method is evaluated on the test split at ED and ES (manifest phases) on the SR grid against the HR
   truth: 3D volumetric Dice (primary) and the paper's slice-wise Dice per structure, PSNR and SSIM (3D,
   7x7x7; data range = the HR phase's max - min) of the SR image, parameter count, and the time to produce
   one volume (one phase: placement on the SR grid + network, BatchNorm folded, the predictor's precision;
   one untimed warm-up first; for interpolations the resampling of image and labels);
3. OUT/table2.md, OUT/table2.csv (mean and sd per column) and OUT/table2.json (every subject's values).
Metrics a method does not produce (Dice of image-only networks, PSNR of segmentation-only ones, Dice of
interpolations without LR labels) are "n/a".
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.evaluation.metrics import format_mean_sd, mean_sd
from gemini_cmr.core.evaluation.paired import PairedSubject, phase_metrics
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.jsonio import jsonable
from gemini_cmr.core.study import STRUCTURE_SHORT

log = logging.getLogger(__name__)

STRUCTS = tuple(STRUCTURE_SHORT.items())
PHASES = ("ED", "ES")
Log = Callable[[str], None]


# --- per-subject evaluation ------------------------------------------------------------------------
def score(pred_img: np.ndarray | None, pred_lab: np.ndarray | None, subject: PairedSubject, t: int) -> dict:
    """The table's metrics of one volume (`core.evaluation.paired.phase_metrics`); NaN for what the method
    does not produce, and for SSIM on volumes thinner than its 7-voxel window."""
    img, lab = subject.truth(t)
    m = phase_metrics(pred_lab, pred_img, img, lab, subject.sr)
    row: dict[str, float] = {}
    for s, _ in STRUCTS:
        row[f"dice3d_{s}"] = m["dice_3d"][s]
        row[f"dice2d_{s}"] = m["dice_slicewise"][s]
    row["psnr"] = m["psnr"]
    row["ssim"] = m["ssim"] if min(img.shape) >= 7 else math.nan
    return row


class Runner:
    """Produces (SR image, SR labels) for one phase of a subject, timed."""

    def __init__(self, name: str, model_path: Path | None, device: str = "cpu"):
        from gemini_cmr.core.baselines.registry import METHODS

        self.method = METHODS[name]
        self.name = name
        self.params = 0
        self.model_id = ""
        if self.method.kind != "interp":
            from gemini_cmr.core.baselines.registry import load_method
            from gemini_cmr.core.device import auto_precision, resolve_device
            from gemini_cmr.core.predict import inference_copy

            self.device = resolve_device(device)
            lm = load_method(name, model_path, self.device)
            self.params = sum(p.numel() for p in lm.model.parameters())
            self.model_id = lm.model_id
            self.scale_pct = float(lm.config.get("normalisation", {}).get("percentile", 99.5))
            self.net = inference_copy(lm.model)
            self.precision = auto_precision(self.device)
        self.warm = False

    def __call__(self, s: PairedSubject, t: int) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        from gemini_cmr.core.baselines.interpolation import ORDERS, interpolate_image, interpolate_labels

        if self.method.kind == "interp":
            order = ORDERS[self.name]
            t0 = time.perf_counter()
            img = interpolate_image(s.lr_image[t], s.lr, s.sr, order)
            lab = (interpolate_labels(s.lr_labels[t], s.lr, s.sr, order) if s.lr_labels is not None else None)
            return img, lab, time.perf_counter() - t0
        from gemini_cmr.core.geometry import place_on_sr_grid
        from gemini_cmr.core.models.preprocess import intensity_scale
        from gemini_cmr.core.predict import run_stacks

        scale = np.float32(intensity_scale(s.lr_image, self.scale_pct))

        def once():
            placed = place_on_sr_grid(s.lr_image[t][None], s.lr, s.sr) / scale
            return run_stacks(self.net, placed, self.device, self.precision)

        if not self.warm:
            once()
            self.warm = True
        t0 = time.perf_counter()
        img, lab = once()
        dt = time.perf_counter() - t0
        tasks = self.method.tasks
        return (img[0] * scale if "image" in tasks else None), (lab[0] if "seg" in tasks else None), dt


# --- tables ------------------------------------------------------------------------------------------
def metric_keys() -> list[str]:
    keys = [f"dice3d_{s}" for s, _ in STRUCTS] + [f"dice2d_{s}" for s, _ in STRUCTS] + ["psnr", "ssim"]
    return keys


def summarise(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """{phase: {metric: (mean, sd)}} over subjects (NaN ignored)."""
    out = {}
    for ph in PHASES:
        sel = [r for r in rows if r["phase"] == ph]
        out[ph] = {k: mean_sd([r[k] for r in sel]) for k in metric_keys()}
    return out


def _cell(rows: list[dict], phase: str, key: str, digits: int) -> str:
    return format_mean_sd([r[key] for r in rows if r["phase"] == phase], digits)


def format_markdown(results: list[dict], title: str = "Table 2") -> str:
    """results: [{"label", "rows": [per-subject-phase dicts], "params", "time_s", "train"}]."""
    head = " | ".join(f"{short} {ph}" for _, short in STRUCTS for ph in PHASES)
    lines = [f"## {title}", ""]
    for kind, name in (("dice3d", "3D volumetric Dice (primary)"), ("dice2d", "slice-wise Dice (the paper's)")):
        lines += [f"### {name}, mean (sd)", "", f"| method | n | {head} |", "|---|---|" + "---|" * 6]
        for r in results:
            cells = [_cell(r["rows"], ph, f"{kind}_{s}", 2) for s, _ in STRUCTS for ph in PHASES]
            n = len({x["subject"] for x in r["rows"]})
            lines.append(f"| {r['label']} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Image quality and cost", "",
              "| method | PSNR ED | PSNR ES | SSIM ED | SSIM ES | parameters | s / volume | training |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        cells = [_cell(r["rows"], ph, "psnr", 2) for ph in PHASES] + [_cell(r["rows"], ph, "ssim", 2) for ph in PHASES]
        tr = r.get("train") or {}
        train = ((f"{tr['steps']} steps, " if tr.get("steps") else "") + f"{tr['seconds'] / 60:.1f} min"
                 if tr else "none")
        params = f"{r['params']:,}" if r["params"] else "0"
        lines.append(f"| {r['label']} | " + " | ".join(cells)
                     + f" | {params} | {format_mean_sd(r['time_s'], 3)} | {train} |")
    return "\n".join(lines) + "\n"


def format_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [f"{k}_{ph}_{stat}" for ph in PHASES for k in metric_keys() for stat in ("mean", "sd")]
    w.writerow(["method", "label", "n_subjects", *cols, "parameters", "seconds_per_volume_mean",
                "seconds_per_volume_sd", "train_steps", "train_seconds"])
    for r in results:
        summ = summarise(r["rows"])
        vals = []
        for ph in PHASES:
            for k in metric_keys():
                m, s = summ[ph][k]
                vals += ["" if not math.isfinite(m) else f"{m:.6g}", "" if not math.isfinite(s) else f"{s:.6g}"]
        tm, ts = mean_sd(r["time_s"])
        tr = r.get("train") or {}
        w.writerow([r["method"], r["label"], len({x["subject"] for x in r["rows"]}), *vals, r["params"],
                    f"{tm:.6g}", f"{ts:.6g}", tr.get("steps", ""), f"{tr['seconds']:.1f}" if tr else ""])
    return buf.getvalue()


# --- the command -------------------------------------------------------------------------------------
def _train_record(run: Path) -> dict | None:
    p = run / "benchmark_train.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def ensure_trained(name: str, data: Path, run: Path, settings, say: Log) -> dict:
    """Train `name` into RUN unless a finished run with the same budget is there; returns the train record."""
    from gemini_cmr.core.baselines.registry import train_config, train_method

    cfg = train_config(name, settings)
    wanted = cfg.to_dict()
    rec = _train_record(run)
    if rec and isinstance(rec.get("config"), dict) and rec["config"] != wanted:
        # A run recorded before a config field was added: the missing field counts as its default.
        defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
        old = rec["config"]
        filled = {**{k: v for k, v in wanted.items() if k not in old and k in defaults and v == defaults[k]}, **old}
        if filled == wanted:
            rec = {**rec, "config": wanted}
    if rec and rec.get("status") == "done" and rec.get("config") == wanted and (run / "best").is_dir():
        say(f"{name}: reusing the trained run in {run}")
        return rec
    if rec and rec.get("config") != wanted and (run / "last").exists():
        raise DataError(f"{run} holds a {name} run with other settings; remove it or choose another --out", run)
    say(f"{name}: training")
    last = [0.0]

    def cb(ev: dict) -> None:
        if ev.get("event") == "step" and (ev["step"] % 25 == 0 or ev["step"] == ev["total_steps"]):
            if time.perf_counter() - last[0] > 5:
                last[0] = time.perf_counter()
                say(f"{name}: step {ev['step']}/{ev['total_steps']} loss {ev['loss']:.4f}")

    summary = train_method(name, data, run, settings, callback=cb)
    prev = (rec or {}).get("seconds", 0.0) if rec and rec.get("config") == wanted else 0.0
    rec = {"status": summary["status"], "steps": summary["step"], "seconds": prev + summary["elapsed_s"],
           "config": wanted, "seed": settings.seed}
    atomic_write_text(run / "benchmark_train.json", json.dumps(rec, indent=2) + "\n")
    if summary["status"] != "done":
        raise DataError(f"{name}: training {summary['status']} at step {summary['step']}", run)
    return rec


def run_table2(data: str | Path, out: str | Path, methods: Sequence[str] | None = None, settings=None,
               split: str = "test", limit: int | None = None, say: Log | None = None,
               command: str = "") -> dict[str, Any]:
    from gemini_cmr.core.baselines.registry import METHODS, Settings
    from gemini_cmr.core.io.manifest import read_manifest

    say = say or log.info
    settings = settings or Settings()
    data, out = Path(data), Path(out)
    names = list(methods) if methods else list(METHODS)
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise DataError(f"unknown method(s) {', '.join(bad)} (use {', '.join(METHODS)})")
    manifest = read_manifest(data)
    entries = [e for e in manifest["subjects"] if e["split"] == split][:limit]
    if not entries:
        raise DataError(f"no subjects with split {split!r} in the manifest", data / "manifest.json")
    if settings.num_threads > 0:
        import torch

        torch.set_num_threads(settings.num_threads)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    trained = {}
    for name in names:
        if METHODS[name].kind != "interp":
            trained[name] = ensure_trained(name, data, out / "runs" / name, settings, say)
    say(f"evaluating {len(names)} methods on {len(entries)} {split} subjects")
    subjects = [PairedSubject(data, e) for e in entries]
    results = []
    for name in names:
        runner = Runner(name, out / "runs" / name / "best" if name in trained else None, settings.device)
        rows, times = [], []
        for s in subjects:
            for ph, t in s.phases.items():
                img, lab, dt = runner(s, t)
                times.append(dt)
                rows.append({"subject": s.id, "phase": ph, "t": t, **score(img, lab, s, t)})
        results.append({"method": name, "label": METHODS[name].label, "rows": rows, "time_s": times,
                        "params": runner.params, "model_id": runner.model_id, "train": trained.get(name)})
        say(f"{name}: evaluated")
    md = [f"# Table 2 on {data.name} ({split} split, {len(entries)} subjects, ED and ES)", ""]
    if command:
        md += [f"Command: `{command}`", ""]
    md += [f"Training: seed {settings.seed}, {'quick sizes' if settings.quick else 'full sizes'}, "
           f"epochs {settings.epochs}, max steps {settings.max_steps}; benchmark wall time "
           f"{(time.perf_counter() - t_start) / 60:.1f} min.", "", format_markdown(results)]
    text = "\n".join(md)
    atomic_write_text(out / "table2.md", text)
    atomic_write_text(out / "table2.csv", format_csv(results))
    atomic_write_text(out / "table2.json", json.dumps(jsonable({"command": command, "data": str(data),
                                                              "split": split, "results": results}), indent=1))
    return {"markdown": text, "results": results}


