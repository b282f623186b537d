from __future__ import annotations

import subprocess
import sys

from gemini_cmr.core import __version__


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "gemini_cmr.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = run_cli("--help")
    assert out.returncode == 0 and "usage: gemini-cmr" in out.stdout


def test_parser_stays_light():
    """Building the parser (every --help/--version) must not import torch, scipy or pyvista."""
    code = ("import sys; from gemini_cmr.cli.main import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'scipy', 'pyvista', 'vtk') if m in sys.modules]; "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
