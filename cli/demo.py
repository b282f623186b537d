"""`gemini-cmr demo`: the main job on the bundled demo study.

With a display, the app opens on the demo study and runs Super-resolve; without one, the same pipeline
runs headless and the command says where the outputs are.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gemini_cmr.core import resources
from gemini_cmr.core.errors import GeminiError


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("demo", help=summary, description=__doc__)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder for the headless run")
    p.add_argument("--headless", action="store_true", help="never open the app, even with a display")
    p.set_defaults(func=run)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    study_path = resources.demo_study_path()
    if not study_path.exists():
        raise GeminiError("the bundled demo study is missing; reinstall gemini-cmr", study_path)
    from gemini_cmr.cli.main import build_parser

    if has_display() and not args.headless:
        return _dispatch(build_parser(), ["view", str(study_path), "--super-resolve"])
    rc = _dispatch(build_parser(), ["super-resolve", str(study_path), "--out", str(args.out)])
    if rc == 0:
        print(f"No display found: ran the pipeline headless. Outputs are in {args.out.resolve()}")
    return rc


def _dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Run another subcommand in-process, with the same error handling as the CLI."""
    sub_args = parser.parse_args(argv)
    return int(sub_args.func(sub_args) or 0)
