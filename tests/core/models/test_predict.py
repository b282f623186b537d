from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import Cancelled, StudyError
from core.geometry import sr_grid
from core.models.gemini import GeminiConfig, GeminiGenerator
from core.models.preprocess import depth_windows
from core.models.store import save_model
from core.predict import Predictor, class_argmax, run_stacks
from core.study import Study
from core.train.toy_data import make_subject


@pytest.fixture(scope="module")
def study():
    lr_i, _, lr_a, *_ = make_subject(np.random.default_rng(0), n_phases=3, lr_shape=(6, 30, 34))
    return Study(lr_i, lr_a)


def _predictor(tmp_path, depth=32):
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=depth, widths=(4, 8, 8))).eval()
    save_model(tmp_path / "m", g)
    return Predictor.load(tmp_path / "m", device="cpu", batch_size=2)


def test_predict_shapes_units_and_progress(tmp_path, study):
    p = _predictor(tmp_path)
    calls = []
    pred = p.predict(study, progress=lambda f, m: calls.append(f))
    sr = sr_grid(study.grid)
    assert pred.sr_grid == sr
    assert pred.phases == [0, 1, 2]
    assert pred.sr_image.shape == (3, *sr.shape) and pred.sr_image.dtype == np.float32
    assert pred.sr_labels.shape == (3, *sr.shape) and pred.sr_labels.dtype == np.uint8
    assert pred.sr_labels.max() < 4
    assert pred.model_id == p.model_id and len(p.model_id) == 64
    assert calls[0] == 0.0 and calls[-1] == 1.0
    # input intensity units: scaling the study scales the SR image (normalisation by the percentile)
    pred2 = p.predict(Study(study.image * 10, study.affine), phases=[1])
    np.testing.assert_allclose(pred2.sr_image[0], pred.sr_image[1] * 10, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(pred2.sr_labels[0], pred.sr_labels[1])


def test_deep_slabs_use_overlapping_windows(tmp_path, study):
    p = _predictor(tmp_path, depth=16)  # slab of 24 SR slices > depth 16
    assert len(depth_windows(sr_grid(study.grid).shape[0], 16)) > 1
    pred = p.predict(study, phases=[0])
    assert pred.sr_image.shape[1] == sr_grid(study.grid).shape[0]
    assert np.all(np.isfinite(pred.sr_image))


def test_depth_windows_cover_the_slab():
    for n, d in [(10, 16), (16, 16), (17, 16), (50, 16), (64, 64), (100, 64)]:
        cover = np.zeros(n, int)
        for start, off in depth_windows(n, d):
            cover[start:start + min(n, d)] += 1
            assert off + min(n, d) <= d
        assert cover.min() >= 1


def test_cancel_and_bad_phases(tmp_path, study):
    p = _predictor(tmp_path)
    with pytest.raises(Cancelled):
        p.predict(study, cancel=lambda: True)
    with pytest.raises(StudyError):
        p.predict(study, phases=[5])


def test_run_stacks_and_argmax():
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=8, widths=(4, 8))).eval()
    img, lab = run_stacks(g, np.random.rand(2, 5, 13, 11).astype(np.float32), torch.device("cpu"))
    assert img.shape == lab.shape == (2, 5, 13, 11)
    s = torch.randn(2, 4, 3, 5, 5)
    assert torch.equal(class_argmax(s), s.argmax(1).to(torch.uint8))
