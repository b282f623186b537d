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

    def fake_run(placed, scale=1.0, out=None, flips=(), labels_only=False):
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
