"""`gemini-cmr evaluate --data DIR --model M`: the paper's evaluation on a paired dataset.

For every subject of the split (default `test`) in DIR/manifest.json (layout: docs/DEVELOPING.md), the
LR cine is super-resolved at ED and ES (the manifest's phases; else max/min of the ground-truth LV
cavity volume) and compared with the HR ground truth on the SR grid (HR files not exactly on the SR
grid are resampled by world coordinates: image linear, labels nearest):
- Dice per structure at ED and ES: 3D volumetric (primary) and the paper's slice-wise variant;
- PSNR and SSIM (3D, 7x7x7 window) of the SR image at ED and ES, data range = the HR image's range
  (max - min) in that phase; the paper's slice-wise variants (PSNR per 2D slice on the slices with
  ground-truth labels, SSIM per slice) on the second row; the PSNR within 10 mm of the labelled heart in
  the JSON output and under the table;
- phenotype errors, SR labels minus HR labels: bias and 95% limits of agreement (bias +/- 1.96 sd) for
  LVEDV, LVESV, LVEF, LV mass and RVEDV (and RVESV, RVEF).
Values are mean (sd) over subjects. `--json` prints everything, per subject included, as JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemini_cmr.core.errors import GeminiError


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("evaluate", help=summary, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="paired dataset folder (with manifest.json)")
    p.add_argument("--model", type=Path, default=None, help="Gemini-GAN model (default: bundled)")
    p.add_argument("--adapter", type=Path, default=None, help="V-AMA adapter applied to the LR input first")
    p.add_argument("--split", default="test", help="subjects of this split (train, val, test; 'all' = every one)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many subjects")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.cli.super_resolve import StderrProgress
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.paired import evaluate_dataset, format_table, labelled_subjects
    from gemini_cmr.core.io.jsonio import dumps

    if args.limit is not None and args.limit < 1:
        raise GeminiError("--limit must be at least 1")
    labelled_subjects(args.data.expanduser(), args.split)  # fail fast, before loading the model
    resolver = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
    res = evaluate_dataset(args.data, resolver, args.split, args.limit, progress=StderrProgress(True))
    if args.json:
        print(dumps(res, indent=2))
    else:
        print(format_table(res))
    sys.stdout.flush()
    return 0
