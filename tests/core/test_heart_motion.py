"""Where the cine beats (`core.postprocess.cine_motion_map`) and the heart-finding pass's check against it
(`core.predict.Predictor._where_it_beats`)."""

import logging

import numpy as np
import pytest

from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.postprocess import (
    HEART_MOTION_MIN,
    box_around,
    cine_motion_centre,
    cine_motion_map,
    heart_roi,
)
from gemini_cmr.core.study import Grid, Study
from tests.core.test_heart_pass import _fake_network, _predictor

BEAT_YX = (24, 30)  # LR pixels (2 mm) of the beating disc's centre


def _beating(n_phases=12, shape=(4, 80, 80), noise=0.0, seed=0):
    """A cine whose disc around `BEAT_YX` (radius 8 pixels) grows and shrinks over the cycle; a bright static
    block elsewhere; optional Gaussian noise, new in every phase."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    r = np.hypot(yy - BEAT_YX[0], xx - BEAT_YX[1])
    img = np.zeros((n_phases,) + shape, np.float32)
    for t in range(n_phases):
        radius = 6 + 3 * np.cos(2 * np.pi * t / n_phases)
        img[t] = 50 + 300 * (r <= radius)
    img[:, :, 55:75, 50:75] += 400  # static and brighter than the heart
    if noise:
        img += rng.normal(0, noise, img.shape).astype(np.float32)
    return img


def test_the_motion_map_finds_the_beating_disc_not_the_bright_static_block():
    grid = Grid((4, 80, 80), np.diag([2.0, 2.0, 8.0, 1.0]))
    for noise in (0.0, 30.0):
        m = cine_motion_map(_beating(noise=noise), grid)
        assert m.shape == (80, 80) and m.max() == pytest.approx(1.0) and m.min() >= 0
        j, i = np.unravel_index(np.argmax(m), m.shape)
        assert np.hypot(j - BEAT_YX[0], i - BEAT_YX[1]) <= 9  # on the disc's moving rim
        assert m[65, 62] < 0.05  # the static block does not move
        centre = cine_motion_centre(_beating(noise=noise), grid)
        assert np.allclose(centre[:2], (2 * BEAT_YX[1], 2 * BEAT_YX[0]), atol=2.0)  # world x, y (mm)
        assert centre[2] == pytest.approx(8.0 * 1.5)  # the stack's middle


def test_the_motion_map_of_two_phases_is_their_difference_and_none_without_motion():
    grid = Grid((4, 80, 80), np.diag([2.0, 2.0, 8.0, 1.0]))
    two = _beating(n_phases=2)
    m = cine_motion_map(two, grid)
    assert m is not None and m[BEAT_YX[0], BEAT_YX[1] + 8] > 0.5  # the rim the disc moved over
    assert cine_motion_map(two[:1], grid) is None  # a single phase
    still = np.repeat(two[:1], 5, axis=0)
    assert cine_motion_map(still, grid) is None
    noise = np.random.default_rng(1).random((6, 4, 80, 80)).astype(np.float32) * 100
    assert cine_motion_map(noise, grid) is None  # nothing stands out from the noise


def test_box_around_is_heart_roi_for_the_labels_centre():
    lab = np.zeros((3, 100, 120), np.uint8)
    lab[1, 10:30, 90:118] = 2
    expect = heart_roi(lab, (1.5, 1.5), 60.0)
    assert box_around((19.5, 103.5), (1.5, 1.5), 60.0, lab.shape[1:]) == expect == (0, 40, 80, 120)


def _study(noise=0.0):
    img = _beating(n_phases=8, noise=noise)
    return Study(image=img, affine=np.diag([2.0, 2.0, 8.0, 1.0]))


def test_a_heart_found_where_the_cine_does_not_move_is_found_again_where_it_beats(monkeypatch, caplog):
    _, p = _predictor()
    study = _study()
    sr = sr_grid(study.grid)  # 128 x 128 SR pixels of 1.25 mm
    seen = []
    # the whole field's "heart" on the static block (SR ~ (104, 100)); in a 60 mm box (48 x 48) the network
    # finds a heart a little off the box's centre
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(128, 128): (np.s_[:, 95:112, 90:110], 2),
                                                             (48, 48): (np.s_[:, 18:34, 20:36], 1)}))
    p.config["inference"] = {"roi_mm": 60.0}
    with caplog.at_level(logging.WARNING, logger="gemini_cmr.core.predict"):
        pred = p.predict(study, phases=[0])
    # the whole field, a box on where it beats, a box centred on the heart found in it, the prediction
    assert [(s[0], s[2]) for s in seen] == [((128, 128), True), ((48, 48), True), ((48, 48), True),
                                            ((48, 48), False)]
    assert "hardly moves" in caplog.text
    assert seen[1][1] != seen[0][1]  # the box's own intensity scale
    # the first box centred on the beating disc (SR (38.4, 48)); the heart found in it lies 1.5 and 3.5 pixels off
    # that box's centre (rows 18-34, columns 20-36 of 48), the second box centred on it; the stand-in network
    # puts the heart at the same place in the second box, so the final box moves once more by as much
    beat_sr = np.array(BEAT_YX) * 2 / 1.25
    y0, y1, x0, x1 = pred.roi
    assert (y1 - y0, x1 - x0) == (48, 48)
    assert abs((y0 + y1) / 2 - (beat_sr[0] + 2 * 1.5)) <= 1 and abs((x0 + x1) / 2 - (beat_sr[1] + 2 * 3.5)) <= 1
    assert sr.shape == pred.sr_grid.shape


def test_a_heart_found_where_the_cine_beats_is_kept_as_it_was(monkeypatch, caplog):
    _, p = _predictor()
    study = _study(noise=5.0)
    seen = []
    beat_sr = (np.array(BEAT_YX) * 2 / 1.25).round().astype(int)
    heart = np.s_[:, beat_sr[0] - 8:beat_sr[0] + 8, beat_sr[1] - 8:beat_sr[1] + 8]
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(128, 128): (heart, 2)}))
    p.config["inference"] = {"roi_mm": 60.0}
    with caplog.at_level(logging.WARNING, logger="gemini_cmr.core.predict"):
        pred = p.predict(study, phases=[0])
    assert [(s[0], s[2]) for s in seen] == [((128, 128), True), ((48, 48), False)]  # no second look
    assert "hardly moves" not in caplog.text
    y0, y1, x0, x1 = pred.roi
    assert (y0 + y1) / 2 == beat_sr[0] and (x0 + x1) / 2 == beat_sr[1]  # centred on the whole field's heart
    assert HEART_MOTION_MIN > 0


def test_a_single_phase_study_keeps_the_whole_field_heart(monkeypatch):
    _, p = _predictor()
    study = Study(image=_beating(n_phases=8)[:1], affine=np.diag([2.0, 2.0, 8.0, 1.0]))
    seen = []
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(128, 128): (np.s_[:, 95:112, 90:110], 2)}))
    p.config["inference"] = {"roi_mm": 60.0}
    p.predict(study, phases=[0])
    assert [(s[0], s[2]) for s in seen] == [((128, 128), True), ((48, 48), False)]


def test_the_box_where_it_beats_finding_nothing_keeps_the_whole_field_heart(monkeypatch, caplog):
    _, p = _predictor()
    study = _study()
    seen = []
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(128, 128): (np.s_[:, 95:112, 90:110], 2)}))
    p.config["inference"] = {"roi_mm": 60.0}
    with caplog.at_level(logging.WARNING, logger="gemini_cmr.core.predict"):
        pred = p.predict(study, phases=[0])
    assert "which found none: kept" in caplog.text
    y0, y1, x0, x1 = pred.roi
    assert abs((y0 + y1) / 2 - 103.5) <= 1 and abs((x0 + x1) / 2 - 99.5) <= 1  # the whole field's heart


def test_the_engine_passes_the_heart_pass_note_on_as_a_warning(monkeypatch):
    """`super-resolve` (the engine) reports the second look in the run's warnings (run.json, the app)."""
    from gemini_cmr.core.engine import SuperResolver

    _, p = _predictor()
    study = _study()
    seen = []
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(128, 128): (np.s_[:, 95:112, 90:110], 2),
                                                             (48, 48): (np.s_[:, 18:34, 20:36], 1)}))
    p.config["inference"] = {"roi_mm": 60.0}
    resolver = SuperResolver(model=p, device="cpu")
    for motion in (False, True):
        result = resolver.run(study, phases=[0, 4], meshes="none", motion_correction=motion)
        assert sum("hardly moves" in w for w in result.warnings) == 1, result.warnings
