#!/usr/bin/env python
"""V-AMA on real scanners: GE (Sunnybrook) studies adapted toward ACDC, leave one series out.

For each of the three GE 1.5 T Sunnybrook series, an adapter is trained on the images of the other two
(unlabelled: their contours are not read; Gemini-GAN segments them for the alignment landmarks) with the
ACDC training patients as the target domain, by the plain command

    gemini-cmr train vama --source WORK/source-without-SCDxxx --target acdc:ACDC --out WORK/adapter-without-SCDxxx \\
        --gemini resources/models/gemini-acdc --epochs 1 --steps-per-epoch STEPS --max-steps STEPS --device cpu

(`source-without-SCDxxx` is a folder holding the two other series' DICOM folders, as links). The held-out
series then goes through the whole pipeline with and without the adapter, scored against its expert
contours (`core.evaluation.real.contour_dice`: LV cavity and myocardium Dice on the contoured slices of the
contoured phases). The held-out effect is recorded in each adapter's config (`evaluation.held_out`), the
table in RESULTS.md / RESULTS.json.

    .venv/bin/python scripts/vama_sunnybrook.py [--work runs/vama-sunnybrook] [--steps 300]
        [--identity-weight 0] [--threads 1] [--series SCD0000101,...] [--results benchmarks/results/NAME]

Resumable: a finished adapter is reused, an interrupted one continues (`--resume`), scores are cached.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIES = {"SCD0000101": "SC-HF-I-1", "SCD0000401": "SC-HF-I-5", "SCD0000501": "SC-HF-I-6"}
KEYS = ("lv_cavity", "lv_myocardium")


def score(study_dir: Path, contours: Path, model: str, adapter: str | None, threads: int) -> dict:
    """Mean LV cavity Dice over the contoured phases and myocardium Dice over those with epicardial
    contours, plus the per-phase rows."""
    import numpy as np
    import torch

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.real import contour_dice
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.loader import load_study

    torch.set_num_threads(threads)
    study = attach_contours(load_study(study_dir), contours)
    rows = contour_dice(SuperResolver(model=model, adapter=adapter, device="cpu"), study)
    out = {"phases": rows}
    for k in KEYS:
        vals = [r[k] for r in rows if not np.isnan(r[k])]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/vama-sunnybrook")
    ap.add_argument("--sunnybrook", default="../shared/data/sunnybrook")
    ap.add_argument("--acdc", default="../shared/data/acdc/training")
    ap.add_argument("--model", default="resources/models/gemini-acdc")
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps per stage (default 300)")
    ap.add_argument("--identity-weight", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--series", default=",".join(SERIES), help="held-out series to run (default: all three)")
    ap.add_argument("--results", default=None, help="also write the table to RESULTS.md and RESULTS.json")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sb = Path(args.sunnybrook).resolve()
    cache_path = work / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    table = []
    for held, contours in SERIES.items():
        if held not in args.series.split(","):
            continue
        src = work / f"source-without-{held}"
        src.mkdir(exist_ok=True)
        for other in SERIES:
            link = src / other
            if other != held and not link.exists():
                link.symlink_to(sb / other, target_is_directory=True)
        run = work / f"adapter-without-{held}"
        cmd = [str(ROOT / ".venv/bin/gemini-cmr"), "train", "vama", "--source", str(src), "--target",
               f"acdc:{args.acdc}", "--out", str(run), "--gemini", args.model, "--epochs", "1",
               "--steps-per-epoch", str(args.steps), "--max-steps", str(args.steps), "--device", "cpu",
               "--threads", str(args.threads), "--seed", str(args.seed)]
        if args.identity_weight:
            cmd += ["--identity-weight", str(args.identity_weight)]
        seconds = None
        if not (run / "adapter.safetensors").is_file():
            if (run / "checkpoints" / "last.json").is_file():
                cmd.append("--resume")
            print("$", shlex.join(cmd), flush=True)
            t0 = time.monotonic()
            with open(work / f"train-without-{held}.log", "a", encoding="utf-8") as log:
                subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
            seconds = round(time.monotonic() - t0, 1)
        cfg = json.loads((run / "config.json").read_text())
        seconds = seconds or cfg.get("evaluation", {}).get("held_out", {}).get("train_seconds")
        key_before = f"{held}|none"
        if key_before not in cache:
            cache[key_before] = score(sb / held, sb / "contours" / contours, args.model, None, args.threads)
        from gemini_cmr.core.models.store import file_sha256

        adapter_id = file_sha256(run / "adapter.safetensors")
        key_after = f"{held}|{adapter_id}"
        if key_after not in cache:
            cache[key_after] = score(sb / held, sb / "contours" / contours, args.model, str(run), args.threads)
        cache_path.write_text(json.dumps(cache, indent=1))
        before, after = cache[key_before], cache[key_after]
        effect = {"where": f"held-out GE series {held}, contoured slices",
                  "before": {k: before[k] for k in KEYS if before[k] is not None},
                  "after": {k: after[k] for k in KEYS if after[k] is not None},
                  "train_seconds": seconds, "command": shlex.join(["gemini-cmr", *cmd[1:]])}
        from gemini_cmr.core.models.vama import record_evaluation

        record_evaluation(run, {"held_out": effect})
        table.append({"held_out": held, "adapter_id": adapter_id[:12], "before": effect["before"],
                      "after": effect["after"], "train_seconds": seconds,
                      "alignment_rms_mm": [round(a["rms_mm"], 1) for a in cfg.get("alignment", [])]})
    deltas = {k: [r["after"][k] - r["before"][k] for r in table if k in r["before"]] for k in KEYS}
    verdict = {"never_lowers": all(d >= 0 for v in deltas.values() for d in v),
               "myocardium_gain": min(deltas["lv_myocardium"]) if deltas["lv_myocardium"] else None}
    lines = [f"V-AMA leave-one-series-out, Sunnybrook GE -> ACDC, model {args.model}, {args.steps} steps per stage, "
             f"identity weight {args.identity_weight}, seed {args.seed}", "",
             "| held-out series | adapter | LV cavity Dice without -> with | myocardium Dice without -> with |",
             "|---|---|---|---|"]
    for r in table:
        cells = [f"{r['before'][k]:.3f} -> {r['after'][k]:.3f} ({r['after'][k] - r['before'][k]:+.3f})"
                 if k in r["before"] else "no epicardial contours" for k in KEYS]
        lines.append(f"| {r['held_out']} | {r['adapter_id']} | {cells[0]} | {cells[1]} |")
    lines += ["", f"never lowers a structure's Dice: {verdict['never_lowers']}; smallest myocardium change: "
              + (f"{verdict['myocardium_gain']:+.3f}" if verdict["myocardium_gain"] is not None else "n/a")]
    text = "\n".join(lines)
    print(text)
    result = {"settings": vars(args), "rows": table, "verdict": verdict}
    (work / "RESULTS.md").write_text(text + "\n")
    (work / "RESULTS.json").write_text(json.dumps(result, indent=1))
    if args.results:
        Path(args.results).with_suffix(".md").write_text(text + "\n")
        Path(args.results).with_suffix(".json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
