"""Fixtures shared by the engine tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemini_cmr.core.models.store import BUNDLED_MODEL_DIR


@pytest.fixture(scope="module")
def roi_model(tmp_path_factory) -> Path:
    """The bundled phantom model with heart-region inference switched on (a 120 mm box)."""
    model = tmp_path_factory.mktemp("roi") / "model"
    model.mkdir()
    (model / "model.safetensors").symlink_to(BUNDLED_MODEL_DIR / "model.safetensors")
    cfg = json.loads((BUNDLED_MODEL_DIR / "config.json").read_text())
    cfg["inference"] = {"roi_mm": 120, "keep_largest_heart_component": True, "heart_component_by": "myocardium"}
    (model / "config.json").write_text(json.dumps(cfg))
    return model
