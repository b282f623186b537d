"""Dropped-slice self-supervision (`SemiConfig.drop_slices`, `lr_data.drop_every_other`) and the
acquired-2d model's through-plane class-score residuals (`GeminiConfig.seg_tp_knots`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import DataError, ModelError
from gemini_cmr.core.models.gemini import (
    GeminiConfig,
    GeminiGenerator,
    acquired_plan,
    acquired_to_sr_host,
    class_argmax,
    interpolate_acquired,
    interpolate_rows,
    score_knots,
    tp_residual,
)
from gemini_cmr.core.models.store import load_model
from gemini_cmr.core.train.lr_data import drop_every_other
from gemini_cmr.core.train.semi import SemiTrainer, acquired_losses
from tests.core.train.test_ablation_options import A2D, _batch, _cfg, acdc3  # noqa: F401 (fixture)


def _stack(runs: list[int], h: int = 4, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """x (D, h, h) with acquired slice j (value j + 1 plus a pattern) repeated runs[j] times after `pad`
    rows of depth padding, and its slab rows."""
    rows = [j for j, n in enumerate(runs) for _ in range(n)]
    d = pad + len(rows) + pad
    x = np.zeros((d, h, h), np.float32)
    slab = np.full(d, -1, np.int64)
    for i, j in enumerate(rows):
        x[pad + i] = j + 1 + np.arange(h * h).reshape(h, h) / 100
        slab[pad + i] = j
    return x, slab


def test_drop_every_other_splits_each_removed_slice_between_its_kept_neighbours():
    x, slab = _stack([3, 3, 3, 3, 3])  # slices 0..4, 3 SR slices each, rows 2..16
    x2, slab2, drop = drop_every_other(x, slab, 0)  # keep 0, 2, 4
    # slice 1 (rows 5-7): rows 5, 6 (up to its centre) join slice 0, row 7 joins slice 2; the end slices
    # grow into the depth padding to stay centred (slice 0 on row 3, slice 4 on row 15)
    assert slab2.tolist() == [0] * 7 + [2] * 6 + [4] * 5 + [-1]
    assert drop.tolist() == [-1] * 6 + [1] + [-1] * 5 + [3] + [-1] * 6
    for r in range(18):
        np.testing.assert_array_equal(x2[r], x[np.flatnonzero(slab == slab2[r])[0]])
    assert not x2[18].any()
    # the model sees runs of twice the length, each removed slice's centre near midway between two runs
    plan = acquired_plan(torch.from_numpy(x2[None]))
    assert plan.n == 3 and [b - a for a, b in plan.runs[0]] == [7, 6, 5]
    for row, pair in ((6, (0, 1)), (12, (1, 2))):
        m = plan.out.tolist().index(row)
        assert (int(plan.ia[m]), int(plan.ib[m])) == pair and float(plan.t[m]) == pytest.approx(0.5, abs=0.05)
    # keeping the odd slices: the outer halves of the end slices 0 and 4 become depth padding
    x3, slab3, drop3 = drop_every_other(x, slab, 1)
    assert slab3.tolist() == [-1] * 3 + [1] * 7 + [3] * 6 + [-1] * 3 and not x3[:3].any()
    assert np.flatnonzero(drop3 >= 0).tolist() == [9] and drop3[9] == 2
    # even-length runs: both centre SR slices are supervised
    xe, se = _stack([2, 2, 2])
    assert np.flatnonzero(drop_every_other(xe, se, 0)[2] >= 0).tolist() == [4, 5]
    # nothing to learn from: one kept slice, or no removed slice between two kept ones
    assert drop_every_other(*_stack([3, 3]), 0) is None
    assert drop_every_other(*_stack([3, 3, 3]), 1) is None


def test_score_residuals_start_at_zero_and_follow_the_basis():
    torch.manual_seed(0)
    base = GeminiGenerator(GeminiConfig(**A2D)).eval()
    grown = GeminiGenerator(GeminiConfig(**A2D, seg_tp_knots=2)).eval()
    grown.load_state_dict({**grown.state_dict(), **base.state_dict()})
    x = torch.zeros(2, 24, 16, 16)
    for b in range(2):
        for j in range(4):
            x[b, 3 + 4 * j: 7 + 4 * j] = torch.rand(16, 16) + 0.5
    img0, lab0 = base.infer(x)
    img1, lab1 = grown.infer(x)  # the knots path: the same labels while the head is zero
    assert torch.equal(lab0, lab1)
    torch.testing.assert_close(img1, img0)  # the image from its knots: the same up to rounding
    # residuals: zero at the acquired slices' own SR positions (t = 0), towards the right neighbour
    res = torch.randn(3, 4, 2, 5, 5)  # 3 slices, 2 knots x 2 directions, 2 classes
    ia, ib = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 2])
    t = torch.tensor([0.25, 0.5, 0.5, 0.0])
    got = tp_residual(res, ia, ib, t)
    torch.testing.assert_close(got[0], res[0, 2 + 0])  # slice 0 towards the next: knot 1 of 2 at t = 0.25
    torch.testing.assert_close(got[1], res[1, 1])  # slice 1 towards the previous, knot 2 at t = 0.5
    torch.testing.assert_close(got[2], res[1, 3])
    assert not got[3].any()
    a = torch.randn(3, 2, 5, 5)
    torch.testing.assert_close(interpolate_rows(a, ia, ib, t, res)[1], 0.5 * a[1] + 0.5 * a[0] + res[1, 1])
    with pytest.raises(ModelError, match="seg_tp_knots"):
        GeminiConfig(seg_tp_knots=1)  # the slices-as-channels encoder has no acquired slices


@pytest.mark.parametrize("q", [1, 2, 3])
def test_score_knots_host_labels_equal_the_dense_scores(q):
    """The CPU path (knots + `acquired_to_sr_host`'s shortcut) gives exactly the argmax of every SR slice's
    interpolated scores plus residuals, for stacks with gaps, edges and depth padding."""
    g = torch.Generator().manual_seed(q)
    x = torch.zeros(3, 24, 6, 5)
    lengths = [(2, 3, 3, 4, 2), (5, 5), (1, 2, 3, 2, 3, 1)]
    for b, runs in enumerate(lengths):
        z = 1 + b
        for run in runs:
            x[b, z:z + run] = torch.rand(6, 5, generator=g) + 0.5
            z += run
    plan = acquired_plan(x)
    a_seg = torch.randn(plan.n, 4, 6, 5, generator=g)
    s_res = 2 * torch.randn(plan.n, 2 * q, 4, 6, 5, generator=g)
    dense = class_argmax(interpolate_rows(a_seg, plan.ia, plan.ib, plan.t, s_res))
    a_img = torch.randn(plan.n, 6, 5, generator=g)
    a_res = torch.randn(plan.n, 2 * q, 6, 5, generator=g)
    knots, kplan, img_knots = score_knots(a_seg, s_res, plan, a_img, a_res)
    img, lab = acquired_to_sr_host(img_knots, knots, kplan, 3 * 24)
    assert torch.equal(lab[plan.out], dense)
    # the image on the same knots: the through-plane residual images' interpolation, up to rounding
    torch.testing.assert_close(img[plan.out], interpolate_acquired(a_img, None, plan, a_res)[0])
    _, _, linear = score_knots(a_seg, s_res, plan, a_img)  # no residual images: the linear image
    torch.testing.assert_close(acquired_to_sr_host(linear, knots, kplan, 3 * 24)[0][plan.out],
                               interpolate_acquired(a_img, None, plan)[0])
    pad = torch.ones(3 * 24, dtype=torch.bool)
    pad[plan.out] = False
    assert not lab[pad].any()


def test_score_residuals_change_the_labels_and_the_forward_scores_agree():
    torch.manual_seed(1)
    g = GeminiGenerator(GeminiConfig(**A2D, seg_tp_knots=1)).eval()
    with torch.no_grad():
        g.seg_tp_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0] * 2))  # class 3 between slices
    x = torch.zeros(1, 24, 16, 16)
    for j in range(3):
        x[0, 4 + 5 * j: 9 + 5 * j] = torch.rand(16, 16) + 0.5
    img, lab = g.infer(x)
    _, logits = g(x)
    assert torch.equal(lab, logits.argmax(1).to(torch.uint8))
    plan = acquired_plan(x)
    between = plan.out[plan.t > 0.2]
    assert (lab.flatten(0, 1)[between] == 3).all()  # the residual wins between the slices ...
    assert (lab.flatten(0, 1)[plan.out[plan.t == 0]] != 3).any()  # ... not at the slices themselves
    # TTA averages the residuals of the mirrored passes too: a constant residual stays
    assert (g.infer(x, flips=((-1,),))[1].flatten(0, 1)[between] == 3).all()


def test_dropped_losses_reach_the_score_residual_head(acdc3):  # noqa: F811
    torch.manual_seed(0)
    x, lab, slab = _batch(acdc3)
    g = GeminiGenerator(GeminiConfig(**A2D, seg_tp_knots=1))
    drops, xs, slabs = [], [], []
    for b in range(x.shape[0]):
        r = drop_every_other(x[b].numpy(), slab[b].numpy(), 0)
        assert r is not None
        xs.append(r[0])
        slabs.append(r[1])
        drops.append(r[2])
    x2, slab2, drop = (torch.from_numpy(np.stack(v)) for v in (xs, slabs, drops))
    w = torch.ones(4)
    parts = acquired_losses(g, x2, lab, slab2, w, seg_target="acquired", drop=drop, drop_image=x)
    assert parts["drop_ce"] > 0 and parts["drop_dice"] > 0 and parts["drop_mse"] > 0
    (parts["drop_ce"] + parts["drop_dice"] + parts["drop_mse"]).backward()
    assert g.seg_tp_head.weight.grad.abs().sum() > 0
    # by hand: the SR slice at a removed slice's centre, interpolated between its kept neighbours
    s_res: list[torch.Tensor] = []
    a_img, a_seg, plan, _ = g.acquired_parts(x2, seg_res=s_res)
    sr_img, sr_seg = interpolate_acquired(a_img, a_seg, plan, None, s_res[0])
    f = int(torch.nonzero(drop.flatten() >= 0)[0])
    m = plan.out.tolist().index(f)
    assert float(plan.t[m]) == pytest.approx(0.5, abs=0.1)
    none = acquired_losses(g, x, lab, slab, w, seg_target="acquired", drop=torch.full_like(slab, -1))
    assert float(none["drop_ce"]) == 0 and float(none["drop_mse"]) == 0


def test_dropped_slice_training_grows_a_linear_model_and_predicts(acdc3, tmp_path):  # noqa: F811
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.predict import Predictor

    first = SemiTrainer(_cfg(tmp_path), f"acdc:{acdc3}", tmp_path / "linear", device="cpu").run()
    assert first["status"] == "done"
    cfg = _cfg(tmp_path, model={**A2D, "seg_tp_knots": 1, "tp_knots": 1}, drop_slices=1.0,
               init=str(tmp_path / "linear" / "last"))
    t = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu")
    summary = t.run()
    assert summary["status"] == "done" and summary["step"] == 3
    assert t.G.seg_tp_head.weight.abs().sum() > 0  # started at zero (grown), trained by the dropped slices
    batch = t._batch(0)
    assert (batch["drop"] >= 0).any()  # every stack lost every other slice
    assert not torch.equal(batch["x"], batch["drop_image"])  # the stacks before the removal, for the image term
    assert batch["context"] is None  # a model without first_phase_context
    m = load_model(tmp_path / "run" / "last")
    assert m.config["model"]["seg_tp_knots"] == 1
    p = Predictor.load(tmp_path / "run" / "last", device="cpu")
    pred = p.predict(load_acdc(acdc3 / "patient005"), phases=[0])
    assert np.isfinite(pred.sr_image).all() and pred.sr_labels.max() <= 3
    # the non-linear score-residual head added to that model: starts where it was, then trains
    deep = _cfg(tmp_path, model={**A2D, "seg_tp_knots": 1, "tp_knots": 1, "seg_tp_hidden": 8}, drop_slices=1.0,
                init=str(tmp_path / "run" / "last"))
    t2 = SemiTrainer(deep, f"acdc:{acdc3}", tmp_path / "deep", device="cpu")
    t2._prepare()
    assert not t2.G.seg_tp_deep[2].weight.any()
    torch.testing.assert_close(t2.G.seg_tp_head.weight, t.G.seg_tp_head.weight.to(t2.G.seg_tp_head.weight.dtype))
    assert t2.run()["status"] == "done" and t2.G.seg_tp_deep[2].weight.abs().sum() > 0
    pred2 = Predictor.load(tmp_path / "deep" / "last", device="cpu").predict(load_acdc(acdc3 / "patient005"),
                                                                             phases=[0])
    assert pred2.sr_labels.shape == pred.sr_labels.shape and pred2.sr_labels.max() <= 3
    with pytest.raises(ModelError, match="seg_tp_hidden"):
        GeminiConfig(**A2D, seg_tp_hidden=8)  # needs the score residuals it adds to
    with pytest.raises(DataError, match="drop_slices must be"):
        _cfg(tmp_path, drop_slices=1.5)
    with pytest.raises(DataError, match="drop_slices needs the acquired-2d"):
        SemiTrainer(_cfg(tmp_path, drop_slices=0.5, model={**A2D, "encoder": "shared-2d"}),
                    f"acdc:{acdc3}", tmp_path / "run3", device="cpu").run()
