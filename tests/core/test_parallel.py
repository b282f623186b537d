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


def _hint_after(code: str, env: dict[str, str]) -> str:
    """numpy's huge-page hint (on/off) in a fresh process after `code` ran, with `env` added."""
    import os
    import subprocess

    full = dict(os.environ)
    for k in ("NUMPY_MADVISE_HUGEPAGE", "GEMINI_CMR_NUMPY_HUGEPAGE"):
        full.pop(k, None)
    full.update(env)
    probe = (f"{code}\nfrom numpy._core.multiarray import _set_madvise_hugepage as s\n"
             "print('on' if s(False) else 'off')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=full)
    return out.stdout.split()[-1]


def test_predictor_start_up_turns_numpy_hugepage_hint_off_unless_the_user_chose():
    """A Predictor turns numpy's huge-page hint off (numpy's default is on); NUMPY_MADVISE_HUGEPAGE (the
    user's choice in numpy) and GEMINI_CMR_NUMPY_HUGEPAGE=1 leave it as it is."""
    make = ("import torch\nfrom gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator\n"
            "from gemini_cmr.core.models.store import LoadedModel\nfrom gemini_cmr.core.predict import Predictor\n"
            "c = GeminiConfig(depth=8, widths=(4, 8))\n"
            "Predictor(LoadedModel(GeminiGenerator(c), {'model': c.to_dict()}, 't' * 64, None), torch.device('cpu'))")
    default = _hint_after("import numpy", {})  # numpy's own: on for Linux kernels from 4.6
    assert _hint_after(make, {}) == "off"
    assert _hint_after(make, {"NUMPY_MADVISE_HUGEPAGE": "1"}) == "on"
    assert _hint_after(make, {"GEMINI_CMR_NUMPY_HUGEPAGE": "1"}) == default
    assert _hint_after(make, {"NUMPY_MADVISE_HUGEPAGE": "0"}) == "off"
