"""recipes/gemini-acdc/error_slices.py: slices are sorted into boundary errors, missed and extra slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]


def test_error_voxels_are_split_by_the_kind_of_slice():
    e = load_script(ROOT / "recipes" / "gemini-acdc" / "error_slices.py")
    manual = np.zeros((4, 6, 6), np.uint8)
    pred = np.zeros_like(manual)
    manual[0, :2, :2] = 3  # a basal RV slice the prediction misses: 4 error voxels
    manual[1, :2, :3] = 3
    pred[1, :2, :2] = 3  # boundary: 2 voxels
    pred[3, :1, :2] = 3  # an apical slice beyond the manual labels: 2 voxels
    rec = e.slice_records(pred, manual)
    assert rec["rv"] == [(0, 4, 0, 0), (1, 6, 4, 4), (3, 0, 2, 0)] and rec["lv"] == []
    records = [{"phase": "es", "structure": "rv", "slices": rec["rv"]}]
    got = e.summarise(records)["es_rv"]
    assert got["error_share"] == {"both": pytest.approx(0.25), "missed": pytest.approx(0.5),
                                  "pred_only": pytest.approx(0.25)}
    assert got["slices"] == {"missed": 1, "both": 1, "pred_only": 1}
    assert got["one_minus_pooled_dice"] == pytest.approx(8 / 16)
    assert e.summarise(records)["ed_rv"]["one_minus_pooled_dice"] == 0.0
