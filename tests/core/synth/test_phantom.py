"""Phantom anatomy, appearance and acquisition: determinism, label consistency, volumes, geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gemini_cmr.core.geometry import resample, sr_grid
from gemini_cmr.core.synth import DOMAINS, make_subject, subject_seed
from gemini_cmr.core.synth.acquisition import render_grid
from gemini_cmr.core.synth.anatomy import (
    ANATOMY_RANGES,
    TISSUE_TO_LABEL,
    Phantom,
    sample_heart_params,
    volume_curve,
)

STRUCTS = {1: "lv_cavity", 2: "lv_myocardium", 3: "rv_cavity"}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


# --- determinism -------------------------------------------------------------------------------------
def test_same_seed_same_arrays_different_seed_different():
    a = make_subject(5, n_phases=3)
    b = make_subject(5, n_phases=3)
    c = make_subject(6, n_phases=3)
    for x, y in ((a.lr, b.lr), (a.hr, b.hr)):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.affine, y.affine)
    assert a.info["params"] == b.info["params"]
    assert not np.array_equal(a.lr.affine, c.lr.affine)
    assert a.lr.image.shape != c.lr.image.shape or not np.array_equal(a.lr.image, c.lr.image)
    assert not np.array_equal(a.hr.labels, c.hr.labels) or a.hr.labels.shape != c.hr.labels.shape


def test_subject_seeds_are_distinct_and_stable():
    seeds = [subject_seed(0, i) for i in range(50)]
    assert len(set(seeds)) == 50
    assert seeds == [subject_seed(0, i) for i in range(50)]
    assert subject_seed(1, 0) != subject_seed(0, 0)


# --- geometry ----------------------------------------------------------------------------------------
def test_hr_is_exactly_on_the_sr_grid_of_the_lr_stack(pair20):
    lr, hr = pair20.lr, pair20.hr
    assert hr.grid == sr_grid(lr.grid)
    np.testing.assert_allclose(hr.grid.spacing, [1.25, 1.25, 2.0], rtol=1e-5)
    np.testing.assert_allclose(lr.grid.spacing, [1.8, 1.8, 10.0], rtol=1e-5)
    # same orientation, same centre: the two stacks overlay in world space
    np.testing.assert_allclose(hr.grid.directions, lr.grid.directions, atol=1e-6)
    np.testing.assert_allclose(hr.grid.centre(), lr.grid.centre(), atol=1.0)
    assert lr.image.shape[0] == hr.image.shape[0] == 20


def test_lr_and_hr_anatomy_overlay_in_world_space(pair_aligned):
    """The LV and RV centroids computed from LR labels and from HR labels (each with its own affine, HR on
    the HR slices through the LR slice centres) agree to a fraction of a voxel."""
    lr, hr = pair_aligned.lr, pair_aligned.hr
    k_hr = np.rint(hr.grid.world_to_index(lr.grid.slice_centres())[:, 2]).astype(int)
    np.testing.assert_allclose(hr.grid.index_to_world(np.c_[np.zeros((len(k_hr), 2)), k_hr])
                               @ lr.grid.normal, lr.grid.slice_centres() @ lr.grid.normal, atol=1e-3)
    for t in (0, pair_aligned.phantom.es_phase):
        for v in (1, 3):
            cents = []
            for st, ks in ((lr, np.arange(lr.n_slices)), (hr, k_hr)):
                idx = np.argwhere(st.labels[t][ks] == v)
                idx[:, 0] = ks[idx[:, 0]]
                cents.append(st.grid.index_to_world(idx[:, ::-1].astype(float)).mean(axis=0))
            assert np.linalg.norm(cents[0] - cents[1]) < 1.0, (t, v, cents)


def test_stack_is_roughly_perpendicular_to_the_long_axis(pair20):
    e_w = pair20.phantom.params.rotation[:, 2]
    angle = np.degrees(np.arccos(abs(np.dot(pair20.lr.grid.normal, e_w))))
    assert angle <= DOMAINS["ukdhp-like"].acquisition.obliquity_deg + 1e-6
    # slice 0 is at the base: k runs towards the apex
    assert np.dot(pair20.lr.grid.directions[:, 2], e_w) < 0
    # the whole LV is inside the stack and the FOV
    lab = pair20.lr.labels[0]
    assert not (lab[0] == 2).all() and (lab > 0).any(axis=(1, 2)).sum() >= 7
    assert not (lab[:, 0, :] > 0).any() and not (lab[:, :, -1] > 0).any()


# --- labels: HR vs LR --------------------------------------------------------------------------------
def test_hr_labels_resampled_onto_lr_slices_agree_with_lr_labels(pair_aligned):
    lr, hr = pair_aligned.lr, pair_aligned.hr
    for t in (0, pair_aligned.phantom.es_phase):
        on_lr = resample(hr.labels[t], hr.grid, lr.grid, order=0)
        for v, name in STRUCTS.items():
            d = dice(on_lr == v, lr.labels[t] == v)
            assert d > 0.9, f"{name} phase {t}: Dice {d:.3f}"


def test_lr_labels_follow_the_breath_hold_shifts(pair20):
    """With shifts, LR labels match HR labels sampled at the shifted slice planes (and not the unshifted
    ones when the shift is large)."""
    lr, hr, shifts = pair20.lr, pair20.hr, pair20.shifts
    assert np.abs(shifts.inplane_mm).max() > 0.5
    nz, ny, nx = lr.grid.shape
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    for t in (0, pair20.phantom.es_phase):
        sampled = np.zeros_like(lr.labels[t])
        for k in range(nz):
            ijk = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(float)
            world = lr.grid.index_to_world(ijk) - shifts.shifts_mm[k]
            idx = hr.grid.world_to_index(world)
            sampled[k] = ndimage.map_coordinates(hr.labels[t], [idx[..., 2], idx[..., 1], idx[..., 0]], order=0)
        for v, name in STRUCTS.items():
            d = dice(sampled == v, lr.labels[t] == v)
            assert d > 0.9, f"{name} phase {t}: Dice {d:.3f}"


# --- volumes and function ----------------------------------------------------------------------------
def test_volume_curve_shape():
    for n in (20, 25, 30):
        g = volume_curve(n, 0.6, round(0.37 * n))
        assert g[0] == pytest.approx(1.0)
        assert int(np.argmin(g)) == round(0.37 * n) and g.min() == pytest.approx(0.4)
        assert np.all(np.abs(np.diff(np.r_[g, g[0]])) < 0.25)  # smooth and periodic


def test_drawn_parameters_and_volumes_are_in_range():
    lo_ef, hi_ef = ANATOMY_RANGES["lv_ef"]
    for seed in range(12):
        ph = Phantom(sample_heart_params(np.random.default_rng(seed)), 20)
        s = ph.summary()
        assert lo_ef - 1e-9 <= s["lv_ef"] <= hi_ef + 1e-9
        assert 60 < s["lv_edv_ml"] < 210 and 40 < s["lv_mass_g"] < 200
        assert 6.0 <= s["wall_ed_mm"] <= 8.0 + 1e-6 and s["wall_ed_mm"] < s["wall_es_mm"] < 13.5
        assert 0.35 <= ph.es_phase / 20 <= 0.40
        assert 0.5 < s["rv_edv_ml"] / s["lv_edv_ml"] < 1.6


def test_label_volumes_ef_and_ed_es_from_hr_labels(pair20):
    hr = pair20.hr
    vox = hr.grid.voxel_volume_ml
    lv = (hr.labels == 1).sum(axis=(1, 2, 3)) * vox
    rv = (hr.labels == 3).sum(axis=(1, 2, 3)) * vox
    es = pair20.phantom.es_phase
    assert int(np.argmax(lv)) == 0 and int(np.argmin(lv)) == es
    lv_ef = 1 - lv[es] / lv[0]
    rv_ef = 1 - rv[es] / rv[0]
    p = pair20.phantom.params
    # label volumes carry the HR grid's quantisation: the base planes are nearly parallel to the 2 mm
    # slices, so the top slice of a cavity is in or out (+-2 mm x base area, up to ~5% of a volume)
    assert lv_ef == pytest.approx(p.lv_ef, abs=0.03)
    assert rv_ef == pytest.approx(p.rv_ef, abs=0.05)
    assert ANATOMY_RANGES["lv_ef"][0] - 0.03 <= lv_ef <= ANATOMY_RANGES["lv_ef"][1] + 0.03
    assert ANATOMY_RANGES["rv_ef"][0] - 0.05 <= rv_ef <= ANATOMY_RANGES["rv_ef"][1] + 0.05
    assert lv[0] == pytest.approx(pair20.info["summary"]["lv_edv_ml"], rel=0.05)
    assert rv[0] == pytest.approx(pair20.info["summary"]["rv_edv_ml"], rel=0.07)
    myo = (hr.labels == 2).sum(axis=(1, 2, 3)) * vox
    assert np.ptp(myo) / myo.mean() < 0.08  # myocardium keeps its volume over the cycle


def test_envelope_rendering_matches_brute_force(pair_aligned):
    """The fast renderer (heart painted only inside its envelope) equals painting every voxel."""
    ph, grid = pair_aligned.phantom, pair_aligned.hr.grid
    fast = render_grid(ph, grid, [0, ph.es_phase]).dense()
    world = grid.voxel_centres()
    for n, t in enumerate((0, ph.es_phase)):
        np.testing.assert_array_equal(fast[n], ph.tissue_at(world, t))


# --- appearance --------------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_picture_blood_bright_myocardium_dark_surroundings_present(domain):
    pair = make_subject(3, domain, 3)
    for st in (pair.lr, pair.hr):
        img, lab = st.image[0], st.labels[0]
        blood = img[lab == 1].mean()
        myo = img[lab == 2].mean()
        bg = img[lab == 0]
        assert blood > 1.8 * myo, (domain, blood, myo)
        assert (bg > 0.2 * blood).mean() > 0.2  # the heart is not alone on black
        assert (bg < 0.15 * blood).mean() > 0.05  # lungs/air are dark
        assert np.isfinite(img).all() and img.min() >= 0
    inplane = DOMAINS[domain].acquisition.inplane_mm
    np.testing.assert_allclose(pair.lr.grid.spacing[:2], [inplane, inplane], rtol=1e-5)


def test_domains_shift_intensities():
    ref = make_subject(3, "ukdhp-like", 2)
    blood = {}
    for name in DOMAINS:
        p = ref if name == "ukdhp-like" else make_subject(3, name, 2)
        blood[name] = float(p.lr.image[0][p.lr.labels[0] == 1].mean())
    assert len({round(v, -1) for v in blood.values()}) == len(DOMAINS)
    assert "ukdhp-like" in DOMAINS and len(DOMAINS) >= 3


# --- synthesis from label maps and LR simulation of real HR data ------------------------------------
def test_synthesize_image_from_a_given_label_map(pair_aligned):
    from gemini_cmr.core.synth.appearance import synthesize_from_labels

    hr = pair_aligned.hr
    labels = hr.labels[:2]
    img = synthesize_from_labels(labels, hr.affine, "ukdhp-like", seed=1)
    again = synthesize_from_labels(labels, hr.affine, "ukdhp-like", seed=1)
    np.testing.assert_array_equal(img, again)
    assert img.shape == labels.shape and img.dtype == np.float32
    for t in range(2):
        blood, myo = img[t][labels[t] == 1].mean(), img[t][labels[t] == 2].mean()
        rv = img[t][labels[t] == 3].mean()
        assert blood > 1.8 * myo and rv > 1.8 * myo
        bg = img[t][labels[t] == 0]
        assert (bg > 0.2 * blood).mean() > 0.2 and (bg < 0.15 * blood).mean() > 0.02
    # a single 3D label map works too
    one = synthesize_from_labels(labels[0], hr.affine, "sg-like", seed=2)
    assert one.shape == labels[0].shape


def test_lr_simulation_of_an_hr_volume_matches_the_phantom_lr(pair_aligned):
    """The acquisition applied to the HR truth (as for real HR data) reproduces the phantom's LR labels
    and, closely, its LR image."""
    from gemini_cmr.core.synth.acquisition import simulate_lr_from_volume

    lr, hr = pair_aligned.lr, pair_aligned.hr
    acq = pair_aligned.domain.acquisition
    img, lab = simulate_lr_from_volume(hr.image[:2], hr.labels[:2], hr.grid, lr.grid, acq)
    assert img.shape == lr.image[:2].shape and lab.shape == lr.labels[:2].shape
    for t in range(2):
        for v in STRUCTS:
            assert dice(lab[t] == v, lr.labels[t] == v) > 0.9
        # compare away from the slab edges (the HR grid ends at the slab edge)
        a, b = img[t, 1:-1].ravel(), lr.image[t, 1:-1].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.95
    # shifts move the content
    from gemini_cmr.core.synth.acquisition import SliceShifts

    shifts = SliceShifts.random(np.random.default_rng(0), lr.grid, acq.__class__(shift_mm=3.0))
    img2, lab2 = simulate_lr_from_volume(hr.image[0], hr.labels[0], hr.grid, lr.grid, acq, shifts)
    assert img2.shape == lr.image[0].shape and not np.array_equal(lab2, lab[0])


def test_painted_rv_and_lv_ef_match_the_drawn_values():
    """Without the quantisation of a grid (Monte Carlo volumes of the painted phantom, 1.5 M random points
    in a box around the heart), the LV and RV ejection fractions are the drawn ones."""
    ph = Phantom(sample_heart_params(np.random.default_rng(21)), 20)
    f = ph.frames[0]
    lo = np.array([-f.d - f.A - 3, -max(f.B, f.bo) - 3, f.w_centre - f.co - 3])
    hi = np.array([f.ao + 3, max(f.B, f.bo) + 3, f.w_rv_base + 3])
    uvw = np.random.default_rng(0).uniform(lo, hi, size=(1_500_000, 3))
    box_ml = float(np.prod(hi - lo)) / 1000
    xyz = ph.heart_to_world(uvw)
    vol = {}
    for t in (0, ph.es_phase):
        lab = TISSUE_TO_LABEL[ph.tissue_at(xyz, t)]
        vol[t] = {v_: np.count_nonzero(lab == v_) / len(lab) * box_ml for v_ in (1, 3)}
    lv_ef = 1 - vol[ph.es_phase][1] / vol[0][1]
    rv_ef = 1 - vol[ph.es_phase][3] / vol[0][3]
    assert lv_ef == pytest.approx(ph.params.lv_ef, abs=0.01)
    assert rv_ef == pytest.approx(ph.params.rv_ef, abs=0.015)
    assert vol[0][1] == pytest.approx(ph.lv_edv_ml, rel=0.02)
    assert vol[0][3] == pytest.approx(ph.rv_edv_ml, rel=0.03)
