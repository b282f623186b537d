"""scripts/lv_centre_line.py: the LV centre line's in-plane drift through a stack of label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.core.train.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


def _tilted_lv(step_px: float, nz: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    lab = np.zeros((nz, 64, 64), np.uint8)
    for k in range(nz):
        r = np.hypot(yy - 32, xx - (20 + step_px * k))
        lab[k][r < 10] = 2
        lab[k][r < 6] = 1
    return lab


def test_drift_is_the_centre_line_s_travel_over_the_lv_and_zero_for_a_straight_one():
    from gemini_cmr.core.study import Grid

    mod = load_script(ROOT / "scripts" / "lv_centre_line.py")
    grid = Grid((8, 64, 64), np.diag([1.5, 1.5, 10.0, 1.0]))
    tilted = mod.centre_line(_tilted_lv(2.0), grid, 100.0)
    assert tilted["slices"] == 8 and tilted["drift_mm"] == pytest.approx(2.0 * 1.5 * 7, abs=0.05)
    assert tilted["residual_mm"] < 0.05
    assert mod.centre_line(_tilted_lv(0.0), grid, 100.0)["drift_mm"] == pytest.approx(0.0, abs=1e-6)
    assert mod.centre_line(_tilted_lv(0.0, nz=3), grid, 100.0) is None  # too few slices for a line
