"""Study readers and writers. The front door is `core.io.load_study(path)` (see `core/io/loader.py`).

`load_study` is imported lazily so that modules needing only `core.io.nifti` or `core.io.atomic`
(training, the engine's writers) do not pay for importing pydicom.
"""

from __future__ import annotations

__all__ = ["load_study"]


def __getattr__(name: str):
    if name == "load_study":
        from gemini_cmr.core.io.loader import load_study

        return load_study
    raise AttributeError(f"module 'gemini_cmr.core.io' has no attribute {name!r}")
