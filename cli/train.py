"""`gemini-cmr train`: train Gemini-GAN (`train gemini`), a V-AMA adapter (`train vama`), or cross-validate
a training recipe on an LR-labelled cohort (`train cv`).

The sub-subcommands live in `cli/train_gemini.py`, `cli/train_vama.py` and `cli/train_cv.py`, each exposing
`register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS = ("train_gemini", "train_vama", "train_cv")


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("train", help=summary, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="train_command", metavar="MODEL")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"gemini_cmr.cli.{name}")
        module.register(sub)

    def run(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=run)
