"""`gemini-cmr benchmark`: the paper's comparison tables on your own paired data.

  table2  super-resolution + segmentation: interpolations, U-Net, SR-GAN, SegSR-GAN, Gemini-GAN
  table3  domain adaptation before a frozen Gemini-GAN: none, CycleGAN, BicycleGAN, MUNIT, V-AMA

Missing methods are trained into OUT/runs/<method> (finished runs are reused, interrupted ones resumed),
then every method is evaluated on the test split; the tables go to OUT/table2.md|csv|json
(OUT/table3.* for table3). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

TABLE2_METHODS = ("nearest", "linear", "bspline", "unet-seg", "unet-img", "srgan-seg", "srgan-img",
                  "segsr-gan", "gemini-gan", "gemini-gan-a2d")
TABLE3_METHODS = ("none", "cyclegan", "bicyclegan", "munit", "vama")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (runs and tables)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per method (default 30; quick 2)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on training steps per method")
    p.add_argument("--quick", action="store_true",
                   help="small networks and a tiny budget (a smoke test: minutes on a CPU, no real figures)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many test subjects")


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("benchmark", help=summary, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="table", metavar="TABLE")
    t2 = sub.add_parser("table2", help="super-resolution + segmentation methods (paper Table 2)")
    t2.add_argument("--data", type=Path, required=True, help="paired dataset (manifest.json)")
    t2.add_argument("--methods", nargs="+", choices=TABLE2_METHODS, default=None, metavar="METHOD",
                    help=f"subset of {', '.join(TABLE2_METHODS)} (default all)")
    _common(t2)
    t2.set_defaults(func=run_table2)
    t3 = sub.add_parser("table3", help="domain adaptation + frozen Gemini-GAN (paper Table 3)")
    t3.add_argument("--source", type=Path, required=True,
                    help="paired dataset of the new (shifted) domain: adapted, and its test split evaluated "
                    "against its HR truth (V-AMA's naming)")
    t3.add_argument("--target", type=Path, required=True,
                    help="paired dataset of the domain Gemini-GAN was trained on")
    t3.add_argument("--model", type=Path, default=None,
                    help="frozen Gemini-GAN model (default: train one on --target into OUT/runs/gemini-gan)")
    t3.add_argument("--methods", nargs="+", choices=TABLE3_METHODS, default=None, metavar="METHOD",
                    help=f"subset of {', '.join(TABLE3_METHODS)} (default all)")
    _common(t3)
    t3.set_defaults(func=run_table3)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _settings(args: argparse.Namespace):
    from gemini_cmr.core.baselines.registry import Settings
    from gemini_cmr.core.errors import GeminiError

    for name in ("epochs", "max_steps", "limit"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise GeminiError(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads < 0:
        raise GeminiError("--threads must be >= 0")
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    max_steps = args.max_steps if args.max_steps is not None else (40 if args.quick else None)
    return Settings(epochs=epochs, max_steps=max_steps, quick=args.quick, seed=args.seed, device=args.device,
                    num_threads=args.threads)


def _say(msg: str) -> None:
    print(f"benchmark: {msg}", file=sys.stderr, flush=True)


def _command() -> str:
    return "gemini-cmr " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_table2(args: argparse.Namespace) -> int:
    from gemini_cmr.core.baselines.table2 import run_table2 as run

    rep = run(args.data, args.out, args.methods, _settings(args), limit=args.limit, say=_say, command=_command())
    print(rep["markdown"])
    return 0


def run_table3(args: argparse.Namespace) -> int:
    from gemini_cmr.core.baselines.table3 import run_table3 as run

    rep = run(args.source, args.target, args.out, args.methods, _settings(args), model=args.model,
              limit=args.limit, say=_say, command=_command())
    print(rep["markdown"])
    return 0
