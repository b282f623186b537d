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


def test_missed_and_extra_slices_are_split_by_base_and_apex():
    e = load_script(ROOT / "recipes" / "gemini-acdc" / "error_slices.py")
    # ED LV cavity on slices 1-4, larger at slice 1: the base is at the low end of this stack
    lv_ed = [(1, 50, 50, 50), (2, 40, 40, 40), (3, 20, 20, 20), (4, 10, 10, 10)]
    rv_es = [(0, 0, 6, 0), (1, 8, 8, 8), (4, 2, 0, 0)]  # an extra basal slice, a missed apical one
    records = [{"subject": "p1", "phase": "ed", "structure": "lv", "slices": lv_ed},
               {"subject": "p1", "phase": "es", "structure": "rv", "slices": rv_es}]
    assert e.base_ends(records) == {"p1": (1, 4)}
    got = e.summarise(records)["es_rv"]
    assert got["by_end"] == {"missed_base": 0.0, "missed_apex": pytest.approx(0.25),
                             "pred_only_base": pytest.approx(0.75), "pred_only_apex": 0.0}
    # the same stack stored apex first
    flipped = [{**r, "slices": [(5 - z, *rest) for z, *rest in r["slices"]]} for r in records]
    assert e.base_ends(flipped) == {"p1": (4, 1)}
    assert e.summarise(flipped)["es_rv"]["by_end"] == got["by_end"]
    # without the subject's ED LV labels, no split
    assert "by_end" not in e.summarise(records[1:])["es_rv"]
