"""Slice misalignment correction (`core.motion`), its plumbing (engine, CLI, run.json) and the dropped-slice
scoring (`core.evaluation.motion`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gemini_cmr.core import motion
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.evaluation.motion import (
    DiceAccumulator,
    dropped_slices_study,
    keep_every_other,
    shape_interpolate,
    shift_errors,
)
from gemini_cmr.core.study import Grid, Study

from .engine.fakes import FakePredictor, make_study


# --- the robust fit, without a network -----------------------------------------------------------------
def _centre_lines(nz: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = np.arange(nz) * 10.0
    shifts = rng.normal(0.0, 1.5, (nz, 2))
    heart = np.zeros(nz, bool)
    heart[2:10] = True
    positions, areas = [], []
    for f in range(6):  # 3 phases x 2 structures, each its own straight centre line
        line = np.array([60.0 + f, 50.0 - f])[None] + np.outer(z, [0.12 + 0.01 * f, -0.08])
        positions.append(line + shifts + rng.normal(0.0, 0.05, (nz, 2)))
        areas.append(np.where(heart, 900.0 - 60.0 * np.abs(np.arange(nz) - 4), 0.0))
    positions = np.asarray(positions)
    positions[:, 2] += [6.0, -4.0]  # the basal slice, cut by the valve plane: its centroids are off
    return np.asarray(positions), np.asarray(areas), z, shifts, heart


def test_fit_recovers_shifts_up_to_mean_and_trend():
    positions, areas, z, shifts, heart = _centre_lines()
    est, estimated = motion.fit_shifts(positions, areas, z)
    assert estimated[3:9].all() and not estimated[heart == 0].any()
    assert not estimated[2]  # the biased basal slice is rejected, not fitted
    k = np.flatnonzero(estimated)
    V = np.stack([z[k], np.ones(len(k))], axis=1)
    truth = shifts[k] - V @ np.linalg.lstsq(V, shifts[k], rcond=None)[0]
    found = est[k] - V @ np.linalg.lstsq(V, est[k], rcond=None)[0]  # the mean and trend are a convention
    assert np.abs(found - truth).max() < 0.2
    assert np.abs(est[k] - truth).max() < 0.5
    assert np.allclose(est[~estimated], 0.0)


def _basal_fading(scale: float, seed: int = 0):
    """The centre-line data with an unbiased basal slice whose sections shrink by `scale`."""
    positions, areas, z, shifts, heart = _centre_lines(seed=seed)
    positions[:, 2] -= [6.0, -4.0]
    areas = areas.copy()
    areas[:, 2] *= scale
    return positions, areas, z


def test_a_slice_near_the_area_thresholds_moves_the_other_shifts_continuously():
    """A slice whose LV section crosses the clarity thresholds (here the basal one, whose area share passes
    from 0.52 to 0.09 of the largest) changes the other slices' estimates by small steps, never by switching
    the end-slice role to its neighbour and moving every slice at once; only its own shift switches off."""
    steps = np.linspace(0.6, 0.1, 51)  # 1% of the slice's area per step
    for seed in (0, 3, 5):  # the in/out rule moved the other slices by 1.1, 2.2 and 1.2 mm in one step
        fits = [motion.fit_shifts(*_basal_fading(c, seed)) for c in steps]
        assert not fits[-1][1][2] and any((e0 != e1).any() for (_, e0), (_, e1) in zip(fits, fits[1:]))
        for (s0, e0), (s1, e1) in zip(fits, fits[1:]):
            both = e0 & e1
            assert np.abs(s1 - s0)[both].max() < 0.2, seed  # mm, for a 1% change of one slice's area


def test_a_small_change_of_the_areas_moves_the_shifts_a_little():
    """Labels from another precision: every section 2% larger or smaller at random, the basal one 3% smaller.
    The slices estimated both times keep their shifts (the basal one may lose its own, only its own)."""
    rng = np.random.default_rng(3)
    for share in (0.25, 0.3, 0.35):  # the basal slice's area share of the largest section
        positions, areas, z = _basal_fading(share * 900 / 780)
        other = areas * rng.uniform(0.98, 1.02, areas.shape)
        other[:, 2] = areas[:, 2] * 0.97
        (sa, ea), (sb, eb) = motion.fit_shifts(positions, areas, z), motion.fit_shifts(positions, other, z)
        assert (ea & eb).sum() >= 5 and np.abs(sa - sb)[ea & eb].max() < 0.2, share


def test_apply_shifts_and_labels_back():
    grid = Grid((3, 32, 32), np.diag([2.0, 2.0, 8.0, 1.0]))
    img = np.zeros((1, 3, 32, 32), np.float32)
    img[:, :, 10:20, 12:22] = 1.0
    shifts = np.array([[0.0, 0.0], [4.0, -2.0], [0.0, 0.0]])  # slice 1 shows the anatomy 2 px right, 1 px up
    acquired = motion.apply_shifts(img, grid, -shifts, order=1)  # simulate the acquisition
    assert acquired[0, 1, 9:19, 14:24].min() > 0.99
    corrected = motion.apply_shifts(acquired, grid, shifts, order=1)
    assert np.abs(corrected[0, 1, 11:19, 13:21] - 1.0).max() < 1e-5
    labels = (img > 0.5).astype(np.uint8)
    back = motion.shift_labels_to_acquired(labels, grid, shifts)
    assert np.array_equal(back[0, 1], (acquired[0, 1] > 0.5).astype(np.uint8))


# --- the engine's plumbing ------------------------------------------------------------------------------
def test_short_stacks_are_not_corrected():
    s = make_study(n_phases=2)
    one = Study(image=s.image[:, 4:5], affine=s.affine, phase_times_ms=s.phase_times_ms, meta=s.meta)
    m = motion.estimate_motion(FakePredictor(), one)  # the engine refuses it earlier (Study.validate)
    assert not m.applied and "single-slice stack" in m.note and m.shifts_mm.shape == (1, 2)
    three = Study(image=s.image[:, 3:6], affine=s.affine, phase_times_ms=s.phase_times_ms, meta=s.meta)
    fake = FakePredictor()
    r = SuperResolver(model=fake).run(three, phases="all", meshes="none")
    assert r.motion is not None and not r.motion.applied and len(fake.calls) == 1
    assert "3-slice stack: no motion correction" in r.motion.note and r.motion.note in r.warnings
    assert r.motion.shifts_mm.shape == (3, 2) and not r.motion.shifts_mm.any()


def test_engine_flag_and_aligned_stack():
    s = make_study(n_phases=3)  # the fake predictor's anatomy: an aligned stack
    fake = FakePredictor()
    r = SuperResolver(model=fake).run(s, phases="all", meshes="none")
    assert r.motion is not None and r.motion.applied and "motion" in r.timings
    assert len(fake.calls) == 2 and len(fake.calls[0]) == motion.ESTIMATION_PHASES
    assert np.abs(r.motion.shifts_mm).max() < 0.5
    fake = FakePredictor()
    off = SuperResolver(model=fake).run(s, phases="all", meshes="none", motion_correction=False)
    assert off.motion is None and len(fake.calls) == 1


def test_cli_flag_and_run_json(tmp_path, monkeypatch, capsys):
    from gemini_cmr.cli.main import main
    from gemini_cmr.core.io.nifti import save_nifti

    s = make_study(n_phases=2)
    path = tmp_path / "cine.nii.gz"
    save_nifti(path, s.image, s.affine, phase_interval_ms=40.0)
    calls = []

    class Fixed(FakePredictor):
        loaded = type("Loaded", (), {"weights_path": tmp_path / "fake.safetensors"})()

        def predict(self, study, phases=None, progress=None, cancel=None):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            calls.append(phases)
            return super().predict(study, phases, progress, cancel)

    monkeypatch.setattr("gemini_cmr.core.predict.Predictor.load", classmethod(lambda cls, *a, **k: Fixed()))
    for flag, enabled in (([], True), (["--no-motion-correction"], False)):
        out = tmp_path / f"out{int(enabled)}"
        rc = main(["super-resolve", str(path), "--out", str(out), "--mesh-format", "stl", "--device", "cpu",
                   "--model", str(tmp_path), *flag])
        assert rc == 0, capsys.readouterr().err
        run = json.loads((out / "run.json").read_text())
        mc = run["motion_correction"]
        assert mc["enabled"] is enabled and run["arguments"]["motion_correction"] is enabled
        ph = json.loads((out / "phenotypes.json").read_text())
        assert ph["provenance"]["motion_correction"] == mc
        if enabled:
            assert mc["applied"] and len(mc["shifts_mm"]) == s.n_slices and len(mc["estimated"]) == s.n_slices
            assert "method" in mc and "motion" in run["timings_s"]
        else:
            assert mc == {"enabled": False, "applied": False}


# --- the bundled phantom model on phantoms with known shifts --------------------------------------------
@pytest.fixture(scope="module")
def phantom_predictor():
    from gemini_cmr.core.predict import Predictor

    return Predictor.load(None, device="cpu")


def test_shifts_recovered_on_phantom(phantom_predictor):
    from gemini_cmr.core.synth import make_subject

    pair = make_subject(106, n_phases=8)
    study = pair.lr
    study.labels = None
    m = motion.estimate_motion(phantom_predictor, study)
    assert m.applied and m.estimated.sum() >= 5
    err = shift_errors(m.shifts_mm, pair.shifts.inplane_mm, m.estimated)
    none = shift_errors(np.zeros_like(m.shifts_mm), pair.shifts.inplane_mm, m.estimated)
    assert np.median(err) <= 1.0 and np.median(err) < 0.7 * np.median(none)


def test_zero_shifts_on_aligned_phantom(phantom_predictor):
    from gemini_cmr.core.synth import make_subject

    pair = make_subject(106, n_phases=8, misalign=False)
    study = pair.lr
    study.labels = None
    m = motion.estimate_motion(phantom_predictor, study)
    assert m.applied and np.median(m.magnitude_mm[m.estimated]) < 0.5 and m.magnitude_mm.max() < 1.0


# --- dropped slices -------------------------------------------------------------------------------------
def _disc(r: float, n: int = 40, c=(20.0, 20.0)) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    return ((y - c[0]) ** 2 + (x - c[1]) ** 2 <= r * r).astype(np.uint8)


def test_shape_interpolation_and_pooled_dice():
    mid = shape_interpolate(_disc(6), _disc(10))
    assert abs(int((mid == 1).sum()) - int(_disc(8).sum())) <= 0.1 * _disc(8).sum()
    assert shape_interpolate(_disc(5), np.zeros((40, 40), np.uint8)).sum() < _disc(5).sum()
    acc = DiceAccumulator()
    acc.add(_disc(8), _disc(8))
    acc.add(np.zeros((40, 40), np.uint8), _disc(8))
    d = acc.dice()
    assert d["lv_cavity"] == pytest.approx(2 * _disc(8).sum() / (3 * _disc(8).sum()))


def test_dropped_slices_scoring_on_tiny_study():
    s = make_study(n_phases=4, ed_es=(0, 2))
    kept_study, kept, removed = keep_every_other(s)
    assert kept_study.n_slices == 5 and list(removed) == [1, 3, 5, 7]
    assert np.allclose(kept_study.grid.spacing[2], 2 * s.grid.spacing[2])

    class Oracle(FakePredictor):
        def predict(self, study, phases=None, progress=None, cancel=None):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    acc = dropped_slices_study(SuperResolver(model=Oracle()), s, motion_correction=False, acquired=True)
    d = {k: a.dice() for k, a in acc.items()}
    assert d["sr"]["mean"] > 0.9  # the analytic anatomy at the removed slices
    assert d["acquired"]["mean"] > 0.9 and "acquired" not in dropped_slices_study(
        SuperResolver(model=Oracle()), s, motion_correction=False)
    assert d["sr"]["mean"] >= d["nearest"]["mean"] - 0.02
    assert all(0.0 < d[m]["mean"] <= 1.0 for m in d)
    # the manual references use the kept slices' manual labels, whatever the model says
    ref = DiceAccumulator()
    for t in (0, 2):
        for k in removed:
            ref.add(shape_interpolate(s.labels[t, k - 1], s.labels[t, k + 1]), s.labels[t, k])
    assert d["manual_shape_interpolation"] == pytest.approx(ref.dice())

    class Blank(Oracle):
        def predict(self, study, phases=None, progress=None, cancel=None):
            pred = super().predict(study, phases, progress, cancel)
            pred.sr_labels[:] = 0
            return pred

    blank = {k: a.dice() for k, a in dropped_slices_study(SuperResolver(model=Blank()), s, motion_correction=False).items()}
    assert blank["sr"]["lv_cavity"] == 0.0 and blank["nearest"]["lv_cavity"] == 0.0
    assert blank["manual_shape_interpolation"] == pytest.approx(d["manual_shape_interpolation"])
    assert blank["manual_nearest"] == pytest.approx(d["manual_nearest"])


def test_dropped_slices_folds_pool_every_fold_and_keep_each():
    from gemini_cmr.cli.evaluate import fold_model
    from gemini_cmr.core.errors import GeminiError
    from gemini_cmr.core.evaluation.motion import dropped_slices, dropped_slices_folds, format_dropped_summary

    s = make_study(n_phases=4, ed_es=(0, 2))
    s.labels[2, 3] = 0  # one removed slice's truth differs between the two folds' studies

    class Oracle(FakePredictor):
        def predict(self, study, phases=None, progress=None, cancel=None):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    t = make_study(n_phases=4, ed_es=(0, 2))
    a, b = SuperResolver(model=Oracle()), SuperResolver(model=Oracle())
    res = dropped_slices_folds([(0, a, [("p0", lambda: s)]), (3, b, [("p3", lambda: t)])], modes=(False,))
    assert res["n"] == 2 and [r["fold"] for r in res["rows"]] == [0, 3]
    assert set(res["folds"]) == {"0", "3"} and res["folds"]["3"]["n"] == 1
    one = [dropped_slices(r, [(n, f)], modes=(False,))["summary"]["off"]["sr"]["lv_cavity"]
           for r, n, f in ((a, "p0", lambda: s), (b, "p3", lambda: t))]
    assert res["folds"]["0"]["summary"]["off"]["sr"]["lv_cavity"] == pytest.approx(one[0])
    assert res["folds"]["3"]["summary"]["off"]["sr"]["lv_cavity"] == pytest.approx(one[1])
    pooled = res["summary"]["off"]["sr"]["lv_cavity"]
    assert min(one) <= pooled <= max(one) and one[0] != one[1]  # pooled over both folds' slices
    # each fold keeps the voxel counts behind its Dice: folds of separate runs pool exactly
    from gemini_cmr.core.evaluation.motion import DiceAccumulator

    acc = DiceAccumulator()
    for f in ("0", "3"):
        acc.merge(DiceAccumulator.from_json(res["folds"][f]["counts"]["off"]["sr"]))
    assert acc.dice()["lv_cavity"] == pytest.approx(pooled)
    single = dropped_slices(a, [("p0", lambda: s)], modes=(False,))
    assert "folds" not in single and "fold" not in single["rows"][0]
    assert "with these slices acquired" not in format_dropped_summary(single["summary"])
    assert "reference: the kept slices' manual labels, shape-based interpolation" in format_dropped_summary(single["summary"])
    withref = dropped_slices(a, [("p3", lambda: t)], modes=(False,), acquired=True)
    assert withref["summary"]["off"]["acquired"]["mean"] > 0.9
    assert "reference: the product's labels with these slices acquired" in format_dropped_summary(withref["summary"])
    assert str(fold_model(Path("runs/cv/{fold}/model"), 2)) == "runs/cv/fold2/model"
    assert fold_model(Path("m"), 2) == Path("m") and fold_model(None, 1) is None
    with pytest.raises(GeminiError, match="give --fold"):
        fold_model(Path("runs/cv/{fold}/model"), None)


def test_apply_shifts_in_plane_per_phase_is_the_3d_resampling_without_a_shift_along_time():
    """Each phase shifted in-plane on its own gives the values of one 3D cubic resampling of the slice's
    (T, Y, X) cine with no shift along T (its spline along T only reproduces the samples): equal but for
    float64 rounding, which can reach float32 only where a value is next to zero."""
    from scipy import ndimage

    from gemini_cmr.core.geometry import shifts_in_pixels

    rng = np.random.default_rng(7)
    img = rng.normal(400, 150, (6, 5, 40, 48)).astype(np.float32)
    img[:, :, :, :6] = 0.0  # background, as beyond the body
    grid = Grid((5, 40, 48), np.diag([1.4, 1.3, 8.0, 1.0]))
    shifts = np.array([[0.0, 0.0], [1.3, -0.7], [-2.6, 0.4], [0.2, 3.1], [0.0, 0.0]])
    new = motion.apply_shifts(img, grid, shifts)
    old = np.array(img, copy=True)
    for k, (di, dj) in enumerate(shifts_in_pixels(shifts, grid)):
        if abs(di) > 1e-6 or abs(dj) > 1e-6:
            old[:, k] = ndimage.shift(old[:, k], (0.0, -dj, -di), order=3, mode="nearest")
    assert (new != old).mean() < 1e-4
    np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-9 * float(np.abs(old).max()))
    np.testing.assert_array_equal(new[:, [0, 4]], img[:, [0, 4]])


def test_apply_shifts_on_threads_is_the_same_as_on_one(monkeypatch):
    """The images resampled on parallel threads are exactly the ones resampled one after the other."""
    rng = np.random.default_rng(8)
    img = rng.normal(400, 150, (5, 6, 32, 36)).astype(np.float32)
    grid = Grid((6, 32, 36), np.diag([1.4, 1.3, 8.0, 1.0]))
    shifts = rng.normal(0, 2, (6, 2))
    shifts[2] = 0.0
    monkeypatch.setattr(motion, "thread_workers", lambda: 1)
    one = motion.apply_shifts(img, grid, shifts)
    monkeypatch.setattr(motion, "thread_workers", lambda: 3)
    threaded = motion.apply_shifts(img, grid, shifts)
    np.testing.assert_array_equal(threaded, one)
    np.testing.assert_array_equal(threaded[:, 2], img[:, 2])
    assert not np.array_equal(threaded, img)


def test_shift_errors_without_the_trend_leave_only_what_the_stack_shows():
    z = np.arange(8) * 10.0
    truth = np.stack([0.05 * z, -0.02 * z + 1.0], axis=1)
    estimate = np.zeros((8, 2))
    estimate[3] = [0.7, 0.0]
    ok = np.ones(8, bool)
    plain = shift_errors(estimate, truth, ok)
    observable = shift_errors(estimate, truth, ok, z)
    assert plain.max() > 1.5  # the trend (a shear of the stack) counts as error ...
    assert observable[3] > 0.5 and np.delete(observable, 3).max() < 0.2  # ... not here: the missed slice stands out
    assert np.allclose(shift_errors(truth, truth, ok, z), 0.0)


def test_phantom_summary_reports_the_error_without_the_trend():
    from gemini_cmr.core.evaluation.motion import format_motion_summary, summarise_motion

    ph = {"dice_3d": {k: 0.9 for k in ("lv_cavity", "lv_myocardium", "rv_cavity")},
          "msd_mm": {k: 1.0 for k in ("lv_cavity", "lv_myocardium", "rv_cavity")}, "psnr_heart": 19.0}
    row = {"id": "sub-001", "bspline": {"ED": 17.0, "ES": 17.0},
           "modes": {"on": {"seconds": 1.0, "phases": {"ED": ph, "ES": ph}, "shift_errors_mm": [1.0, 2.0, 3.0],
                            "shift_errors_estimated_mm": [1.0, 2.0], "shift_errors_observable_mm": [0.25, 0.5]},
                     "off": {"seconds": 1.0, "phases": {"ED": ph, "ES": ph}, "shift_errors_mm": [2.0, 3.0, 4.0]}}}
    s = summarise_motion([row])
    assert s["on"]["shift_error_observable_median_mm"] == 0.375 and s["on"]["shift_error_estimated_median_mm"] == 1.5
    assert "shift_error_observable_median_mm" not in s["off"]
    lines = format_motion_summary(s).splitlines()
    assert "without the trend" in lines[0]
    assert "1.50 (n=2); 0.38 |" in next(ln for ln in lines if ln.startswith("| with correction"))
    assert "; nan |" in next(ln for ln in lines if ln.startswith("| without correction"))


# --- the shifts undone in the placement on the SR grid --------------------------------------------------
def test_placement_with_shifts_samples_each_slice_at_p_plus_its_shift():
    from gemini_cmr.core.geometry import place_on_sr_grid, sr_grid

    grid = Grid((4, 40, 40), np.diag([2.0, 2.0, 8.0, 1.0]))
    sr = sr_grid(grid)
    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, 4, 40, 40)).astype(np.float32)
    shifts = np.array([[0.0, 0.0], [4.0, -2.0], [-6.0, 2.0], [0.0, 0.0]])  # whole pixels: 2/-1, -3/1
    rolled = img.copy()
    for k, (dx, dy) in enumerate(shifts / 2.0):  # the corrected slice at p is the acquired one at p + shift
        rolled[:, k] = np.roll(img[:, k], (-int(dy), -int(dx)), axis=(-2, -1))
    a = place_on_sr_grid(img, grid, sr, shifts_mm=shifts)
    b = place_on_sr_grid(rolled, grid, sr)
    m = 8  # away from the edges, which the roll wraps and the placement holds at the edge values
    assert np.allclose(a[..., m:-m, m:-m], b[..., m:-m, m:-m], atol=1e-5)
    assert np.array_equal(place_on_sr_grid(img, grid, sr, shifts_mm=np.zeros((4, 2))), place_on_sr_grid(img, grid, sr))
    with pytest.raises(ValueError, match="shifts of shape"):
        place_on_sr_grid(img, grid, sr, shifts_mm=np.zeros((3, 2)))


def test_placement_with_shifts_on_the_device_path_matches_the_host():
    import torch

    from gemini_cmr.core.geometry import place_on_sr_grid, place_on_sr_grid_torch, sr_grid

    grid = Grid((3, 30, 34), np.diag([1.5, 1.5, 8.0, 1.0]))
    sr = sr_grid(grid)
    img = np.random.default_rng(4).normal(size=(2, 3, 30, 34)).astype(np.float32)
    shifts = np.array([[1.3, -0.4], [0.0, 0.0], [-2.2, 3.1]])
    host = place_on_sr_grid(img, grid, sr, shifts_mm=shifts)
    dev = place_on_sr_grid_torch(torch.from_numpy(img), grid, sr, shifts).numpy()
    assert np.allclose(host, dev, atol=1e-5)


def test_predictor_undoes_the_shifts_in_the_placement_like_a_corrected_copy(phantom_predictor):
    from gemini_cmr.core.synth import make_subject

    pair = make_subject(106, n_phases=2)
    study = pair.lr
    study.labels = None
    shifts = np.asarray(pair.shifts.inplane_mm, float)
    placed = phantom_predictor.predict(study, shifts_mm=shifts)
    copied = phantom_predictor.predict(motion.corrected_study(study, shifts))
    uncorrected = phantom_predictor.predict(study)
    same = (placed.sr_labels == copied.sr_labels).mean()
    assert same > 0.99 and same > (uncorrected.sr_labels == copied.sr_labels).mean()


def test_engine_passes_the_shifts_to_a_predictor_that_names_them(monkeypatch):
    s = make_study(n_phases=3)

    class Shifting(FakePredictor):
        def __init__(self):
            super().__init__()
            self.shifts = []

        def predict(self, study, phases=None, progress=None, cancel=None, shifts_mm=None):
            self.shifts.append(None if shifts_mm is None else np.array(shifts_mm))
            return super().predict(study, phases, progress, cancel)

    copies = []
    monkeypatch.setattr(motion, "corrected_study", lambda st, sh: copies.append(sh) or st)
    fake = Shifting()
    r = SuperResolver(model=fake).run(s, phases="all", meshes="none")
    assert r.motion.applied and len(fake.shifts) == 2 and fake.shifts[0] is None
    assert np.array_equal(fake.shifts[1], r.motion.shifts_mm) and not copies
    old = FakePredictor()  # the `predict` interface without `shifts_mm`: a corrected copy
    r = SuperResolver(model=old).run(s, phases="all", meshes="none")
    assert r.motion.applied and len(copies) == 1 and np.array_equal(copies[0], r.motion.shifts_mm)
