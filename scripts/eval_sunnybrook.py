#!/usr/bin/env python
"""LV Dice of Gemini CMR models against the Sunnybrook manual contours .

The Sunnybrook series (GE 1.5 T, another vendor than ACDC) goes through the whole pipeline for every
phase with contours; the SR labels are resampled onto the acquired slices (`Result.lr_labels`) and compared
with the rasterised contours on the contoured slices only (endocardium -> LV cavity, epicardium minus
endocardium -> LV myocardium; the contours have no RV): Dice over those slices, per phase.

    .venv/bin/python scripts/eval_sunnybrook.py --model resources/models/gemini-acdc [--adapter RUN] [--tta]
        [--all-series] [--json OUT]

`--tta` adds a second run of each model with test-time augmentation (`super-resolve --tta`).
`--all-series` runs the three contoured GE series of ../shared/data (instead of `--study` / `--contours`);
`--json` writes every row (series, model, phase, slices, Dice).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ALL_SERIES = (("SCD0000101", "SC-HF-I-1"), ("SCD0000401", "SC-HF-I-5"), ("SCD0000501", "SC-HF-I-6"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--contours", default="../shared/data/sunnybrook/contours/SC-HF-I-1")
    ap.add_argument("--model", action="append", help="model folder(s); default: both bundled models")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tta", action="store_true", help="also run each model with test-time augmentation")
    ap.add_argument("--all-series", action="store_true", help="the three contoured Sunnybrook series")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.real import contour_dice
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path, bundled_model_path

    root = Path(args.study).parent
    series = ([(root / s, root / "contours" / c) for s, c in ALL_SERIES] if args.all_series
              else [(Path(args.study), Path(args.contours))])
    models = args.model or [str(bundled_model_path()), str(acdc_model_path())]
    resolvers = {m: SuperResolver(model=m, adapter=args.adapter, device="cpu") for m in models}
    out = []
    for study_path, contours in series:
        study = attach_contours(load_study(study_path), contours)
        pairs = study.meta.extra["contour_slices"]
        print(f"{study_path.name}: {study.meta.vendor} {study.image.shape}: contours on {len(pairs)} slices in "
              f"phases {study.labelled_phases}")
        for model, resolver in resolvers.items():
            for tta in (False, True) if args.tta else (False,):
                for row in contour_dice(resolver, study, tta):
                    print(f"{Path(model).name:16s} {row['model_id'][:12]} phase {row['phase']:2d}: {row['slices']} "
                          f"slices, LV cavity Dice {row['lv_cavity']:.3f}, LV myocardium Dice "
                          f"{row['lv_myocardium']:.3f}" + (f" (adapter {args.adapter})" if args.adapter else "")
                          + (" (tta)" if tta else ""), flush=True)
                    out.append({"series": study_path.name, "model": model, "tta": tta, "adapter": args.adapter,
                                **row})
    if args.json:
        import json

        from gemini_cmr.core.io.atomic import atomic_write_text

        clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in out]
        atomic_write_text(args.json, json.dumps({"rows": clean}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
