#!/usr/bin/env python
"""LV Dice of Gemini CMR models against the Sunnybrook manual contours (issue 14).

The Sunnybrook series (GE 1.5 T, another vendor than ACDC) goes through the whole pipeline for every
phase with contours; the SR labels are resampled onto the acquired slices (`Result.lr_labels`) and compared
with the rasterised contours on the contoured slices only (endocardium -> LV cavity, epicardium minus
endocardium -> LV myocardium; the contours have no RV): Dice over those slices, per phase.

    .venv/bin/python scripts/eval_sunnybrook.py --model resources/models/gemini-acdc [--adapter RUN]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--contours", default="../shared/data/sunnybrook/contours/SC-HF-I-1")
    ap.add_argument("--model", action="append", help="model folder(s); default: both bundled models")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.metrics import dice
    from gemini_cmr.core.resources import acdc_model_path, bundled_model_path

    study = attach_contours(load_study(args.study), args.contours)
    pairs = study.meta.extra["contour_slices"]
    phases = study.labelled_phases
    print(f"{study.meta.vendor} {study.image.shape}: contours on {len(pairs)} slices in phases {phases}")
    for model in args.model or [str(bundled_model_path()), str(acdc_model_path())]:
        r = SuperResolver(model=model, adapter=args.adapter, device="cpu").run(study, phases=phases, meshes="none")
        for t in phases:
            ks = sorted(k for tt, k in pairs if tt == t)
            pred = r.lr_labels[r.phases.index(t)][ks]
            truth = study.labels[t][ks]
            has_myo = bool((truth == 2).any())
            myo = dice(pred, truth, 2) if has_myo else float("nan")
            print(f"{Path(model).name:16s} {r.model_id[:12]} phase {t:2d}: {len(ks)} slices, LV cavity Dice "
                  f"{dice(pred, truth, 1):.3f}, LV myocardium Dice {myo:.3f}"
                  + (f" (adapter {args.adapter})" if args.adapter else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
