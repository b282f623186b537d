#!/usr/bin/env python
"""LV Dice of Gemini CMR models against the Sunnybrook manual contours .

The Sunnybrook series (GE 1.5 T, another vendor than ACDC) goes through the whole pipeline for every
phase with contours; the SR labels are resampled onto the acquired slices (`Result.lr_labels`) and compared
with the rasterised contours on the contoured slices only (endocardium -> LV cavity, epicardium minus
endocardium -> LV myocardium; the contours have no RV): Dice over those slices, per phase.

    .venv/bin/python scripts/eval_sunnybrook.py --model resources/models/gemini-acdc [--adapter RUN] [--tta]

`--tta` adds a second run of each model with test-time augmentation (`super-resolve --tta`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--contours", default="../shared/data/sunnybrook/contours/SC-HF-I-1")
    ap.add_argument("--model", action="append", help="model folder(s); default: both bundled models")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tta", action="store_true", help="also run each model with test-time augmentation")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.real import contour_dice
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path, bundled_model_path

    study = attach_contours(load_study(args.study), args.contours)
    pairs = study.meta.extra["contour_slices"]
    print(f"{study.meta.vendor} {study.image.shape}: contours on {len(pairs)} slices in phases "
          f"{study.labelled_phases}")
    for model in args.model or [str(bundled_model_path()), str(acdc_model_path())]:
        resolver = SuperResolver(model=model, adapter=args.adapter, device="cpu")
        for tta in (False, True) if args.tta else (False,):
            for row in contour_dice(resolver, study, tta):
                print(f"{Path(model).name:16s} {row['model_id'][:12]} phase {row['phase']:2d}: {row['slices']} "
                      f"slices, LV cavity Dice {row['lv_cavity']:.3f}, LV myocardium Dice {row['lv_myocardium']:.3f}"
                      + (f" (adapter {args.adapter})" if args.adapter else "") + (" (tta)" if tta else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
