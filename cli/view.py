"""`gemini-cmr view`: open the desktop app (PySide6), optionally scripted for screenshots.

The app is imported inside `run`, so importing this module (and `gemini-cmr --help`) never loads Qt.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, summary: str = "open the desktop app") -> None:
    p = subparsers.add_parser(
        "view", help=summary, description="Open the Gemini CMR desktop app.",
        epilog="Example: gemini-cmr view study.nii.gz --super-resolve --screenshot shot.png --quit",
    )
    p.add_argument("study", nargs="?", help="study to open: NIfTI file, DICOM folder or zip, ACDC folder")
    p.add_argument("--super-resolve", action="store_true", help="run the pipeline once the study is open")
    p.add_argument("--screenshot", metavar="OUT.png", help="save a screenshot of the whole window when done")
    p.add_argument("--quit", action="store_true", help="exit when done (scripted use)")
    p.add_argument("--model", help="model folder or .safetensors file (default: the bundled model)")
    p.add_argument("--adapter", help="V-AMA adapter folder (default: none)")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N (default: the remembered choice, else auto)")
    p.add_argument("--size", metavar="WxH", help="window size, e.g. 1600x1000")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    size = None
    if args.size:
        w, _, h = args.size.lower().partition("x")
        size = (int(w), int(h))
    from gemini_cmr.app.main import run_view  # lazy: Qt is loaded only when the app starts

    return run_view(study=args.study, super_resolve=args.super_resolve, screenshot=args.screenshot,
                    quit_after=args.quit, model=args.model, adapter=args.adapter, device=args.device, size=size)
