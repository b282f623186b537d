import numpy as np

from gemini_cmr.core.postprocess import keep_largest_heart_component, postprocess_labels


def test_keeps_only_the_largest_heart_component():
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:5, 4:12, 4:12] = 2
    lab[1:5, 6:10, 6:10] = 1
    lab[1:5, 4:12, 12:16] = 3  # touches the myocardium: same component
    lab[0, 18:20, 0:3] = 3  # isolated false positive
    lab[5, 0:2, 18:20] = 1
    out = keep_largest_heart_component(lab)
    assert out[0, 18:20, 0:3].sum() == 0 and out[5, 0:2, 18:20].sum() == 0
    np.testing.assert_array_equal(out[1:5], lab[1:5])
    batch = np.stack([lab, lab])
    assert np.array_equal(postprocess_labels(batch.copy(), {}), batch)  # not asked for: unchanged
    done = postprocess_labels(batch.copy(), {"inference": {"keep_largest_heart_component": True}})
    assert np.array_equal(done[1], out)


def test_heart_component_on_the_labels_bounding_box_equals_the_whole_array():
    """The component is found on the labels' bounding box (plus the wall filter's reach): the same labels as
    the computation on the whole array, for heart-like and random labels, near and on the array's edges."""
    from gemini_cmr.core.postprocess import _keep_heart_component

    rng = np.random.default_rng(3)
    cases = []
    for i in range(12):
        lab = np.zeros((5, 60, 70), np.uint8)
        y, x = rng.integers(0, 50), rng.integers(0, 60)
        lab[1:4, y:y + 10, x:x + 10] = 2
        lab[1:4, y + 3:y + 7, x + 3:x + 7] = 1
        lab[1:4, y:y + 10, x + 10:x + 14] = 3
        for _ in range(i % 4):  # false positives elsewhere, some on the array's border
            a, b = rng.integers(0, 58), rng.integers(0, 68)
            lab[rng.integers(0, 5), a:a + 3, b:b + 3] = rng.integers(1, 4)
        cases.append(lab)
    cases += [(rng.random((4, 30, 30)) < 0.15).astype(np.uint8) * rng.integers(1, 4, (4, 30, 30), dtype=np.uint8)
              for _ in range(4)]
    for lab in cases:
        for by in ("size", "myocardium", "ventricle"):
            whole = _keep_heart_component(lab, by)
            expected = lab if whole is None else whole
            np.testing.assert_array_equal(keep_largest_heart_component(lab, by), expected)
    empty = np.zeros((2, 8, 8), np.uint8)
    assert keep_largest_heart_component(empty, "ventricle") is empty


def test_ventricle_criterion_keeps_the_walled_lv_over_a_solid_false_myocardium_blob():
    lab = np.zeros((6, 40, 40), np.uint8)
    lab[1:5, 4:14, 4:14] = 2  # the ventricle: myocardium ring around the LV cavity
    lab[1:5, 6:12, 6:12] = 1
    lab[0:6, 20:36, 20:36] = 2  # a larger solid block of false myocardium
    lab[0, 38:40, 0:2] = 1  # a lone LV cavity speck, no wall
    by_myo = keep_largest_heart_component(lab, "myocardium")
    assert by_myo[1:5, 6:12, 6:12].sum() == 0  # the blob wins by myocardium ...
    out = keep_largest_heart_component(lab, "ventricle")
    np.testing.assert_array_equal(out[1:5, 4:14, 4:14], lab[1:5, 4:14, 4:14])  # ... the ventricle by walled LV
    assert out[:, 20:36, 20:36].sum() == 0 and out[0, 38:40, 0:2].sum() == 0
    blob = np.where(lab == 1, 0, lab).astype(np.uint8)  # no LV cavity anywhere: the most myocardium
    np.testing.assert_array_equal(keep_largest_heart_component(blob, "ventricle"),
                                  keep_largest_heart_component(blob, "myocardium"))


def test_ventricle_criterion_prefers_the_heart_over_a_large_false_cavity_with_a_myocardium_edge():
    """A whole-field pass on a GE study painted the liver as a huge "LV cavity" with myocardium along one
    edge: more walled cavity voxels than the heart (choosing by their count alone put the heart box on the
    liver). The heart, an LV ring with the RV beside the septum, wins; so does it over a small fully walled
    speck; without any RV the walled count decides as before."""
    from scipy import ndimage

    from gemini_cmr.core.postprocess import VENTRICLE_WALL_PX

    lab = np.zeros((4, 120, 120), np.uint8)
    lab[:, 10:30, 10:30] = 2  # the LV: a ring of myocardium
    lab[:, 13:27, 13:27] = 1  # LV cavity, 14 x 14 (walled: its outer 2-pixel band)
    lab[:, 10:30, 30:36] = 3  # the RV beside the septum
    lab[:, 40:120, 40:120] = 1  # the false "cavity": 80 x 80
    lab[:, 40:120, 38:40] = 2  # myocardium along one edge of it, touching: one component
    lab[:, 0:3, 100:103] = 2  # a speck: 1 cavity pixel walled all round
    lab[:, 1, 101] = 1
    r = VENTRICLE_WALL_PX
    walled = (lab == 1) & ndimage.maximum_filter(lab == 2, size=(1, 2 * r + 1, 2 * r + 1))
    assert walled[:, 40:120, 38:120].sum() > walled[:, 10:30, 10:30].sum()  # by the count, the false one
    out = keep_largest_heart_component(lab, "ventricle")
    np.testing.assert_array_equal(out[:, 10:30, 10:36], lab[:, 10:30, 10:36])
    assert out[:, 40:120, 38:120].sum() == 0 and out[:, 0:3, 100:103].sum() == 0
    no_rv = np.where(lab == 3, 0, lab).astype(np.uint8)
    assert keep_largest_heart_component(no_rv, "ventricle")[:, 10:30, 10:30].sum() == 0


def test_heart_roi_is_centred_on_the_heart_and_kept_inside_the_grid():
    from gemini_cmr.core.postprocess import heart_roi

    lab = np.zeros((4, 100, 80), np.uint8)
    assert heart_roi(lab, (1.25, 1.25), 50) is None
    lab[1:3, 40:50, 30:40] = 2  # centre (44.5, 34.5)
    y0, y1, x0, x1 = heart_roi(lab, (1.25, 1.25), 50)  # 40 px
    assert (y1 - y0, x1 - x0) == (40, 40)
    assert abs((y0 + y1) / 2 - 44.5) <= 1 and abs((x0 + x1) / 2 - 34.5) <= 1
    lab[:] = 0
    lab[1:3, 0:6, 70:80] = 1  # corner: the box moves inside
    assert heart_roi(lab, (2.0, 1.0), 60) == (0, 30, 20, 80)
    assert heart_roi(lab, (1.0, 1.0), 500) == (0, 100, 0, 80)  # larger than the grid: all of it


def test_predictor_runs_the_network_on_the_heart_region(monkeypatch):
    """Config inference.roi_mm: pass 1 on the whole field of view finds the heart, the network then runs
    on the box around it (as the ACDC model was trained on crops); outside it background labels and the
    placed LR image."""
    import torch

    from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
    from gemini_cmr.core.models.store import LoadedModel
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.study import Study

    img = np.random.default_rng(0).random((3, 4, 60, 60)).astype(np.float32) * 100 + 10
    study = Study(image=img, affine=np.diag([2.0, 2.0, 8.0, 1.0]))
    mcfg = GeminiConfig(depth=32, widths=(4, 8, 8))
    cfg = {"model": mcfg.to_dict(), "inference": {"roi_mm": 60.0}}
    loaded = LoadedModel(generator=GeminiGenerator(mcfg), config=cfg, model_id="t" * 64, weights_path=None)
    p = Predictor(loaded, torch.device("cpu"), precision="float32")
    seen = []

    def fake_run(placed, scale=1.0, out=None, flips=(), labels_only=False, context=None):
        assert context is None  # a model without first_phase_context
        seen.append(placed.shape)
        assert labels_only == (len(seen) == 1)  # the heart-finding pass wants the labels alone
        lab = np.zeros(placed.shape, np.uint8)
        if len(seen) == 1:  # whole field of view: a heart near the top left
            lab[:, 10:20, 30:50, 20:40] = 2
        else:
            lab[:] = 1
        return placed * 2, lab

    monkeypatch.setattr(p, "_run_safe", fake_run)
    pred = p.predict(study)
    d, h, w = pred.sr_grid.shape
    assert seen[0] == (1, d, h, w)  # localisation: one phase, whole field of view
    y0, y1, x0, x1 = pred.roi
    assert (y1 - y0, x1 - x0) == (48, 48)  # 60 mm at the 1.25 mm SR spacing
    assert all(s == (3, d, 48, 48) for s in seen[1:])
    assert abs((y0 + y1) / 2 - 40) <= 1 and abs((x0 + x1) / 2 - 30) <= 1
    assert (pred.sr_labels[:, :, y0:y1, x0:x1] == 1).all()
    assert pred.sr_labels.sum() == pred.sr_labels[:, :, y0:y1, x0:x1].sum()  # background outside


def test_fit_heart_box_holds_the_heart_and_margin_in_whole_multiples_inside_the_outer_box():
    from gemini_cmr.core.postprocess import fit_heart_box

    lab = np.zeros((4, 100, 80), np.uint8)
    outer = (10, 90, 0, 80)
    assert fit_heart_box(lab, (1.0, 1.0), 8, outer, 16) == outer  # no heart: the whole box
    lab[1:3, 40:60, 30:45] = 1  # 20 x 15 px
    y0, y1, x0, x1 = fit_heart_box(lab, (1.0, 1.0), 8, outer, 16)
    assert (y1 - y0) % 16 == 0 and (x1 - x0) % 16 == 0
    assert (y1 - y0, x1 - x0) == (48, 32)  # 20 + 16 -> 48, 15 + 16 -> 32
    assert y0 <= 40 - 8 and y1 >= 60 + 8 and x0 <= 30 - 8 and x1 >= 45 + 8  # the margin on every side
    assert outer[0] <= y0 and y1 <= outer[1] and outer[2] <= x0 and x1 <= outer[3]
    # margin in mm: 2 mm pixels along y need half the pixels
    assert fit_heart_box(lab, (2.0, 1.0), 8, outer, 1)[:2] == (36, 64)
    # near the outer box's edge: moved inside; larger than the outer box: the outer box along that axis
    lab[:] = 0
    lab[1:3, 12:30, 2:70] = 3
    y0, y1, x0, x1 = fit_heart_box(lab, (1.0, 1.0), 8, outer, 16)
    assert y0 == 10 and (y1 - y0) % 16 == 0 and y1 >= 38
    assert (x0, x1) == (0, 80)
    # labels outside the outer box do not count
    lab[:] = 0
    lab[0, 0:5, 0:5] = 2
    assert fit_heart_box(lab, (1.0, 1.0), 8, outer, 16) == outer


def test_predictor_runs_the_network_on_the_heart_and_margin_with_the_whole_box_scale(monkeypatch):
    """Config inference.roi_margin_mm: the network runs on the part of the heart box near the heart; the
    intensity scale is still the whole box's (the training crops'), outside the network box background
    labels and the placed LR image, and the box pair is reused by a later prediction."""
    import torch

    from gemini_cmr.core.geometry import place_on_sr_grid
    from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
    from gemini_cmr.core.models.store import LoadedModel
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.study import Study

    img = np.random.default_rng(0).random((3, 4, 80, 80)).astype(np.float32) * 100 + 10
    study = Study(image=img, affine=np.diag([2.0, 2.0, 8.0, 1.0]))
    mcfg = GeminiConfig(depth=32, widths=(4, 8, 8))
    loaded = LoadedModel(generator=GeminiGenerator(mcfg), config={"model": mcfg.to_dict()}, model_id="t" * 64,
                         weights_path=None)
    p = Predictor(loaded, torch.device("cpu"), precision="float32")
    seen = []

    def fake_run(placed, scale=1.0, out=None, flips=(), labels_only=False, context=None):
        assert context is None  # a model without first_phase_context
        seen.append((placed.shape, scale))
        lab = np.zeros(placed.shape, np.uint8)
        if labels_only:  # whole field of view: a 16 x 24 px heart
            lab[:, 10:20, 40:56, 50:74] = 2
        else:
            lab[:] = 1
        return placed * 2, lab

    monkeypatch.setattr(p, "_run_safe", fake_run)
    p.config["inference"] = {"roi_mm": 100.0}
    whole = p.predict(study, phases=[0])
    whole_scale = seen[1][1]
    p.config["inference"] = {"roi_mm": 100.0, "roi_margin_mm": 10.0}  # 8 px at the 1.25 mm SR spacing
    seen.clear()
    pred = p.predict(study, phases=[0])
    assert pred.roi == whole.roi and (pred.roi[1] - pred.roi[0]) == 80
    y0, y1, x0, x1 = pred.net_roi
    assert (y1 - y0, x1 - x0) == (32, 40)  # 16 + 16 and 24 + 16, multiples of 4 (the model's)
    assert y0 <= 40 - 8 and y1 >= 56 + 8 and x0 <= 50 - 8 and x1 >= 74 + 8
    assert seen[1] == ((1, pred.sr_grid.shape[0], 32, 40), whole_scale)  # the whole box's intensity scale
    assert (pred.sr_labels[:, :, y0:y1, x0:x1] == 1).all()
    assert pred.sr_labels.sum() == pred.sr_labels[:, :, y0:y1, x0:x1].sum()
    placed = place_on_sr_grid(study.image[[0]], study.grid, pred.sr_grid)
    np.testing.assert_array_equal(pred.sr_image[:, :, y0:y1, x0:x1], 2 * placed[:, :, y0:y1, x0:x1])
    placed[:, :, y0:y1, x0:x1] = 0
    pred.sr_image[:, :, y0:y1, x0:x1] = 0
    np.testing.assert_array_equal(pred.sr_image, placed)  # the placed LR image outside the network box
    # the pair is reused: no whole-field pass, the same network box
    seen.clear()
    again = p.predict(study, phases=[1, 2], roi=pred.roi, net_roi=pred.net_roi)
    assert [s[0][2:] for s in seen] == [(32, 40)] and again.net_roi == pred.net_roi
    # a network box outside the heart box is not reused: the whole box
    seen.clear()
    p.predict(study, phases=[1], roi=pred.roi, net_roi=(0, 8, 0, 8))
    assert seen[0][0][2:] == (80, 80)
