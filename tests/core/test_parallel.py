"""gemini_cmr.core.parallel: how many processes a preprocessing pool really gets."""

from __future__ import annotations

import sys
import types

from gemini_cmr.core.parallel import process_workers


def test_process_workers(monkeypatch):
    assert process_workers(3) == 3 and process_workers(0) == 1
    assert 1 <= process_workers(None) <= 8
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # a PyInstaller bundle: no spawn pool
    assert process_workers(4) == 1
    monkeypatch.delattr(sys, "frozen")
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__file__="/work/<stdin>"))
    assert process_workers(4) == 1  # a main module read from stdin cannot be re-imported by the children
