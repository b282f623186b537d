"""Default phases per network call (`core.predict.default_batch`): what the benchmarks chose per model kind."""

from __future__ import annotations

from gemini_cmr.core.predict import default_batch


def test_real_study_models_run_two_phases_per_call_on_the_cpu():
    roi = {"inference": {"roi_mm": 176}}
    assert default_batch("acquired-2d", roi, "cpu") == 2  # benchmarks/bench_batch.py: faster and smaller
    assert default_batch("acquired-2d", {}, "cpu") == 4  # the phantom model (demo): 4 stays faster
    assert default_batch("acquired-2d", roi, "cuda") == default_batch("acquired-2d", {}, "cuda") == 20
    assert default_batch("slices-as-channels", roi, "cpu") == default_batch("slices-as-channels", {}, "cuda") == 4
    assert default_batch("acquired-2d", {"inference": {"roi_mm": None}}, "cpu") == 4
