#!/usr/bin/env python
"""The robustness evaluation (`gemini-cmr evaluate robustness`, `core.evaluation.robustness`) on the three
contoured Sunnybrook GE series of ../shared/data, pooled: LV cavity and myocardium Dice on the contoured slices
of both contoured phases, each perturbation paired against the unperturbed run.

    .venv/bin/python scripts/robustness_sunnybrook.py [--model DIR] [--perturbation NAME ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval_sunnybrook import ALL_SERIES as SERIES  # (series, contour folder) of the three contoured GE series

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sunnybrook")
    ap.add_argument("--model", default=None, help="model folder (default: the ACDC research model)")
    ap.add_argument("--perturbation", nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation import robustness as rb
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.jsonio import dumps
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path

    names = args.perturbation or list(rb.PERTURBATIONS)
    resolver = SuperResolver(model=args.model or str(acdc_model_path()), device="cpu")
    rows = []
    for series, contours in SERIES:
        study = attach_contours(load_study(args.data / series), args.data / "contours" / contours)
        rows += rb.evaluate_study(resolver, study, series, names, say=lambda s: print(s, file=sys.stderr, flush=True))
    summary = rb.summarise(rows)
    print(rb.format_summary(summary))
    if args.json:
        out = {"command": "scripts/robustness_sunnybrook.py " + " ".join(argv or sys.argv[1:]),
               "model_id": rows[0]["model_id"], "series": [s for s, _ in SERIES],
               "perturbations": {n: rb.PERTURBATIONS[n][0] for n in dict.fromkeys(["none", *names])},
               "summary": summary, "rows": rows}
        args.json.write_text(dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
