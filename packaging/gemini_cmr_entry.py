"""Entry point of the PyInstaller bundle: the `gemini-cmr` executable (packaging/gemini-cmr.spec).

It is the same command line as the pip-installed `gemini-cmr` (`gemini_cmr.cli.main:main`); `gemini-cmr view`
opens the desktop app. Started with no arguments from a windowed build (Windows `console=False`, a macOS
`.app` opened from the Finder), it opens the app instead of printing the help.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _argv() -> list[str]:
    args = sys.argv[1:]
    windowed = sys.stdout is None or ".app/Contents/MacOS/" in sys.executable
    if not args and windowed:
        return ["view"]
    return args


def main() -> int:
    multiprocessing.freeze_support()
    # matplotlib comes in through pyvista (colour maps only); never let it pick a GUI backend.
    os.environ.setdefault("MPLBACKEND", "Agg")
    from gemini_cmr.cli.main import main as cli_main

    return cli_main(_argv())


if __name__ == "__main__":
    sys.exit(main())
