"""Heart-region inference reuses the heart box of the motion-correction pass: one whole-field pass per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.io.loader import load_study
from gemini_cmr.core.predict import Predictor

DEMO = Path(__file__).resolve().parents[3] / "resources" / "demo" / "demo_study.nii.gz"


@pytest.fixture(scope="module")
def study():
    return load_study(DEMO)


def _count_whole_field(predictor: Predictor, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = predictor._heart_roi

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor, "_heart_roi", counting)
    return calls


def test_predict_with_the_found_box_gives_the_same_result_without_the_whole_field_pass(roi_model, study, monkeypatch):
    p = Predictor.load(roi_model, device="cpu")
    first = p.predict(study, phases=[0, 1])
    assert first.roi is not None
    y0, y1, x0, x1 = first.roi
    assert 0 < y1 - y0 < first.sr_grid.shape[1] and 0 < x1 - x0 < first.sr_grid.shape[2]
    calls = _count_whole_field(p, monkeypatch)
    again = p.predict(study, phases=[0, 1], roi=first.roi)
    assert calls == []
    assert again.roi == first.roi
    np.testing.assert_array_equal(again.sr_labels, first.sr_labels)
    np.testing.assert_allclose(again.sr_image, first.sr_image, atol=1e-5)


def test_a_box_outside_the_grid_is_not_reused(roi_model, study, monkeypatch):
    p = Predictor.load(roi_model, device="cpu")
    calls = _count_whole_field(p, monkeypatch)
    h, w = p.predict(study, phases=[0]).sr_grid.shape[1:]
    calls.clear()
    out = p.predict(study, phases=[0], roi=(0, h + 10, 0, w))
    assert calls == [1]
    assert out.roi is not None and out.roi[1] <= h


def test_engine_runs_the_whole_field_pass_once_with_motion_correction(roi_model, study, monkeypatch):
    eng = SuperResolver(roi_model, device="cpu")
    calls = _count_whole_field(eng.predictor, monkeypatch)
    res = eng.run(study, phases="ed_es", meshes="none", motion_correction=True)
    assert res.motion is not None and res.motion.roi is not None
    assert calls == [1]
    assert res.roi == res.motion.roi
