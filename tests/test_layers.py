"""The package house rules, checked as a user's machine sees them.

- The import contracts in pyproject.toml hold (import-linter: the engine never imports the app or the
  command line, inference never imports training, the engine's folders form layers without cycles).
- Installed, the code lives under one namespace: `gemini_cmr.core`, `.cli`, `.app`, `.resources`;
  the generic names `core`, `app` and `resources` are not importable outside the checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    out = subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_one_namespace_outside_the_checkout(tmp_path):
    code = """
import importlib, importlib.util
for name in ("core", "app", "cli", "resources"):
    assert importlib.util.find_spec(name) is None, name + " is importable as a top-level package"
import gemini_cmr.core, gemini_cmr.cli.main, gemini_cmr.app, gemini_cmr.resources
from gemini_cmr.core.resources import demo_study_path
assert demo_study_path().is_file(), demo_study_path()
print("ok", gemini_cmr.core.__version__)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")
