"""Evaluate a Gemini-GAN model on a paired dataset split (3D + slice-wise Dice, PSNR/SSIM vs B-spline).

usage: .venv/bin/python scripts/eval_gemini.py [--model DIR] --data DIR [--split test] [--json OUT.json] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch  # noqa: E402

from gemini_cmr.core.evaluation.paired import evaluate_model, format_model_table  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    res = evaluate_model(args.model, args.data, args.split, device=args.device)
    print(f"model {res['model_id'][:12]}, split {res['split']}, {res['n_subjects']} subjects, "
          f"{time.time() - t0:.0f} s")
    print(format_model_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
