"""`gemini-cmr train cv`: k-fold cross-validation of a training recipe on an LR-labelled cohort.

Each fold trains on the other folds for the config's fixed step count (nothing is chosen on the held-out
fold: the model is the last checkpoint), exports it with the research model's inference settings, and
evaluates it through the whole pipeline on the held-out patients (Dice per structure at ED and ES on the
acquired slices, LVEDV/LVESV/LVEF/LV mass/RVEDV errors). ACDC folds are patient number modulo the fold
count, so with 5 folds each holds 4 patients of every pathology group. Interrupted, it resumes where it
stopped. Results: RUN/cv.md, RUN/cv.json; per fold RUN/fold<k>/ (checkpoints, model/, eval.json).

Example: gemini-cmr train cv --data acdc:../shared/data/acdc/training --config recipes/gemini-acdc/cpu.json
         --out runs/acdc-cv --device cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers, summary: str | None = None) -> None:
    p = subparsers.add_parser("cv", help=summary or "cross-validate a training recipe on an LR-labelled cohort",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="acdc:PATH, mnms:PATH or pairs:MANIFEST.json")
    p.add_argument("--config", type=Path, required=True,
                   help="training config JSON (keys of core.train.semi.SemiConfig; max_steps = steps per fold)")
    p.add_argument("--out", type=Path, required=True, help="folder for the folds' runs and the summary")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--only", help="comma-separated folds to run (default: all)")
    p.add_argument("--final", action="store_true",
                   help="train the recipe on every subject into OUT/final/ and export OUT/final/model/ "
                        "(the model to ship; no folds)")
    p.add_argument("--tta", action="store_true",
                   help="evaluate the folds with test-time augmentation (super-resolve --tta): per fold "
                        "eval_tta.json, summary OUT/cv_tta.json and cv_tta.md (trained folds are reused)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="default: cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (overrides the config)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.train.cv import run_cv, train_final
    from gemini_cmr.core.train.gemini import read_training_config

    config = read_training_config(args.config)
    if args.threads is not None:
        config["num_threads"] = args.threads
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.final:
        if args.only or args.tta:
            raise DataError("--final trains on every subject; it takes no --only or --tta")
        print(train_final(args.data, config, args.out, args.device, say=say))
        return 0
    only = None
    if args.only:
        try:
            only = [int(v) for v in args.only.split(",") if v.strip()]
        except ValueError:
            raise DataError(f"--only must list fold numbers, e.g. 1,3 (got {args.only!r})") from None
    summary = run_cv(args.data, config, args.out, args.folds, only, args.device, say=say, tta=args.tta)
    print(summary["markdown"])
    return 0
