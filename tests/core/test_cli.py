from __future__ import annotations

import os
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


def test_openmp_threads_wait_passively_unless_the_environment_says_otherwise():
    """`gemini-cmr` sets OMP_WAIT_POLICY=PASSIVE before torch (and its OpenMP runtime) is loaded; a value the user
    set is kept."""
    import os

    code = ("import os, sys; import gemini_cmr.cli.main; assert 'torch' not in sys.modules; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "PASSIVE", out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.returncode == 0 and out.stdout.strip() == "ACTIVE", out.stderr[-2000:]


def test_a_native_crash_prints_where_it_happened():
    """A segmentation fault in native code under `gemini-cmr` prints every thread's Python stack to stderr
    (faulthandler), so that a bug report says where it happened; without stderr nothing is enabled."""
    code = ("import ctypes, sys; from gemini_cmr.cli.main import _enable_crash_traces; "
            "_enable_crash_traces(); ctypes.string_at(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"})
    assert out.returncode != 0
    assert "Segmentation fault" in out.stderr and "<string>" in out.stderr, out.stderr[-2000:]
    code = ("import sys, faulthandler; sys.stderr = None; from gemini_cmr.cli.main import _enable_crash_traces; "
            "_enable_crash_traces(); print(faulthandler.is_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, capsys):
    """`gemini-cmr info ... | head`: stdout's reader closes the pipe; exit status 141 (SIGPIPE's), no traceback."""
    from gemini_cmr.cli.main import main

    class Closed:
        def write(self, _text):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("no file descriptor")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["info", "--model", "phantom", "--json"]) == 141
    assert "Traceback" not in capsys.readouterr().err
