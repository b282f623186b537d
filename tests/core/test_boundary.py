"""The engine boundary: importing every `gemini_cmr.core` module must not import any Qt binding or pyvistaqt
(the static import contracts are in pyproject.toml, checked by import-linter: tests/test_layers.py)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import gemini_cmr.core

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "PySide2", "qtpy", "pyvistaqt", "shiboken6")


def all_core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(gemini_cmr.core.__path__, "gemini_cmr.core."))


def test_core_has_modules():
    mods = all_core_modules()
    assert "gemini_cmr.core.study" in mods and "gemini_cmr.core.geometry" in mods and "gemini_cmr.core.engine" in mods


def test_core_imports_no_gui():
    # A fresh interpreter in which the GUI packages cannot be imported at all: any import fails loudly.
    code = f"""
import importlib, importlib.abc, sys
FORBIDDEN = {FORBIDDEN!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in FORBIDDEN:
            raise ImportError('core must not import ' + name)
sys.meta_path.insert(0, Block())
for m in {all_core_modules()!r}:
    importlib.import_module(m)
leaked = [m for m in sys.modules if m.split('.')[0] in FORBIDDEN]
assert not leaked, leaked
print('ok', len({all_core_modules()!r}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")
