"""`gemini-cmr view`: open the desktop app (PySide6), optionally scripted for screenshots.

The app is imported inside `run`, so importing this module (and `gemini-cmr --help`) never loads Qt.
"""

from __future__ import annotations

import argparse
import re

from gemini_cmr.core.errors import GeminiError


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


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'1600x1000' -> (1600, 1000); anything else is a one-line `GeminiError` (not a traceback)."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if not m or not all(200 <= int(v) <= 16384 for v in m.groups()):
        raise GeminiError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, each 200-16384, e.g. 1600x1000")
    return int(m.group(1)), int(m.group(2))


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    from gemini_cmr.app.main import run_view  # lazy: Qt is loaded only when the app starts

    return run_view(study=args.study, super_resolve=args.super_resolve, screenshot=args.screenshot,
                    quit_after=args.quit, model=args.model, adapter=args.adapter, device=args.device, size=size)
