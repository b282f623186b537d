"""The long-axis consistency test (`core.evaluation.longaxis`, `gemini-cmr evaluate long-axis`): best global
shift, contour distance, linear interpolation between slices, and the whole test on a UK Biobank-style folder."""

from __future__ import annotations

import json

import numpy as np

from gemini_cmr.core.evaluation import longaxis as ev
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.study import Grid

from ..engine.fakes import FakePredictor, make_study
from ..engine.test_longaxis_engine import four_chamber


def disc(r: float, n: int = 64, c=(32.0, 30.0)) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    return ((y - c[0]) ** 2 + (x - c[1]) ** 2 <= r * r).astype(np.uint8)


def test_best_shift_recovers_a_known_offset_and_scores_it():
    pred = np.stack([disc(10) + (disc(14) - disc(10)) * 2, disc(8)])  # LV + myo ring; a smaller LV
    truth = np.stack([np.roll(p, (-2, 3), axis=(0, 1)) for p in pred])  # acquired 3 mm right, 2 mm up
    inside = np.ones((64, 64), bool)
    shift = ev.best_shift(pred, truth, inside, (1.0, 1.0))
    assert np.allclose(shift, [3.0, -2.0])  # the acquisition's offset (as `cut_volume(shift_mm=)`)
    res = ev.score_method(pred, truth, inside, (1.0, 1.0), ["ED", "ES"])
    assert res["shift_mm"] == [3.0, -2.0]
    assert res["ED"]["dice"]["lv_cavity"] == 1.0 and res["ED"]["mcd_mm"]["lv_myocardium"] == 0.0
    assert np.isnan(res["ED"]["dice"]["rv_cavity"]) and res["ES"]["dice"]["mean"] == 1.0


def test_contour_distance_and_the_slab_edge():
    a, b = disc(10).astype(bool), disc(12).astype(bool)
    inside = np.ones((64, 64), bool)
    assert abs(ev.contour_distance(a, b, inside, (1.0, 1.0)) - 2.0) < 0.35
    assert abs(ev.contour_distance(a, b, inside, (0.5, 0.5)) - 1.0) < 0.2
    half = inside.copy()
    half[:32] = False  # the slab cuts both discs: their shared straight edge is not a contour
    assert abs(ev.contour_distance(a, b, half, (1.0, 1.0)) - 2.0) < 0.4


def test_linear_between_slices_interpolates_the_shape():
    lab = np.stack([disc(10), disc(20)])  # radius 10 px at z = 0, 20 px at z = 10 mm (1 mm pixels)
    stack = Grid((2, 64, 64), np.diag([1.0, 1.0, 10.0, 1.0]))
    aff = np.eye(4)  # the plane x = 30 (through the centre): columns along y, rows along z, 1 mm pixels
    aff[:3, 0], aff[:3, 1], aff[:3, 2] = [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]
    aff[:3, 3] = [30.0, 0.0, -5.0]
    la = Grid((1, 21, 64), aff)
    cut = ev.linear_between_slices(lab, stack, la)
    width = (cut == 1).sum(axis=1)  # row r is z = r - 5
    assert abs(width[5] - 21) <= 1 and abs(width[15] - 41) <= 1  # the slices themselves
    assert abs(width[10] - 31) <= 2  # midway: radius 15
    assert width[0] == width[5] and width[20] == width[15]  # constant beyond the outer slice centres


def test_evaluate_long_axis_on_a_ukbb_folder(tmp_path, monkeypatch, capsys):
    from gemini_cmr.cli.main import main

    s = make_study(n_phases=2, ed_es=(0, 1))
    la = four_chamber(s)
    sub = tmp_path / "data" / "1000002"
    save_nifti(sub / "sa.nii.gz", s.image, s.affine, 40.0)
    save_nifti(sub / "label_sa.nii.gz", s.labels, s.affine, 40.0)
    off = la.labels.copy()
    off = np.roll(off, 2, axis=2)  # the long-axis acquisition displaced 3 mm along its columns
    save_nifti(sub / "la_4ch.nii.gz", la.image[:, None], la.affine, 40.0)
    save_nifti(sub / "label_la_4ch.nii.gz", off[:, None], la.affine, 40.0)

    class Fixed(FakePredictor):
        loaded = type("Loaded", (), {"weights_path": tmp_path / "fake.safetensors"})()

        def predict(self, study, phases=None, progress=None, cancel=None, **kw):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    monkeypatch.setattr("gemini_cmr.core.predict.Predictor.load", classmethod(lambda cls, *a, **k: Fixed()))
    rc = main(["evaluate", "long-axis", "--data", str(tmp_path / "data"), "--model", str(tmp_path), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 1 and res["summary"]["planes"] == 1
    (row,) = res["subjects"]
    methods = row["views"]["4ch"]["methods"]
    assert set(methods) == {"sa_labels_nearest", "lr_nearest", "lr_linear", "sr"}
    for m in methods.values():
        assert np.allclose(m["shift_mm"], [3.0, 0.0], atol=1.0)
    sr = methods["sr"]["ED"]
    assert sr["dice"]["lv_cavity"] > 0.9 and sr["mcd_mm"]["mean"] < 2.0
    # the SR labels follow the smooth anatomy better than the 8 mm slices cut at their nearest slice
    assert sr["mcd_mm"]["mean"] < methods["sa_labels_nearest"]["ED"]["mcd_mm"]["mean"]
    corr = row["views"]["4ch"]["image_correlation"]  # the fake SR image is the LR image placed on the SR grid
    assert set(corr) == {"sr", "lr_linear", "lr_bspline"} and all(0.5 < corr[m]["ED"] <= 1.0 for m in corr)
    assert set(res["summary"]["image_correlation"]) == set(corr)
    assert all(0.5 < corr[m]["near_heart"]["ED"] <= 1.0 for m in corr)
    assert set(res["summary"]["image_correlation"]["sr"]) == {"slab", "near_heart"}
    rc = main(["evaluate", "long-axis", "--data", str(tmp_path / "data"), "--model", str(tmp_path),
               "--long-axis-input", "4ch"])
    out = capsys.readouterr().out
    assert rc == 0 and "0 held-out planes" in out and "long-axis inputs: 4ch" in out


def test_image_correlation_finds_the_offset_and_prefers_the_sharper_cut():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    vol = ndimage.gaussian_filter(rng.normal(size=(2, 3, 64, 64)), (0, 0, 2.0, 2.0)).astype(np.float32)
    grid = Grid((3, 64, 64), np.diag([1.0, 1.0, 1.0, 1.0]))
    aff = np.eye(4)
    aff[2, 3] = 1.0  # the plane z = 1: the middle slice, 1 mm pixels
    la = Grid((1, 64, 64), aff)
    la_images = np.stack([np.roll(v[1], (-2, 3), axis=(0, 1)) for v in vol])  # acquired 3 mm right, 2 mm up
    mask = np.zeros((64, 64), bool)
    mask[12:52, 12:52] = True
    res = ev.score_image(ev.PlaneSampler(vol, grid, la, 1), la_images, mask, ["ED", "ES"])
    assert res["shift_mm"] == [3.0, -2.0] and res["ED"] > 0.999 and res["ES"] > 0.999
    blurred = ndimage.gaussian_filter(vol, (0, 0, 3.0, 3.0))
    for order in (1, 3):
        worse = ev.score_image(ev.PlaneSampler(blurred, grid, la, order), la_images, mask, ["ED", "ES"])
        assert worse["shift_mm"] == [3.0, -2.0] and worse["ED"] < res["ED"] - 0.05
    assert np.isnan(ev.pearson(vol[0, 1], la_images[0], np.zeros((64, 64), bool)))
    assert np.isnan(ev.pearson(np.ones((64, 64)), la_images[0], mask))  # a flat image
    near = np.zeros((64, 64), bool)
    near[20:30, 20:30] = True
    res = ev.score_image(ev.PlaneSampler(vol, grid, la, 1), la_images, mask, ["ED", "ES"], near=near)
    assert res["near_heart"]["ED"] > 0.999
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[1, 30, 30] = 2
    ring = ev.near_heart(labels, (1.0, 2.0), margin_mm=4.0)
    assert ring[30, 32] and not ring[30, 33] and ring[34, 30] and not ring[35, 30]
