"""The viewer state's slice-motion text and corrected input stack (the Display panel's toggle)."""

from __future__ import annotations

import numpy as np

from gemini_cmr.app.viewer_state import ViewerState
from gemini_cmr.core.engine import SuperResolver
from tests.core.engine.fakes import FakePredictor, make_study


def test_motion_text_and_corrected_input():
    study = make_study(n_phases=2)
    state = ViewerState()
    state.show_study(study)
    assert state.motion_text() == "" and state.corrected_input() is None
    r = SuperResolver(model=FakePredictor()).run(study, phases="all", meshes="none")
    r.motion.shifts_mm[:] = 0.0
    r.motion.shifts_mm[r.motion.estimated] = [1.8, 0.0]  # one pixel
    state.show_result(r)
    assert state.motion_text().startswith("Slice shifts (mm, by slice):")
    image, labels = state.corrected_input()
    assert image.shape == study.image.shape and labels.shape == study.image.shape
    k = int(np.flatnonzero(r.motion.estimated)[0])
    assert np.allclose(image[0, k, :, :-3], study.image[0, k, :, 1:-2], atol=1e-3)  # one pixel to the left
    off = SuperResolver(model=FakePredictor()).run(study, phases="all", meshes="none", motion_correction=False)
    state.show_result(off)
    assert state.motion_text() == "Slice motion correction: off" and state.corrected_input() is None
