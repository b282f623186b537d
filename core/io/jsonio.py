"""Strict JSON for every file and report the project writes: NaN and infinity become null, numpy scalars
and arrays plain Python, tuples lists (so the output parses in every JSON reader, not only Python's)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """`value` with NaN/inf -> None, numpy scalars -> Python, arrays/tuples -> lists, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of `value` (see `jsonable`)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)


__all__ = ["dumps", "jsonable"]
