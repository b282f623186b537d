"""`gemini-cmr synth`: generate a paired LR/HR phantom dataset (or the demo study)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time


def register(subparsers, summary: str = "generate paired LR/HR cine phantoms") -> argparse.ArgumentParser:
    from gemini_cmr.core.synth.domains import DEFAULT_DOMAIN, DOMAINS

    p = subparsers.add_parser(
        "synth",
        help=summary,
        description="Generate beating-heart phantoms: LR SAX cine stacks with labels and the HR truth on the "
        "SR grid, in the paired dataset layout read by `gemini-cmr train` (see docs/phantoms.md).",
    )
    p.add_argument("out", help="output folder (the dataset, or with --demo the demo folder)")
    p.add_argument("--subjects", type=int, default=10, help="number of subjects (default 10)")
    p.add_argument("--seed", type=int, default=None,
                   help="dataset seed (default 0; demo: 2024); same seed, same data")
    p.add_argument("--domain", default=DEFAULT_DOMAIN, choices=sorted(DOMAINS),
                   help=f"acquisition domain (default {DEFAULT_DOMAIN})")
    p.add_argument("--phases", type=int, default=20, help="cardiac phases per cycle (default 20)")
    p.add_argument("--workers", type=int, default=1,
                   help="generate subjects in N processes (default 1; same files whatever N)")
    p.add_argument("--long-axis", nargs="+", default=(), choices=("4ch", "2ch"), metavar="VIEW",
                   help="also acquire long-axis cines (4ch, 2ch) with their own breath-hold offsets, written as "
                        "la_<view>.nii.gz and label_la_<view>.nii.gz beside the short-axis files")
    p.add_argument("--no-misalign", dest="misalign", action="store_false",
                   help="no breath-hold shifts between slices (the same subjects, aligned: e.g. to train on "
                        "aligned stacks or to measure what the shifts cost)")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset in OUT")
    p.add_argument("--demo", action="store_true",
                   help="write the demo study (one subject, LR cine only) as OUT/demo_study.nii.gz")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core.errors import GeminiError
    from gemini_cmr.core.synth.dataset import DEMO_SEED, write_dataset, write_demo

    start = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"synth: {msg}", file=sys.stderr, flush=True)

    if args.phases < 2:
        raise GeminiError("--phases must be at least 2")
    if args.seed is not None and args.seed < 0:
        raise GeminiError("--seed must be a non-negative integer")
    if args.demo:
        seed = DEMO_SEED if args.seed is None else args.seed
        path = write_demo(args.out, seed=seed, n_phases=args.phases, domain=args.domain)
        say(f"demo study written to {path} in {time.perf_counter() - start:.1f} s")
        return 0
    if args.seed is None:
        args.seed = 0
    command = (f"gemini-cmr synth {shlex.quote(str(args.out))} --subjects {args.subjects} --seed {args.seed} "
               f"--domain {args.domain} --phases {args.phases}"
               + (f" --long-axis {' '.join(args.long_axis)}" if args.long_axis else "")
               + ("" if args.misalign else " --no-misalign"))
    say(f"{args.subjects} subject(s), domain {args.domain}, {args.phases} phases, seed {args.seed} -> {args.out}")

    def progress(fraction: float, message: str) -> None:
        bar = "#" * int(round(fraction * 20))
        say(f"[{bar:<20}] {fraction * 100:5.1f}% {message}")

    manifest = write_dataset(args.out, args.subjects, args.seed, args.domain, args.phases,
                             command=command, overwrite=args.force, progress=progress,
                             workers=args.workers, long_axis=tuple(args.long_axis), misalign=args.misalign)
    say(f"done in {time.perf_counter() - start:.1f} s: {manifest}")
    print(manifest)
    return 0
