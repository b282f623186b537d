"""scripts/diagnose_volumes.py: volume ratio and the share of false positives beyond the true extent."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "diagnose_volumes.py"


def _load():
    spec = importlib.util.spec_from_file_location("diagnose_volumes", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_false_positives_beyond_the_base_are_counted_apart_from_boundary_errors():
    diag = _load().diagnose
    truth = np.zeros((6, 8, 8), np.uint8)
    truth[2:5, 2:6, 2:6] = 1  # LV in slices 2-4, 16 voxels each
    pred = truth.copy()
    pred[0:2, 2:6, 2:6] = 1  # 32 voxels in slices with no LV (beyond the base)
    pred[3, 1, 2:6] = 1  # 4 in-plane boundary voxels
    out = diag(pred, truth)
    assert out["LV"][0] == (48 + 36) / 48
    assert out["LV"][1] == 32 / 36
    assert out["RV"] == (0.0, 0.0)
