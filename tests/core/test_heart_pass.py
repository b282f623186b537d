"""The coarse heart-finding pass (`inference.heart_pass_mm`) and the geometry it needs."""

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import ModelError
from gemini_cmr.core.geometry import index_map, inplane_nearest, resample_nearest_stack, sr_grid
from gemini_cmr.core.study import Grid, Study


def _oblique_lr() -> Grid:
    from gemini_cmr.core.geometry import rotation_matrix

    aff = np.eye(4)
    aff[:3, :3] = rotation_matrix(np.array([1.0, 2.0, 0.5]), 25.0) @ np.diag([1.7, 1.7, 9.0])
    aff[:3, 3] = (-120.0, 40.0, 17.0)
    return Grid((6, 70, 90), aff)


def test_inplane_nearest_is_the_nearest_voxel_resampling_between_two_in_plane_spacings():
    lr = _oblique_lr()
    sr, coarse = sr_grid(lr), sr_grid(lr, inplane_mm=3.0)
    labels = np.random.default_rng(0).integers(0, 4, (2,) + coarse.shape).astype(np.uint8)
    ours = inplane_nearest(labels, coarse, sr)
    assert ours.shape == (2,) + sr.shape and ours.dtype == np.uint8
    ref = resample_nearest_stack(labels, coarse, sr)
    # the same voxels except where an SR pixel centre lies half-way between two coarse ones (these two
    # spacings are commensurate, so such ties recur; each resampler breaks them its own way)
    m = index_map(coarse, sr)
    fx = m[0, 0] * np.arange(sr.shape[2]) + m[0, 3]
    fy = m[1, 1] * np.arange(sr.shape[1]) + m[1, 3]
    tie_x, tie_y = np.isclose(fx % 1, 0.5, atol=1e-6), np.isclose(fy % 1, 0.5, atol=1e-6)
    # and inside the coarse pixel centres' span (scipy's constant mode gives the outer half pixels cval)
    inside_x, inside_y = (fx >= 0) & (fx <= coarse.shape[2] - 1), (fy >= 0) & (fy <= coarse.shape[1] - 1)
    clear = ~(tie_y[:, None] | tie_x[None, :]) & (inside_y[:, None] & inside_x[None, :])
    assert clear.mean() > 0.7
    np.testing.assert_array_equal(ours[..., clear], ref[..., clear])
    np.testing.assert_array_equal(inplane_nearest(labels[0], coarse, sr), ours[0])
    # a grid other than one of the same slices: refused
    other = sr_grid(lr, through_mm=4.0)
    with pytest.raises(ValueError, match="in-plane"):
        inplane_nearest(labels, coarse, other)
    with pytest.raises(ValueError, match="do not match"):
        inplane_nearest(labels[:, :3], coarse, sr)


def test_inplane_nearest_fills_voxels_outside_the_source():
    lr = Grid((2, 40, 40), np.diag([2.0, 2.0, 8.0, 1.0]))
    sr = sr_grid(lr)
    part = Grid((sr.shape[0], 10, 10), sr.affine.copy())  # the first 10 x 10 pixels of the SR grid
    labels = np.full((1,) + part.shape, 3, np.uint8)
    out = inplane_nearest(labels, part, sr, cval=7)
    assert (out[:, :, :10, :10] == 3).all()
    assert (out[:, :, 10:, :] == 7).all() and (out[:, :, :, 10:] == 7).all()


def test_touches_edge_ignores_the_grid_border():
    from gemini_cmr.core.predict import _touches_edge

    grid = Grid((2, 50, 60), np.eye(4))
    lab = np.zeros(grid.shape, np.uint8)
    assert not _touches_edge(lab, (10, 30, 10, 40), grid)
    lab[1, 15:20, 20:25] = 2
    assert not _touches_edge(lab, (10, 30, 10, 40), grid)
    assert _touches_edge(lab, (15, 30, 10, 40), grid)  # on the box's top row
    assert _touches_edge(lab, (10, 30, 10, 25), grid)  # on its last column
    lab[:] = 0
    lab[0, 0:3, 0:3] = 1
    assert not _touches_edge(lab, (0, 30, 0, 40), grid)  # the box's edge is the grid's own


def _predictor(study_shape=(2, 4, 80, 80)):
    from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
    from gemini_cmr.core.models.store import LoadedModel
    from gemini_cmr.core.predict import Predictor

    img = np.random.default_rng(0).random(study_shape).astype(np.float32) * 100 + 10
    img[:, :, 40:70, 50:75] += 400  # a bright region: the heart box's own intensity scale differs
    study = Study(image=img, affine=np.diag([2.0, 2.0, 8.0, 1.0]))
    mcfg = GeminiConfig(depth=32, widths=(4, 8, 8))
    loaded = LoadedModel(generator=GeminiGenerator(mcfg), config={"model": mcfg.to_dict()}, model_id="t" * 64,
                         weights_path=None)
    return study, Predictor(loaded, torch.device("cpu"), precision="float32")


def _fake_network(seen: list, hearts: dict):
    """A stand-in for `Predictor._run_safe`: a labels-only pass on an (h, w) field gets the heart block
    `hearts[(h, w)]` = (index, label) and nothing else (no heart for other sizes); the other passes label
    everything 3. `seen` receives ((h, w), scale, labels_only, context) per call."""

    def fake_run(placed, scale=1.0, out=None, flips=(), labels_only=False, context=None):
        h, w = placed.shape[2:]
        seen.append(((h, w), scale, labels_only, context))
        lab = np.zeros(placed.shape, np.uint8)
        if not labels_only:
            lab[:] = 3
        elif (h, w) in hearts:
            index, label = hearts[(h, w)]
            lab[(slice(None),) + index] = label
        return placed * 2, lab

    return fake_run


COARSE_HEART = (np.s_[8:24, 19:22, 24:27], 2)  # on the 4 mm grid (40 x 40): about SR pixel (64, 80)


def test_coarse_heart_pass_places_a_box_and_the_sr_grid_pass_within_it_finds_the_heart(monkeypatch):
    """heart_pass_mm 4: the whole field on a 4 mm grid places a first 60 mm box; the SR-grid pass on that box
    alone (its own intensity scale) gives the heart whose box the prediction uses."""
    study, p = _predictor()
    sr = sr_grid(study.grid)  # 128 x 128 at 1.25 mm (160 mm field)
    seen = []
    # within the first box (48 x 48 SR pixels): a heart a little off its centre
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(40, 40): COARSE_HEART,
                                                             (48, 48): (np.s_[8:24, 20:36, 26:40], 1)}))
    p.config["inference"] = {"roi_mm": 60.0, "heart_pass_mm": 4.0}
    pred = p.predict(study, phases=[0])
    assert [(s[0], s[2]) for s in seen] == [((40, 40), True), ((48, 48), True), ((48, 48), False)]
    y0, y1, x0, x1 = pred.roi
    assert (y1 - y0, x1 - x0) == (48, 48)  # 60 mm at 1.25 mm
    # the first box was centred on the coarse heart (SR (64, 80)); the box on the SR-grid pass's heart in it
    heart_y, heart_x = 64 - 24 + (20 + 36) / 2, 80 - 24 + (26 + 40) / 2
    assert abs((y0 + y1) / 2 - heart_y) <= 2 and abs((x0 + x1) / 2 - heart_x) <= 2
    assert seen[1][1] != seen[0][1]  # the first box's own intensity scale, not the whole study's
    assert (pred.sr_labels[:, :, y0:y1, x0:x1] == 3).all()
    assert pred.sr_labels.sum() == pred.sr_labels[:, :, y0:y1, x0:x1].sum()
    assert sr.shape == pred.sr_grid.shape


def test_coarse_heart_pass_gives_way_to_the_whole_field_when_the_heart_reaches_the_box_edge(monkeypatch):
    study, p = _predictor()
    seen = []
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {
        (40, 40): COARSE_HEART,
        (48, 48): (np.s_[8:24, 0:20, 10:30], 1),  # cut by the first box: on its first row
        (128, 128): (np.s_[8:24, 10:30, 10:30], 1)}))  # the whole SR field
    p.config["inference"] = {"roi_mm": 60.0, "heart_pass_mm": 4.0}
    pred = p.predict(study, phases=[0])
    assert [(s[0], s[2]) for s in seen] == [((40, 40), True), ((48, 48), True), ((128, 128), True),
                                            ((48, 48), False)]
    assert pred.roi == (0, 48, 0, 48)  # on the whole field's heart (centre 20, 20), moved inside the grid


def test_coarse_heart_pass_gives_way_when_the_box_holds_no_heart_and_places_the_context(monkeypatch):
    """A first box whose SR-grid pass finds nothing: the whole field on the SR grid. A first-phase-context
    model gets phase 0 on the same grid and part of it as every pass's input."""
    from gemini_cmr.core.geometry import place_on_sr_grid
    from gemini_cmr.core.models.gemini import GeminiConfig

    study, p = _predictor()
    p.model.config = GeminiConfig(depth=32, widths=(4, 8, 8), encoder="acquired-2d", first_phase_context=True)
    sr = sr_grid(study.grid)
    seen = []
    monkeypatch.setattr(p, "_run_safe", _fake_network(seen, {(40, 40): COARSE_HEART,
                                                             (128, 128): (np.s_[8:24, 60:80, 60:80], 1)}))
    p.config["inference"] = {"roi_mm": 60.0, "heart_pass_mm": 4.0}
    pred = p.predict(study, phases=[1])
    assert [(s[0], s[2]) for s in seen] == [((40, 40), True), ((48, 48), True), ((128, 128), True),
                                            ((48, 48), False)]
    assert pred.roi == (46, 94, 46, 94)  # on the whole field's heart (centre 70, 70)
    for grid, call in zip((sr_grid(study.grid, inplane_mm=4.0), sr), (seen[0], seen[2]), strict=True):
        np.testing.assert_array_equal(call[3], place_on_sr_grid(study.image[[0]], study.grid, grid))
    assert all(s[3] is not None and s[3].shape[2:] == s[0] for s in seen)


def test_heart_pass_mm_is_checked_in_model_configs():
    from gemini_cmr.core.models.gemini import GeminiConfig
    from gemini_cmr.core.models.store import validate_config

    cfg = {"kind": "gemini-gan", "version": 1, "model": GeminiConfig(depth=32, widths=(4, 8, 8)).to_dict(),
           "inference": {"heart_pass_mm": 3.0}}
    validate_config(cfg, "config.json")
    for bad in (-1, "3", 50):
        cfg["inference"]["heart_pass_mm"] = bad
        with pytest.raises(ModelError, match="heart_pass_mm"):
            validate_config(cfg, "config.json")
