"""Output-folder checks for a training run: can it be written, and a fresh name beside it (no Qt)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path


def writable_problem(out: Path) -> str:
    """'' when `out` can be created/written, else why not."""
    if not str(out).strip():
        return "choose an output folder"
    p = out
    while not p.exists():
        if p.parent == p:
            return "no existing parent folder"
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return ""


def new_run_name(out: Path) -> Path:
    """The first free `NAME-N` beside `out` (N from 2; a trailing `-N` of `out` is replaced)."""
    base = re.sub(r"-\d+$", "", out.name) or "run"
    for i in range(2, 1000):
        cand = out.with_name(f"{base}-{i}")
        if not cand.exists():
            return cand
    return out.with_name(f"{base}-{int(time.time())}")
