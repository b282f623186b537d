"""Cardiac cine phantoms: parametric beating heart, bSSFP-like appearance, LR acquisition simulator,
acquisition domains and the paired dataset writer (`gemini-cmr synth`). See docs/phantoms.md.

Names are imported on first use (PEP 562), so `gemini-cmr --help` and the synth command's parser do
not pay for scipy/torch imports.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SliceShifts": "acquisition", "plan_lr_grid": "acquisition", "simulate_lr_from_volume": "acquisition",
    "ANATOMY_RANGES": "anatomy", "Phantom": "anatomy", "Tissue": "anatomy", "sample_heart_params": "anatomy",
    "synthesize_from_labels": "appearance",
    "PhantomPair": "dataset", "make_subject": "dataset", "subject_seed": "dataset", "write_dataset": "dataset",
    "write_demo": "dataset",
    "DOMAINS": "domains", "Acquisition": "domains", "Domain": "domains", "get_domain": "domains",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gemini_cmr.core.synth.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gemini_cmr.core.synth' has no attribute {name!r}")
