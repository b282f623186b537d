"""gemini_cmr.core.evaluation.metrics against scikit-image and hand-computed values on the same arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import metrics as skm

from gemini_cmr.core.evaluation import metrics


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    truth = rng.random((12, 40, 36)).astype(np.float32) * 300.0
    pred = truth + rng.normal(0, 20.0, truth.shape).astype(np.float32)
    return pred, truth


def test_psnr_matches_skimage(images):
    pred, truth = images
    for dr in (300.0, float(truth.max() - truth.min()), 1000.0):
        assert metrics.psnr(pred, truth, dr) == pytest.approx(
            skm.peak_signal_noise_ratio(truth, pred, data_range=dr), rel=1e-9
        )
    assert metrics.psnr(truth, truth, 1.0) == math.inf
    with pytest.raises(ValueError):
        metrics.psnr(pred, truth, 0)


def test_ssim_3d_matches_skimage(images):
    pred, truth = images
    dr = 300.0
    ref = skm.structural_similarity(truth.astype(np.float64), pred.astype(np.float64), data_range=dr)
    assert metrics.ssim(pred, truth, dr) == pytest.approx(ref, abs=1e-9)
    assert metrics.ssim(truth, truth, dr) == pytest.approx(1.0)


def test_ssim_slicewise_matches_skimage(images):
    pred, truth = images
    dr = 300.0
    ref = np.mean([
        skm.structural_similarity(t.astype(np.float64), p.astype(np.float64), data_range=dr)
        for p, t in zip(pred, truth)
    ])
    assert metrics.ssim(pred, truth, dr, mode="slicewise") == pytest.approx(ref, abs=1e-9)
    with pytest.raises(ValueError):
        metrics.ssim(pred, truth, dr, mode="4d")


def _labels(shift: int = 0) -> np.ndarray:
    lab = np.zeros((8, 20, 20), np.uint8)
    lab[2:6, 5 + shift:12 + shift, 5:12] = 1
    lab[2:6, 12 + shift:14 + shift, 5:12] = 2
    lab[3:5, 2:5, 14:18] = 3
    return lab


def test_dice_hand_computed_and_skimage_f1():
    truth = _labels()
    pred = _labels(shift=1)
    # LV cavity: 4 slices x 7 x 7 boxes shifted by one row -> overlap 4*6*7.
    assert metrics.dice(pred, truth, 1) == pytest.approx(2 * 4 * 6 * 7 / (2 * 4 * 7 * 7))
    assert metrics.dice(truth, truth, 2) == 1.0
    assert metrics.dice(pred, truth, 5) == 1.0  # absent from both
    assert math.isnan(metrics.dice(pred, truth, 5, empty=float("nan")))
    d = metrics.dice_per_structure(pred, truth)
    assert set(d) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    assert d["rv_cavity"] == 1.0
    # Dice equals the F1 score of the binary masks (independent formula).
    p, t = (pred == 2).ravel(), (truth == 2).ravel()
    tp = np.sum(p & t)
    f1 = 2 * tp / (2 * tp + np.sum(p & ~t) + np.sum(~p & t))
    assert d["lv_myocardium"] == pytest.approx(f1)


def test_slicewise_dice_skips_empty_slices():
    truth = np.zeros((4, 10, 10), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 2:6, 2:6] = 1  # 16 px
    pred[0, 2:6, 2:4] = 1  # 8 px inside -> 2*8/24
    truth[1, 2:4, 2:4] = 1  # only in truth -> 0
    # slices 2 and 3 empty in both: skipped
    expected = (2 * 8 / 24 + 0.0) / 2
    assert metrics.slicewise_dice(pred, truth, 1) == pytest.approx(expected)
    assert math.isnan(metrics.slicewise_dice(pred, truth, 3))
    # The 3D value differs: 2*8 / (8 + 20)
    assert metrics.dice(pred, truth, 1) == pytest.approx(16 / 28)
    sw = metrics.slicewise_dice_per_structure(pred, truth)
    assert sw["lv_cavity"] == pytest.approx(expected)


def test_summaries():
    m, s = metrics.mean_sd([1.0, 2.0, 3.0, float("nan")])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert metrics.format_mean_sd([0.871, 0.869]) == "0.87 (0.00)"
    assert metrics.format_mean_sd([]) == "n/a"
    ba = metrics.bland_altman([10, 12, 14], [9, 10, 11])
    assert ba["bias"] == pytest.approx(2.0)
    assert ba["sd"] == pytest.approx(1.0)
    assert ba["loa_low"] == pytest.approx(2 - 1.96) and ba["loa_high"] == pytest.approx(2 + 1.96)
    with pytest.raises(ValueError):
        metrics.dice(np.zeros((2, 2)), np.zeros((3, 3)), 1)


def test_slicewise_and_masked_psnr_and_heart_region():
    """The paper's PSNR averages per-slice PSNR over labelled slices; the masked PSNR takes the MSE over a
    region only; the heart region is every voxel within the margin (in mm, anisotropic spacing)."""
    from gemini_cmr.core.evaluation.metrics import heart_region, masked_psnr, psnr, slicewise_psnr

    truth = np.zeros((4, 6, 6))
    pred = truth.copy()
    pred[1] += 0.1  # error 0.1 on slice 1, 0.2 on slice 3, none on slice 2
    pred[3] += 0.2
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:4, 2, 2] = 1  # slices 1-3 labelled
    p1, p3 = 10 * np.log10(1 / 0.01), 10 * np.log10(1 / 0.04)
    assert slicewise_psnr(pred, truth, labels, 1.0) == np.inf  # slice 2 is exact
    labels[2] = 0
    assert slicewise_psnr(pred, truth, labels, 1.0) == pytest.approx((p1 + p3) / 2)
    assert np.isnan(slicewise_psnr(pred, truth, np.zeros_like(labels), 1.0))
    mask = np.zeros(truth.shape, bool)
    mask[3] = True
    assert masked_psnr(pred, truth, mask, 1.0) == pytest.approx(p3)
    assert masked_psnr(pred, truth, mask, 1.0) < psnr(pred, truth, 1.0)
    assert np.isnan(masked_psnr(pred, truth, np.zeros_like(mask), 1.0))
    lab = np.zeros((5, 9, 9), np.uint8)
    lab[2, 4, 4] = 2
    near = heart_region(lab, (10.0, 1.0, 1.0), margin_mm=3.0)
    assert near[2, 4, 1] and not near[2, 4, 0]  # 3 mm in-plane in, 4 mm out
    assert not near[1, 4, 4] and not near[3, 4, 4]  # the next slices are 10 mm away
    assert heart_region(lab, (2.0, 1.0, 1.0), margin_mm=3.0)[1, 4, 4]
    assert not heart_region(np.zeros_like(lab), (1, 1, 1)).any()
