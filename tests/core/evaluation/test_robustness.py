"""The robustness evaluation: perturbations keep the world geometry, their labels come back onto the original
grid, the paired differences use the same slices."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gemini_cmr.core.evaluation import robustness as rb
from gemini_cmr.core.study import Study

NZ, NY, NX = 6, 40, 48


def _study() -> Study:
    """An oblique stack with an off-centre ellipse (label 1) inside a ring (label 2): bright 100, ring 50."""
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.5, 1.5, 8.0])
    affine[:3, 3] = [-30.0, 12.0, 40.0]
    yy, xx = np.mgrid[:NY, :NX]
    r = ((yy - 16) / 7.0) ** 2 + ((xx - 28) / 11.0) ** 2
    lab2d = np.where(r <= 1, 1, np.where(r <= 1.8, 2, 0)).astype(np.uint8)
    labels = np.zeros((2, NZ, NY, NX), np.uint8)
    labels[:, 1:5] = lab2d
    image = np.where(labels == 1, 100.0, np.where(labels == 2, 50.0, 0.0)).astype(np.float32)
    return Study(image=image, affine=affine, labels=labels, labelled_phases=[0, 1])


class ThresholdResolver:
    """Labels each acquired pixel from its intensity relative to the phase's maximum (1 above 0.75, 2 above
    0.3): a stand-in that follows whatever grid and orientation it is given."""

    def __init__(self):
        self.grids = []

    def run(self, study, phases, meshes):
        self.grids.append(study.grid)
        labs = []
        for t in phases:
            img = study.image[t]
            m = float(img.max()) or 1.0
            labs.append(np.where(img > 0.75 * m, 1, np.where(img > 0.3 * m, 2, 0)).astype(np.uint8))
        return SimpleNamespace(phases=list(phases), lr_labels=np.stack(labs), model_id="fake")


EXACT = ("none", "transposed", "rows_reversed", "rotated_180", "fov_200mm", "slices_x2", "scale_x100",
         "gamma_0.6", "gamma_1.6", "shifts_4mm")


@pytest.mark.parametrize("key", EXACT)
def test_geometric_and_intensity_perturbations_come_back_exactly(key):
    study = _study()
    rows = rb.evaluate_study(ThresholdResolver(), study, "toy", [key])
    mine = [r for r in rows if r["perturbation"] == key]
    assert len(mine) == 2
    for r in mine:
        assert r["lv_cavity"] == 1.0 and r["lv_myocardium"] == 1.0, r
        assert np.isnan(r["rv_cavity"])  # no RV in the truth: not scored
        assert r["slices"] == (3 if key == "slices_x2" else NZ)


def test_every_perturbation_keeps_the_world_position_of_the_anatomy():
    """The perturbed stacks' bright ellipse lies at the same world position as the original's (centroid
    within a fraction of a pixel; the coarse pixel sizes within one of their pixels)."""
    study = _study()

    def centroid(s: Study) -> np.ndarray:
        img = s.image[0]
        k, j, i = np.nonzero(img > 0.75 * img.max())
        return s.grid.index_to_world(np.stack([i, j, k], 1).astype(float)).mean(0)

    c0 = centroid(study)
    for key, (_, make) in rb.PERTURBATIONS.items():
        pert = make(study)
        assert pert.study.labels is None and pert.study.labelled_phases == [0, 1]
        if pert.shifts_mm is not None:
            continue  # moves the anatomy on purpose (test below)
        if pert.study.image.shape == study.image.shape and np.array_equal(pert.study.affine, study.affine):
            assert key in ("none", "fov_200mm", "scale_x100", "gamma_0.6", "gamma_1.6", "bias_40pc", "noise_5pc",
                           "noise_10pc"), key  # intensity only, or a field of view larger than the toy's
            continue
        tol = 0.2 if not key.startswith("pixel") else 0.6 * float(key[6:9])
        d = centroid(pert.study) - c0
        d -= np.dot(d, study.grid.normal) * study.grid.normal  # in-plane (slices_x2 samples the slab anew)
        assert np.linalg.norm(d) < tol, key


def test_a_tight_field_of_view_is_cropped_around_the_heart_and_comes_back():
    study = _study()
    pert = rb.field_of_view(45.0)(study)  # 30 x 30 pixels of 1.5 mm
    assert pert.study.image.shape == (2, NZ, 30, 30)
    res = ThresholdResolver().run(pert.study, [0], "none")
    back = pert.back(res.lr_labels[0])
    assert back.shape == (NZ, NY, NX)
    ys, xs = np.nonzero(back.any(0))
    assert (ys.min(), xs.min()) > (0, 0) and back[study.labels[0] == 1].min() == 1  # the ellipse all there
    corner = pert.study.grid.index_to_world(np.zeros(3))
    i0 = study.grid.world_to_index(corner)
    assert np.allclose(i0, np.round(i0)) and i0[2] == 0
    assert np.array_equal(pert.study.image[0, :, 0, 0], study.image[0, :, int(round(i0[1])), int(round(i0[0]))])


def test_transposed_and_reversed_stacks_are_stored_differently():
    """The orientation perturbations really change the array the network sees (same world)."""
    study = _study()
    for key in ("transposed", "rows_reversed", "rotated_180"):
        img = rb.PERTURBATIONS[key][1](study).study.image
        assert img.shape != study.image.shape or not np.array_equal(img, study.image), key


def test_coarser_pixels_are_scored_on_the_original_grid():
    study = _study()
    resolver = ThresholdResolver()
    rows = rb.evaluate_study(resolver, study, "toy", ["pixel_2.4mm", "pixel_1.0mm"])
    assert resolver.grids[1].shape[1:] != study.grid.shape[1:]
    assert np.allclose(resolver.grids[1].spacing[:2], 2.4) and np.allclose(resolver.grids[2].spacing[:2], 1.0)
    for r in rows:
        assert r["lv_cavity"] > 0.85, r


def test_noise_and_bias_change_the_input_but_keep_the_labels_roughly():
    study = _study()
    rows = rb.evaluate_study(ThresholdResolver(), study, "toy", ["noise_5pc", "bias_40pc"])
    for r in rows:
        assert r["lv_cavity"] > 0.9, r
    noisy = rb.PERTURBATIONS["noise_5pc"][1](study).study.image
    assert not np.array_equal(noisy, study.image) and (noisy >= 0).all()


def test_paired_differences_use_the_same_slices():
    """A perturbation that keeps fewer slices is paired with the reference on those slices only."""
    study = _study()

    class WrongOnOddSlices(ThresholdResolver):
        def run(self, study, phases, meshes):
            res = super().run(study, phases, meshes)
            if study.n_slices == NZ:  # the full stack: slices 1 and 3 wrong
                res.lr_labels[:, [1, 3]] = 0
            return res

    rows = rb.evaluate_study(WrongOnOddSlices(), study, "toy", ["slices_x2"])
    s = rb.summarise(rows)
    assert s["none"]["lv_cavity"]["mean"] < 0.8  # odd slices wrong in the full stack
    x2 = s["slices_x2"]["lv_cavity"]
    assert x2["mean"] == 1.0 and x2["diff"] == pytest.approx(0.0)  # the even slices: right in both
    assert "| slices_x2 | 1.000 (+0.000, +0.000)" in rb.format_summary(s)


def test_contoured_slices_only_where_the_study_has_partial_contours():
    study = _study()
    study.meta.extra["contour_slices"] = [[0, 2], [0, 3], [1, 4]]
    assert list(rb.scored_slices(study, 0)) == [2, 3] and list(rb.scored_slices(study, 1)) == [4]
    rows = rb.evaluate_study(ThresholdResolver(), study, "toy", ["slices_x2"])
    assert [r["slices"] for r in rows if r["perturbation"] == "slices_x2"] == [1, 1]


def test_a_study_without_labels_is_refused():
    study = _study()
    study.labels, study.labelled_phases = None, []
    with pytest.raises(ValueError, match="no labels"):
        rb.evaluate_study(ThresholdResolver(), study, "toy", ["none"])


def test_cli_names_an_unknown_perturbation(capsys, tmp_path):
    from tests.reliability.conftest import assert_one_line_error, run_cli

    rc, _, err, _ = run_cli(["evaluate", "robustness", "--data", tmp_path, "--perturbation", "tilt"], capsys)
    assert_one_line_error(rc, err, ("unknown perturbation tilt",))


def test_slice_shifts_move_each_slice_by_its_offset_and_come_back():
    study = _study()
    pert = rb.slice_shifts(4.0)(study)
    assert pert.shifts_mm.shape == (NZ, 2) and np.abs(pert.shifts_mm).max() <= 4.5  # 1.5 mm pixels: up to 3
    assert np.abs(pert.shifts_mm).max() > 0 and np.allclose(pert.shifts_mm / 1.5, np.round(pert.shifts_mm / 1.5))
    for k in range(1, 5):  # the ellipse's centroid moved by that slice's offset (columns = i, rows = j)
        def centre(img):
            ys, xs = np.nonzero(img > 75)
            return np.array([xs.mean(), ys.mean()])
        moved = centre(pert.study.image[0, k]) - centre(study.image[0, k])
        assert np.allclose(moved * 1.5, pert.shifts_mm[k]), k
    assert np.array_equal(pert.back(pert.study.image[0].astype(np.uint8)), study.image[0].astype(np.uint8))


class _MovingResolver(ThresholdResolver):
    """ThresholdResolver whose run reports a motion estimate: the centroid offset of each slice's bright
    region from slice 1's, plus the study's own misalignment `base` (as a real estimate would hold)."""

    base = np.array([[0.5, -0.3]] * NZ)

    def run(self, study, phases, meshes):
        res = super().run(study, phases, meshes)
        img = study.image[0]
        shifts = np.zeros((NZ, 2))
        for k in range(NZ):
            ys, xs = np.nonzero(img[k] > 75)
            if xs.size:
                shifts[k] = [xs.mean() * 1.5, ys.mean() * 1.5]
        shifts -= shifts[1]
        estimated = (img > 75).any(axis=(1, 2))
        res.motion = SimpleNamespace(shifts_mm=np.where(estimated[:, None], shifts + self.base, 0.0),
                                     estimated=estimated)
        return res


def test_the_added_offsets_are_recovered_from_the_motion_estimate():
    rows = rb.evaluate_study(_MovingResolver(), _study(), "toy", ["shifts_4mm"])
    mine = [r for r in rows if r["perturbation"] == "shifts_4mm"]
    assert mine and all(r["shift_error_mm"] == pytest.approx(0.0, abs=1e-9) for r in mine)
    assert all("shift_error_mm" not in r for r in rows if r["perturbation"] == "none")
    assert rb.summarise(rows)["shifts_4mm"]["shift_error_mm_median"] == pytest.approx(0.0, abs=1e-9)


class _TrendBlindResolver(_MovingResolver):
    """An estimate without the offsets' linear trend through the stack, as a short-axis stack alone gives."""

    def run(self, study, phases, meshes):
        res = super().run(study, phases, meshes)
        s, ok = res.motion.shifts_mm, res.motion.estimated
        z = np.arange(NZ, dtype=float)
        V = np.stack([z[ok], np.ones(int(ok.sum()))], axis=1)
        s = s.copy()
        s[ok] -= V @ np.linalg.lstsq(V, s[ok], rcond=None)[0]
        res.motion = SimpleNamespace(shifts_mm=s, estimated=ok)
        return res


def test_the_offsets_trend_is_reported_apart_from_what_the_stack_shows():
    rows = [r for r in rb.evaluate_study(_TrendBlindResolver(), _study(), "toy", ["shifts_4mm"])
            if r["perturbation"] == "shifts_4mm"]
    assert rows and all(r["shift_error_observable_mm"] == pytest.approx(0.0, abs=1e-9) for r in rows)
    assert all(r["shift_error_mm"] > 0.1 for r in rows)  # the added offsets' trend, which it cannot see
    assert all(r["shift_error_uncorrected_mm"] > r["shift_error_mm"] for r in rows)
    assert all(r["shift_error_observable_uncorrected_mm"] > 0.1 for r in rows)
    summary = rb.summarise(rows)
    assert summary["shifts_4mm"]["shift_error_observable_mm_median"] == pytest.approx(0.0, abs=1e-9)
    table = rb.format_summary(summary)
    assert "shift error" in table and "(0.00; " in table.splitlines()[-1]
