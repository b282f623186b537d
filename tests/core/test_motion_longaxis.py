"""Long-axis evidence in the slice misalignment correction (`core.motion`): the profile offsets along the
intersection lines measure each slice's shift along the line (up to the long-axis acquisition's own offset),
and the combination recovers what the short-axis estimate cannot see (the trend through the stack)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemini_cmr.core import motion
from gemini_cmr.core.synth import make_subject


@pytest.fixture(scope="module")
def pair_la():
    return make_subject(33, "ukdhp-like", 3, long_axis=("4ch", "2ch"))


def test_profile_offset_recovers_a_known_shift():
    t = np.arange(-40.0, 40.0, 0.5)

    def prof(x):
        return np.stack([np.exp(-((x - 3.0) / 8.0) ** 2) - 0.6 * np.exp(-((x + 12.0) / 4.0) ** 2)] * 2)

    a = prof(t - 2.3)  # a(t) = b(t - 2.3)
    d, q = motion.profile_offset(a, prof, t, np.ones_like(t))
    assert abs(d - 2.3) < 0.05 and q > 0.9


def test_measurements_on_a_phantom_match_the_true_shifts(pair_la):
    study, lr_lab = pair_la.lr, pair_la.lr.labels
    heart = (lr_lab > 0).any(axis=0)
    truth = pair_la.shifts.inplane_mm
    for view, la in pair_la.long_axis.items():
        m = motion.long_axis_measurements(study.image, study.grid, heart, la.image, la.grid, 8.0)
        k = np.flatnonzero(m["weight"] > 0)
        assert len(k) >= 6
        o = pair_la.long_axis_offsets[view]
        expect = truth[k] @ m["d_sa"] - o @ m["d_la"]  # delta_k = (s_k - o) . d
        err = np.abs(m["delta"][k] - expect)
        assert np.median(err) < 0.6, (view, err)


def test_combination_recovers_the_trend_the_stack_cannot_see():
    rng = np.random.default_rng(4)
    nz = 10
    z = np.arange(nz) * 10.0
    x = rng.normal(0, 1.5, (nz, 2)) + np.outer(z - z.mean(), [0.05, -0.04])  # a trend of 2-2.5 mm over the stack
    x -= x.mean(axis=0)
    est = np.ones(nz, bool)
    V = np.stack([z, np.ones(nz)], axis=1)
    sa = x - V @ np.linalg.lstsq(V, x, rcond=None)[0] + rng.normal(0, 0.3, (nz, 2))  # no mean, no trend
    views = []
    for ang, c in ((10.0, 1.2), (100.0, -0.7)):
        d = np.array([np.cos(np.radians(ang)), np.sin(np.radians(ang))])
        delta = x @ d - c + rng.normal(0, 0.3, nz)
        delta[3] += 6.0  # one bad profile (e.g. a basal slice): the robust fit rejects it
        views.append({"d_sa": d, "d_la": d, "delta": delta, "weight": np.ones(nz)})
    new, cs = motion.combine_long_axis(sa, est, z, views)
    err_sa = np.linalg.norm(sa - x, axis=1)
    err_new = np.linalg.norm(new - x, axis=1)
    assert np.median(err_new) < 0.45 and np.median(err_new) < 0.5 * np.median(err_sa)
    assert abs(cs[0] - 1.2) < 0.4 and abs(cs[1] + 0.7) < 0.4
    one, _ = motion.combine_long_axis(sa, est, z, views[:1])
    assert np.median(np.linalg.norm(one - x, axis=1)) < np.median(err_sa)


def test_evaluate_motion_takes_the_phantoms_long_axis_cines(tmp_path, capsys):
    """`gemini-cmr evaluate motion --long-axis-input`: the views reach the correction as evidence (measured on
    slices, other shifts than from the stack alone); a view the phantoms lack is one line and exit 2."""
    from gemini_cmr.cli.main import main
    from gemini_cmr.core.synth.dataset import write_dataset

    data = tmp_path / "la"
    write_dataset(data, 1, seed=3, n_phases=2, long_axis=("4ch",))
    base = ["evaluate", "motion", "--data", str(data), "--split", "all", "--motion-correction", "on", "--json"]
    assert main(base) == 0
    sa = json.loads(capsys.readouterr().out)
    assert main([*base, "--long-axis-input", "4ch"]) == 0
    la = json.loads(capsys.readouterr().out)
    (row_sa,), (row_la,) = sa["subjects"], la["subjects"]
    assert row_sa["modes"]["on"]["long_axis"] == [] and sa["long_axis_inputs"] == []
    (used,) = row_la["modes"]["on"]["long_axis"]
    assert la["long_axis_inputs"] == ["4ch"] and used["view"] == "4ch" and used["slices_measured"] >= 4
    assert not np.allclose(row_sa["modes"]["on"]["shifts_mm"], row_la["modes"]["on"]["shifts_mm"], atol=0.05)
    assert main([*base, "--long-axis-input", "2ch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and "no 2ch long-axis cine" in err[0]


def _combination_case(seed: int):
    rng = np.random.default_rng(seed)
    nz = 10
    z = np.arange(nz) * 10.0
    x = rng.normal(0, 1.5, (nz, 2)) + np.outer(z - z.mean(), [0.05, -0.04])
    V = np.stack([z, np.ones(nz)], axis=1)
    sa = x - V @ np.linalg.lstsq(V, x, rcond=None)[0] + rng.normal(0, 0.3, (nz, 2))
    sa[0] += [2.5, 0.0]  # the basal slice, about to lose its own estimate
    views = []
    for ang, c in ((10.0, 1.2), (100.0, -0.7)):
        d = np.array([np.cos(np.radians(ang)), np.sin(np.radians(ang))])
        views.append({"d_sa": d, "d_la": d, "delta": x @ d - c + rng.normal(0, 0.3, nz), "weight": np.ones(nz)})
    return sa, z, views


def test_a_slice_losing_its_estimate_moves_the_others_less_with_the_fit_s_weights():
    """The combination is centred with `fit_shifts`' weights, which fade before a slice's own estimate switches
    off: the switch then moves the other slices about half as much as an unweighted centring does."""
    moves = {"unweighted": [], "weighted": []}
    for seed in range(6):
        sa, z, views = _combination_case(seed)
        est = np.ones(len(z), bool)
        off = est.copy()
        off[0] = False
        for name, w_on, w_off in (("unweighted", None, None),
                                  ("weighted", np.r_[0.02, np.ones(9)], np.r_[0.0, np.ones(9)])):
            a, _ = motion.combine_long_axis(sa, est, z, views, weights=w_on)
            b, _ = motion.combine_long_axis(np.where(off[:, None], sa, 0.0), off, z, views, weights=w_off)
            moves[name].append(np.abs(a - b)[1:].max())
    assert max(moves["weighted"]) < 0.3 and np.mean(moves["weighted"]) < 0.7 * np.mean(moves["unweighted"]), moves


def test_fit_weights_vanish_where_a_slice_s_own_estimate_ends():
    from tests.core.test_motion import _basal_fading

    for scale in np.linspace(0.6, 0.1, 26):
        s, est, w = motion.fit_shifts(*_basal_fading(scale), with_weights=True)
        assert np.all(w[~est] == 0.0) and np.all((w >= 0) & (w <= 1))
        assert np.array_equal(motion.fit_shifts(*_basal_fading(scale))[1], est)
    # the basal slice's weight fades with its section before its estimate switches off
    ws = [motion.fit_shifts(*_basal_fading(c), with_weights=True)[2][2] for c in np.linspace(0.6, 0.3, 31)]
    on = [w for w in ws if w > 0]
    assert on and min(on) < 0.1 and max(ws) > 0.3
