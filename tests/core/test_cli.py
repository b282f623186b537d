from __future__ import annotations

import subprocess
import sys

from core import __version__


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "core.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = run_cli("--help")
    assert out.returncode == 0 and "usage: gemini-cmr" in out.stdout
