"""Cross-validation folds, the stack augmentation of LR-label training, and `gemini-cmr train cv`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.train.data import Augment
from gemini_cmr.core.train.lr_data import (
    LRItems,
    LRSubject,
    StackAugment,
    fold_of,
    load_lr_split,
    parse_fold,
)
from tests.core.train.test_lr_labels import _acdc_patient


@pytest.fixture(scope="module")
def acdc4(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc4") / "training"
    for n in (1, 2, 3, 4):
        _acdc_patient(root, n, seed=n)
    return root


def test_folds_are_stratified_by_acdc_group():
    assert parse_fold("") is None and parse_fold("2/5") == (2, 5)
    for bad in ("5/5", "x", "1/1", "-1/5"):
        with pytest.raises(DataError, match="fold"):
            parse_fold(bad)
    # ACDC's pathology groups are patients 1-20, 21-40, ..., 81-100: each fold gets 4 of every group
    subjects = [LRSubject(f"patient{i:03d}", "train", [], None) for i in range(1, 101)]
    for k in range(5):
        members = [int(s.sid[-3:]) for i, s in enumerate(subjects) if fold_of("acdc", s, i, 5) == k]
        assert [sum(1 for m in members if g * 20 < m <= (g + 1) * 20) for g in range(5)] == [4] * 5
    assert [s.sid for i, s in enumerate(subjects) if fold_of("acdc", s, i, 5) == 0][:2] == ["patient005",
                                                                                              "patient010"]
    other = [LRSubject(f"s{i}", "train", [], None) for i in range(7)]
    assert [fold_of("pairs", s, i, 3) for i, s in enumerate(other)] == [0, 1, 2, 0, 1, 2, 0]


def test_fold_split_holds_one_fold_out(acdc4, tmp_path):
    val = load_lr_split("acdc", acdc4, "val", cache_dir=tmp_path, fold=(1, 2))
    train = load_lr_split("acdc", acdc4, "train", cache_dir=tmp_path, fold=(1, 2))
    assert sorted({s.subject for s in val}) == ["patient001", "patient003"]
    assert sorted({s.subject for s in train}) == ["patient002", "patient004"]
    assert parse_fold("all") == "all"
    every = load_lr_split("acdc", acdc4, "train", cache_dir=tmp_path, fold="all")
    assert sorted({s.subject for s in every}) == ["patient001", "patient002", "patient003", "patient004"]
    assert load_lr_split("acdc", acdc4, "val", cache_dir=tmp_path, fold="all") == []


def test_heart_box_keeps_world_coordinates(acdc4):
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.train.lr_data import heart_box, samples_from_study

    study = load_acdc(acdc4 / "patient002")
    image, labels, affine = heart_box(study, 12.0)  # 12 mm = 8 pixels of 1.5 mm around the labels
    assert image.shape[2:] == (8, 8) and labels.shape == image.shape
    ys, xs = np.nonzero(labels[study.labelled_phases[0]].any(axis=0))
    jj, ii = np.nonzero(study.labels[study.labelled_phases[0]].any(axis=0))
    # the same labelled voxels sit at the same world positions
    y0 = int(round(np.linalg.solve(study.affine, affine @ [0, 0, 0, 1])[1]))
    x0 = int(round(np.linalg.solve(study.affine, affine @ [0, 0, 0, 1])[0]))
    assert set(zip(ys + y0, xs + x0)) <= set(zip(jj, ii))
    boxed = samples_from_study(study, "p", roi_mm=12.0)
    whole = samples_from_study(study, "p")
    assert boxed[0].planes.shape[1] < whole[0].planes.shape[1] and boxed[0].scale != whole[0].scale


def _stack(n=3, h=40, w=40):
    planes = np.zeros((n, h, w), np.float32)
    labels = np.zeros((n, h, w), np.uint8)
    labels[:, 10:20, 24:30] = 1  # a bar right of centre
    planes[labels == 1] = 1.0
    return planes, labels


def test_spatial_augmentation_moves_image_and_labels_together():
    planes, labels = _stack()
    rng = np.random.default_rng(0)
    assert StackAugment(p=0.0).spatial(rng, 3, 40, 40, 19.5, 19.5) is None
    aug = StackAugment(p=1.0, rotate_deg=90, scale=(1.0, 1.0))
    from scipy.ndimage import map_coordinates

    for seed in range(5):
        ys, xs = aug.spatial(np.random.default_rng(seed), 3, 40, 40, 19.5, 19.5)
        img = np.stack([map_coordinates(planes[j], [ys[j], xs[j]], order=1) for j in range(3)])
        lab = np.stack([map_coordinates(labels[j], [ys[j], xs[j]], order=0) for j in range(3)])
        assert set(np.unique(lab)) <= {0, 1}
        inside = lab == 1
        assert inside.sum() > 0.8 * (labels == 1).sum()  # a rotation keeps the area
        assert img[inside].mean() > 0.9 and img[~inside].mean() < 0.1  # and the image follows the labels
    # per-slice shifts move each slice differently; without them the slices share one transform
    ys, xs = StackAugment(p=1.0, rotate_deg=10, slice_shift_px=3.0).spatial(np.random.default_rng(1), 3, 8, 8,
                                                                            4.0, 4.0)
    assert not np.allclose(ys[0], ys[1])
    ys, xs = StackAugment(p=1.0, rotate_deg=10).spatial(np.random.default_rng(1), 3, 8, 8, 4.0, 4.0)
    assert np.allclose(ys[0], ys[2]) and np.allclose(xs[0], xs[2])


def test_intensity_augmentation_keeps_shape_and_range():
    rng = np.random.default_rng(3)
    planes = rng.random((4, 32, 32)).astype(np.float32)
    out = StackAugment(p=1.0).intensity(np.random.default_rng(1), planes)
    assert out.shape == planes.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, planes)
    assert StackAugment(p=0.0).intensity(rng, planes) is planes
    with pytest.raises(DataError, match="unknown augmentation keys"):
        StackAugment.from_dict({"rotation": 10})


def test_items_with_augmentation_are_deterministic_and_aligned(acdc4, tmp_path):
    samples = load_lr_split("acdc", acdc4, "train", cache_dir=tmp_path)
    items = LRItems(samples, depth=24, multiple=8)
    extra = StackAugment(p=1.0, slice_shift_px=1.0)
    aug = Augment(16, 1.0, True, 0.1, 0.01)
    a = items.get(0, np.random.default_rng(7), aug, extra=extra)
    b = items.get(0, np.random.default_rng(7), aug, extra=extra)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x, lab, slab = a
    assert x.shape == (24, 16, 16) and set(np.unique(lab)) <= {0, 1, 2, 3, 255}


def test_cv_trains_exports_and_evaluates_every_fold(acdc4, tmp_path, capsys):
    from gemini_cmr.cli.main import main

    cfg = {"model": {"depth": 24, "widths": [4, 8, 8], "encoder": "acquired-2d", "input_to_heads": True},
           "omega_gan": 0.0, "crop": 16, "batch_size": 2, "epochs": 100, "max_steps": 2, "amp": "off",
           "num_threads": 1, "val_crop": 0, "lr": 3e-3, "lr_schedule": "poly", "class_weights": [1, 1, 1, 1],
           "augment": {"p": 0.5, "slice_shift_px": 1.0}, "cache_dir": str(tmp_path / "cache"), "roi_mm": 30,
           "seg_target": "acquired"}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    argv = ["train", "cv", "--data", f"acdc:{acdc4}", "--config", str(tmp_path / "cfg.json"), "--out",
            str(tmp_path / "cv"), "--folds", "2"]
    assert main(argv) == 0
    res = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert sorted(r["subject"] for r in res["rows"]) == ["patient001", "patient002", "patient003", "patient004"]
    assert {r["fold"] for r in res["rows"]} == {0, 1}
    for k in (0, 1):
        model_cfg = json.loads((tmp_path / "cv" / f"fold{k}" / "model" / "config.json").read_text())
        assert model_cfg["inference"]["roi_mm"] == 30
        assert model_cfg["training"]["config"]["fold"] == f"{k}/2"
        assert model_cfg["training"]["step"] == 2
    summary = res["summary"]
    assert summary["n"] == 4 and 0 <= summary["dice_ed_lv_cavity"]["mean"] <= 1
    assert "err_lv_ef_pct" in summary and "LVEF (%)" in (tmp_path / "cv" / "cv.md").read_text()
    assert all("reported_lv_ef_pct" in r for r in res["rows"]) and "err_reported_lv_ef_pct" in summary
    # a second run reuses every finished fold (no training, no evaluation)
    mtime = (tmp_path / "cv" / "fold0" / "eval.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (tmp_path / "cv" / "fold0" / "eval.json").stat().st_mtime_ns == mtime
    # test-time augmentation: the trained folds evaluated again into their own files, the plain ones kept
    assert main([*argv, "--only", "0", "--tta"]) == 0
    tta = json.loads((tmp_path / "cv" / "cv_tta.json").read_text())
    assert tta["summary"]["tta"] is True and {r["fold"] for r in tta["rows"]} == {0}
    assert json.loads((tmp_path / "cv" / "fold0" / "eval_tta.json").read_text())["tta"] is True
    assert (tmp_path / "cv" / "fold0" / "eval.json").stat().st_mtime_ns == mtime
    assert "test-time augmentation" in (tmp_path / "cv" / "cv_tta.md").read_text()
    assert main([*argv[:-2], "--folds", "2", "--only", "3"]) == 2  # a fold that does not exist
    assert "outside" in capsys.readouterr().err
    # the final model: the same recipe on every patient, exported with the recipe's heart box
    assert main([*argv[:-2], "--final"]) == 0
    final = json.loads((tmp_path / "cv" / "final" / "model" / "config.json").read_text())
    assert final["training"]["config"]["fold"] == "all" and final["inference"]["roi_mm"] == 30
    assert final["training"]["step"] == 2


def test_rician_noise_and_transposition_augmentations():
    """`augment.rician`: magnitude noise (non-negative, the dark background lifted to about sigma sqrt(pi/2));
    `augment.transpose`: rows and columns swapped, labels with them; both off by default and then draw
    nothing from the generator."""
    planes, labels = _stack()
    off = StackAugment.from_dict({"p": 1.0, "gamma": [1.0, 1.0], "contrast": [1.0, 1.0], "blur_px": 0.0,
                                  "lowres": 1.0})
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(off.intensity(a, planes.copy()), planes)
    off.transposed(a, planes, labels)
    b.random(4)  # gamma and contrast: a coin and a value each (identity ranges)
    assert a.random() == b.random()  # nothing else was drawn
    noisy = StackAugment.from_dict({"p": 1.0, "gamma": [1.0, 1.0], "contrast": [1.0, 1.0], "blur_px": 0.0,
                                    "lowres": 1.0, "rician": 0.2})
    out = noisy.intensity(np.random.default_rng(4), np.repeat(planes, 20, axis=0))
    assert out.dtype == np.float32 and (out >= 0).all()
    background = out[np.repeat(labels, 20, axis=0) == 0]
    assert 0.0 < background.mean() < 0.2 * np.sqrt(np.pi / 2) + 0.01
    assert abs(out[np.repeat(labels, 20, axis=0) == 1].mean() - 1.0) < 0.1
    flip = StackAugment.from_dict({"transpose": 1.0})
    p2, l2 = flip.transposed(np.random.default_rng(0), planes, labels)
    np.testing.assert_array_equal(p2, planes.transpose(0, 2, 1))
    np.testing.assert_array_equal(l2, labels.transpose(0, 2, 1))
    wide = np.zeros((2, 8, 12), np.float32)
    assert flip.transposed(np.random.default_rng(0), wide, wide.astype(np.uint8))[0] is wide  # not square
    with pytest.raises(DataError, match="unknown augmentation keys: tilt"):
        StackAugment.from_dict({"tilt": 1})
