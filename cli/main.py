"""`gemini-cmr` entry point.

Each subcommand lives in its own module in this package and exposes
`register(subparsers)`, which adds its parser and sets `func=run` (a callable taking the parsed
args and returning an exit status). Modules are imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import io
import os

# Idle OpenMP threads sleep instead of spinning (libgomp and Intel's runtime read this once, when torch loads
# them, so it is set before anything imports torch). With other work on the cores (a training, another
# process) spinning waiters made the network several times slower; idle, sleeping costs a few percent
# (benchmarks/bench_omp_wait.py). A value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib
import logging
import signal
import sys
import threading

from gemini_cmr.core import __version__
from gemini_cmr.core.errors import GeminiError
from gemini_cmr.core.io.names import printable
from gemini_cmr.core.log import setup_logging

# (module name, summary) in the order shown by --help.
COMMANDS: list[tuple[str, str]] = [
    ("info", "describe a study (DICOM folder/zip, NIfTI, ACDC layout)"),
    ("synth", "generate paired LR/HR cine phantoms"),
    ("train", "train Gemini-GAN or a V-AMA adapter"),
    ("super_resolve", "super-resolve and segment a study"),
    ("evaluate", "evaluate a model on a paired dataset"),
    ("bench", "time the pipeline against the paper's reference configuration"),
    ("benchmark", "reproduce the paper's comparison tables (2: baselines, 3: domain adaptation)"),
    ("batch", "super-resolve a cohort of studies (resumable, shardable with torchrun)"),
    ("pacs", "find, pull and push studies on a PACS (DICOMweb or DIMSE)"),
    ("view", "open the desktop app"),
    ("demo", "run Gemini CMR on the bundled demo study"),
]

log = logging.getLogger("gemini_cmr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemini-cmr",
        description="Gemini CMR: super-resolution and 3D segmentation of cardiac cine MRI.",
    )
    parser.add_argument("--version", action="version", version=f"gemini-cmr {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS:
        module = importlib.import_module(f"gemini_cmr.cli.{name}")
        module.register(sub, summary)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that cleanups run (temporary output folders are removed)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _enable_crash_traces() -> None:
    """A crash in native code (Qt, VTK, torch) prints every thread's Python stack to stderr instead of
    ending the process silently, so that a bug report says where it happened."""
    import faulthandler

    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (RuntimeError, ValueError, OSError, io.UnsupportedOperation):  # no stderr, or one without a descriptor
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    _enable_crash_traces()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = args.func(args)
    except GeminiError as exc:
        print(f"gemini-cmr: {printable(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): stop quietly, as Unix tools do
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        except OSError:
            pass
        return 141
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"gemini-cmr: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
