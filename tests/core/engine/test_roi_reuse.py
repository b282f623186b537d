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


def test_engine_reuses_the_network_box_of_the_motion_pass_and_records_it(roi_model, study, monkeypatch, tmp_path):
    import json

    from gemini_cmr.core.outputs import write_outputs

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").symlink_to((roi_model / "model.safetensors").resolve())
    cfg = json.loads((roi_model / "config.json").read_text())
    cfg["inference"]["roi_margin_mm"] = 10
    (model / "config.json").write_text(json.dumps(cfg))
    eng = SuperResolver(model, device="cpu")
    calls = _count_whole_field(eng.predictor, monkeypatch)
    res = eng.run(study, phases="ed_es", meshes="none", motion_correction=True)
    assert calls == [1]
    assert res.net_roi is not None and res.net_roi == res.motion.net_roi
    y0, y1, x0, x1 = res.net_roi
    r0, r1, c0, c1 = res.roi
    assert r0 <= y0 < y1 <= r1 and c0 <= x0 < x1 <= c1 and (y1 - y0) * (x1 - x0) < (r1 - r0) * (c1 - c0)
    assert not res.sr_labels[:, :, :y0].any() and not res.sr_labels[:, :, y1:].any()
    write_outputs(res, tmp_path / "out")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["model"]["network_roi_sr_yx"] == list(res.net_roi)
    assert run["model"]["roi_sr_yx"] == list(res.roi)


def test_first_phases_come_first_and_the_outputs_are_the_same(roi_model, study):
    """`predict(first=)` runs the given phases' batch first and gives the same outputs in the same order;
    `on_chunk` sees the done phases grow, the first ones first, with the rows final when reported."""
    p = Predictor.load(roi_model, device="cpu", precision="float32")
    n = study.n_phases
    plain = p.predict(study)
    first = [n - 1, 2]
    seen: list[tuple[list[int], dict[int, np.ndarray]]] = []

    def on_chunk(part, done):
        rows = {t: np.array(part.sr_labels[part.phases.index(t)]) for t in done}
        seen.append((list(done), rows))

    ordered = p.predict(study, first=first, on_chunk=on_chunk, roi=plain.roi, net_roi=plain.net_roi)
    assert set(first) <= set(seen[0][0]) and len(seen[0][0]) <= p.batch_size  # in the first batch
    assert seen[-1][0] and sorted(seen[-1][0]) == list(range(n))
    assert all(set(a[0]) < set(b[0]) for a, b in zip(seen, seen[1:], strict=False))
    for _done, rows in seen:  # what was reported as done is what the prediction returns
        for t, lab in rows.items():
            np.testing.assert_array_equal(lab, ordered.sr_labels[t])
    np.testing.assert_array_equal(ordered.sr_labels, plain.sr_labels)
    np.testing.assert_allclose(ordered.sr_image, plain.sr_image, atol=1e-5)


def test_engine_preview_shows_the_first_phases_before_the_result(roi_model, study):
    eng = SuperResolver(roi_model, device="cpu")
    previews = []
    res = eng.run(study, phases="all", meshes="none", motion_correction=True, first=[3],
                  preview=lambda part: previews.append((list(part.done), part)))
    assert previews and 3 in previews[0][0] and len(previews[0][0]) < study.n_phases
    assert sorted(previews[-1][0]) == list(range(study.n_phases))
    last = previews[-1][1]
    np.testing.assert_array_equal(last.sr_labels, res.sr_labels)
    assert last.sr_grid.shape == res.sr_grid.shape and last.phases == res.phases


def test_first_phases_on_the_whole_field_of_view_give_the_same_outputs(study):
    from gemini_cmr.core.resources import bundled_model_path

    p = Predictor.load(bundled_model_path(), device="cpu", precision="float32")
    plain = p.predict(study)
    ordered = p.predict(study, first=[study.n_phases - 1, 0])
    np.testing.assert_array_equal(ordered.sr_labels, plain.sr_labels)
    np.testing.assert_allclose(ordered.sr_image, plain.sr_image, atol=1e-5)


def test_chunk_rows_puts_the_first_phases_in_the_first_batch_and_keeps_batches_full():
    from gemini_cmr.core.predict import chunk_rows

    assert chunk_rows(list(range(6)), 2) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert chunk_rows(list(range(6)), 2, [4]) == [[0, 4], slice(1, 3), [3, 5]]  # filled up with row 0
    assert chunk_rows(list(range(6)), 2, [5, 1]) == [[1, 5], [0, 2], slice(3, 5)]
    assert chunk_rows([10, 11, 12], 4, [11]) == [slice(0, 3)]  # one batch holds everything
    assert chunk_rows([10, 11, 12], 2, [99]) == [slice(0, 2), slice(2, 3)]  # not among the phases: ignored
    rows = chunk_rows(list(range(20)), 2, [18, 7])
    flat = [i for b in rows for i in (range(b.start, b.stop) if isinstance(b, slice) else b)]
    assert sorted(flat) == list(range(20)) and rows[0] == [7, 18]  # every row once
