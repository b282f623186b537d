#!/usr/bin/env python
"""Evaluate a Gemini-GAN model on held-out ACDC subjects (docs/real-data.md).

For every subject of the split (default: the validation split of core.io.layouts.acdc_split, patients
whose number is a multiple of 5): the whole pipeline (`core.engine.SuperResolver`, whole field of view,
ED and ES from Info.cfg) super-resolves and segments the study; the SR labels are resampled onto the
acquired LR slices (the engine's `lr_labels`, nearest) and compared with the manual labels:
3D Dice per structure at ED and ES, and LVEDV, LVESV, LVEF, LV mass (myocardial volume at ED x 1.05 g/mL),
RVEDV errors (prediction - manual): mean (bias), limits of agreement (bias +- 1.96 SD), median |error|.

    .venv/bin/python scripts/eval_acdc.py --model resources/models/gemini-acdc \\
        --data ../shared/data/acdc/training --json runs/acdc-eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled ACDC model)")
    ap.add_argument("--data", default="../shared/data/acdc/training", help="ACDC training folder")
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--limit", type=int, default=0, help="first N subjects only (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the per-subject rows and the summary here")
    ap.add_argument("--patients", nargs="+", default=None, help="these patients (e.g. 1 6 11) instead of --split")
    ap.add_argument("--fold", type=int, default=None, help="the patients whose number %% 5 is this, instead of --split")
    ap.add_argument("--no-motion-correction", dest="motion_correction", action="store_false",
                    help="without the slice misalignment correction (core.motion)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.real import acdc_studies, evaluate_studies, format_summary, summarise
    from gemini_cmr.core.io.atomic import atomic_write_text
    from gemini_cmr.core.io.jsonio import jsonable
    from gemini_cmr.core.resources import acdc_model_path

    model = args.model or str(acdc_model_path())
    from gemini_cmr.core.evaluation.motion import WithMotion, acdc_patients

    sr = WithMotion(SuperResolver(model=model, device="cpu"), args.motion_correction)
    if args.patients or args.fold is not None:
        studies = acdc_patients(args.data, args.patients, None if args.fold is None else f"fold{args.fold}")
    else:
        studies = acdc_studies(args.data, args.split)
    if args.limit:
        studies = studies[: args.limit]
    t0 = time.perf_counter()
    rows = evaluate_studies(sr, studies, say=lambda line: print(line, flush=True))
    summary = {"model": model, "model_id": sr.model_id, "split": args.split,
               "motion_correction": args.motion_correction, **summarise(rows),
               "seconds": time.perf_counter() - t0}
    print("\n" + format_summary(summary))
    print(f"\nmodel {summary['model_id'][:12]} ({model}), {len(rows)} subjects, {summary['seconds']:.0f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps(jsonable({"summary": summary, "rows": rows}), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
