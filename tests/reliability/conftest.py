"""Helpers for the reliability suite: run the CLI in-process or as a real process and check the error
contract (exit status 2, exactly one stderr line `gemini-cmr: <file>: <problem>`, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo" / "demo_study.nii.gz"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def run_cli(argv: list[str], capsys) -> tuple[int, str, str, float]:
    """`gemini-cmr ARGV` in this process; returns (status, stdout, stderr, seconds)."""
    import logging

    import gemini_cmr.core.log
    from gemini_cmr.cli.main import main

    capsys.readouterr()
    root = logging.getLogger()
    handlers, configured = list(root.handlers), gemini_cmr.core.log._CONFIGURED
    t0 = time.perf_counter()
    try:
        rc = main([str(a) for a in argv])
    finally:
        # main() installs a stderr handler bound to capsys' stream, which closes after the test
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        gemini_cmr.core.log._CONFIGURED = configured
    dt = time.perf_counter() - t0
    out, err = capsys.readouterr()
    return rc, out, err, dt


def run_cli_process(argv: list[str], timeout: float = 90, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gemini_cmr.cli.main", *map(str, argv)], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def assert_one_line_error(rc: int, err: str, expect: tuple[str, ...] = (), seconds: float | None = None,
                          limit_s: float = 20.0) -> str:
    assert rc == 2, f"exit status {rc}, stderr: {err!r}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    line = lines[0]
    assert line.startswith("gemini-cmr: "), line
    low = line.lower()
    for word in expect:
        assert word.lower() in low, f"{word!r} not in {line!r}"
    if seconds is not None:
        assert seconds < limit_s, f"took {seconds:.1f} s"
    return line


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (hidden ones too) with file contents; None for folders."""
    if not folder.exists():
        return {}
    out: dict[str, bytes | None] = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = p.read_bytes() if p.is_file() else None
    return out


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary folders of an output `name` left in `parent` (`.NAME.tmp-*`)."""
    return sorted(p.name for p in parent.glob(f".{name}.tmp-*"))


@pytest.fixture(scope="session")
def demo_study() -> Path:
    assert DEMO.exists(), DEMO
    return DEMO
