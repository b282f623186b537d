"""Per-acquired-slice computation in the per-slice generators ("shared-2d" dedup, "acquired-2d")."""

from __future__ import annotations

import pytest
import torch

import gemini_cmr.core.models.gemini as gem
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator, acquired_plan


def _placed(n_lr: int, reps: list[int], pad: tuple[int, int], h: int = 16, w: int = 16, seed: int = 0):
    """A stack of `n_lr` random acquired slices, slice j repeated reps[j] times, zero depth padding."""
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand((n_lr, h, w), generator=g) + 0.1
    sl = [torch.zeros((pad[0], h, w))] + [lr[j].expand(r, h, w) for j, r in enumerate(reps)]
    sl.append(torch.zeros((pad[1], h, w)))
    return torch.cat(sl)[None], lr


def test_shared2d_eval_dedup_is_exact(monkeypatch):
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=16, widths=(4, 8, 16), encoder="shared-2d", input_to_heads=True))
    for m in g.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    g.eval()
    x, _ = _placed(3, [4, 5, 4], (2, 1))
    x = torch.cat([x, x.flip(1)])
    calls = []
    orig = g._encode2d
    monkeypatch.setattr(g, "_encode2d", lambda t: calls.append(t.shape[0]) or orig(t))
    with torch.inference_mode():
        img, seg = g(x)
    assert calls == [2 * 3 + 3]  # 3 acquired slices per stack + padding runs (2 per stack, one shared)
    monkeypatch.setattr(gem, "_distinct_runs", lambda t: (torch.ones(t.shape[0], dtype=torch.bool),
                                                         torch.arange(t.shape[0])))
    calls.clear()
    with torch.inference_mode():
        img2, seg2 = g(x)
    assert calls == [32]
    torch.testing.assert_close(img, img2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seg, seg2, atol=1e-5, rtol=1e-5)


def test_acquired_plan_interpolation_weights():
    x, _ = _placed(3, [5, 5, 4], (2, 3))
    plan = acquired_plan(x)
    assert plan.n == 3 and plan.runs == [[(2, 7), (7, 12), (12, 16)]]
    t = dict(zip(plan.out.tolist(), zip(plan.ia.tolist(), plan.ib.tolist(), plan.t.tolist())))
    assert t[4] == (0, 0, 0.0)  # centre of the first slab
    assert t[2] == (0, 0, 0.0)  # outer half of the first slab: no neighbour
    assert t[5] == (0, 1, pytest.approx(0.2))  # 1 of 5 SR slices towards the next centre
    assert t[9] == (1, 1, 0.0)
    assert t[12] == (2, 1, pytest.approx(1.5 / 4.5))
    assert 0 not in t and 17 not in t  # depth padding


def test_acquired2d_shapes_padding_and_gradients():
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=20, widths=(4, 8, 16), encoder="acquired-2d", input_to_heads=True))
    x1, _ = _placed(3, [5, 5, 4], (3, 3))
    x2, _ = _placed(4, [3, 3, 3, 3], (4, 4), seed=1)
    x = torch.cat([x1, x2, torch.zeros_like(x1)])
    img, seg = g(x)
    assert img.shape == (3, 20, 16, 16) and seg.shape == (3, 4, 20, 16, 16)
    assert torch.all(img[2] == 0) and torch.all(seg[2].argmax(0) == 0)  # all padding
    assert torch.all(img[0, :3] == 0) and torch.all(seg[0, :, :3].argmax(0) == 0)
    (img.pow(2).mean() + seg.logsumexp(1).mean()).backward()
    for mod in (g.inc[0], g.mix[0].conv, g.mix[-1].conv, g.image_head, g.seg_head):
        assert mod.weight.grad is not None and mod.weight.grad.abs().sum() > 0


def test_acquired2d_depends_on_acquired_slices_not_on_their_repetition():
    """Same acquired slices placed with 3 or 5 SR slices per slab: identical outputs at the slab centres,
    and the image there is the slice itself plus the learnt correction."""
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=24, widths=(4, 8, 16), encoder="acquired-2d")).eval()
    xa, lr = _placed(4, [3, 3, 3, 3], (6, 6))
    xb, _ = _placed(4, [5, 5, 5, 5], (2, 2))
    with torch.inference_mode():
        ia, sa = g(xa)
        ib, sb = g(xb)
    ca, cb = [7, 10, 13, 16], [4, 9, 14, 19]
    torch.testing.assert_close(ia[0, ca], ib[0, cb], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sa[0, :, ca], sb[0, :, cb], atol=1e-5, rtol=1e-5)
    # between two centres the output is the linear interpolation of the two acquired slices' outputs
    torch.testing.assert_close(ib[0, 5], 0.8 * ib[0, 4] + 0.2 * ib[0, 9], atol=1e-5, rtol=1e-5)


def _a2d_with_stats(**kw):
    torch.manual_seed(0)
    g = GeminiGenerator(GeminiConfig(depth=16, widths=(4, 8, 16), encoder="acquired-2d", input_to_heads=True, **kw))
    for m in g.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return g.eval()


@pytest.mark.parametrize("kernel", [3, 5])
def test_acquired2d_eval_mixing_matches_the_conv3d_path(kernel):
    """Eval mode mixes through-plane with 1x1 convolutions on the acquired slices only, added as shifted
    row blocks; the same numbers as the (k, 1, 1) Conv3d over the zero-separated sequence that training
    uses (with k = 5 that reaches across the one-slot separator into the next stack, and so does eval)."""
    from gemini_cmr.core.models.gemini import neighbour_blocks

    g = _a2d_with_stats(mix_kernel=kernel)
    x, _ = _placed(4, [3, 4, 3, 4], (1, 1))
    one, _ = _placed(1, [4], (6, 6), seed=2)  # a stack of one acquired slice
    x = torch.cat([x, one, x.flip(1)])
    plan = acquired_plan(x)
    feats = g._encode2d(x.reshape(-1, 1, 16, 16)[plan.src])
    blocks = neighbour_blocks(plan.pos, plan.length, kernel // 2)
    if kernel == 5:
        # the last slice of the first stack (row 3) reaches the one-slice stack (row 4) across the separator
        assert any(d0 <= 3 < d1 and s0 + 3 - d0 == 4 for d0, d1, s0 in blocks[2])
    for mix, f in zip(g.mix, feats):
        fast = g._mix_sequences(mix, f, plan.pos, plan.length, blocks)
        assert torch.equal(fast, g._mix_sequences(mix, f, plan.pos, plan.length))  # blocks made inside
        seq = f.new_zeros((plan.length, *f.shape[1:]))
        seq[plan.pos] = f
        v = seq.permute(1, 0, 2, 3).unsqueeze(0)
        ref = (v + torch.relu(mix.norm(mix.conv(v))))[0].permute(1, 0, 2, 3)[plan.pos]
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dense_rows", [256, 7])
def test_acquired2d_infer_labels_equal_argmax_of_forward(monkeypatch, dense_rows):
    """`infer` never builds the SR logits: the labels of the acquired slices, interpolated only where two
    neighbours disagree. Same image and the same labels as argmax of `forward`'s interpolated logits, on
    the CPU's grouped path and on the GPU's dense one (in blocks of `dense_rows` SR slices)."""
    from gemini_cmr.core.models import gemini
    from gemini_cmr.core.models.gemini import class_argmax

    monkeypatch.setattr(gemini, "DENSE_LABEL_ROWS", dense_rows)

    g = _a2d_with_stats()
    with torch.no_grad():  # spread logits, so that neighbouring slices disagree somewhere
        g.seg_head.weight.normal_(0, 3, generator=torch.Generator().manual_seed(5))
        g.seg_head.bias.zero_()
    x, _ = _placed(4, [3, 5, 4, 3], (0, 1), seed=3)
    x = torch.cat([x, _placed(3, [5, 5, 5], (1, 0), seed=4)[0]])
    with torch.inference_mode():
        img, logits = g(x)
        img2, lab = g.infer(x)
        img3, lab3 = g._infer_acquired(x, grouped=False)  # the GPU path, on the CPU here
    ref = class_argmax(logits)
    torch.testing.assert_close(img2, img)
    assert lab.dtype == torch.uint8 and torch.equal(lab, ref)
    assert torch.equal(img3, img2) and torch.equal(lab3, lab)
    a_img, a_seg, plan, _ = g.acquired_parts(x)
    a_lab = class_argmax(a_seg)
    assert (a_lab[plan.ia] != a_lab[plan.ib]).any()  # the interpolated branch was exercised
    assert (lab.flatten(0, 1)[plan.out] > 0).any()


def test_tp_basis_hats():
    from gemini_cmr.core.models.gemini import tp_basis

    t = torch.tensor([0.0, 0.125, 0.25, 0.375, 0.5])
    torch.testing.assert_close(tp_basis(t, 2), torch.tensor([[0, 0], [0.5, 0], [1, 0], [0.5, 0.5], [0, 1.0]]))
    torch.testing.assert_close(tp_basis(t, 1)[:, 0], t * 2)


def test_tp_knots_start_linear_then_add_the_nearest_slices_residuals():
    """`tp_knots`: zero-initialised, the model equals the linear one (same other weights); with weights, each
    SR slice = linear interpolation + the nearest acquired slice's residual images towards its other
    neighbour, weighted by `tp_basis`; `infer` gives the same image as `forward`; gradients reach the head."""
    from gemini_cmr.core.models.gemini import interpolate_acquired, tp_basis

    lin = _a2d_with_stats()
    tp = _a2d_with_stats(tp_knots=2)
    missing = tp.load_state_dict(lin.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["tp_head.bias", "tp_head.weight"]
    x, _ = _placed(4, [3, 5, 4, 3], (0, 1), seed=3)
    with torch.inference_mode():
        torch.testing.assert_close(tp(x)[0], lin(x)[0])
    with torch.no_grad():
        tp.tp_head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        tp.tp_head.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        img, _ = tp(x)
        img2, _ = tp.infer(x)
        a_img, a_seg, plan, a_res = tp.acquired_parts(x)
        lin_img, _ = interpolate_acquired(a_img, None, plan)
    torch.testing.assert_close(img2, img)
    assert a_res.shape == (plan.n, 4, 16, 16)
    wts = tp_basis(plan.t, 2)
    sr = img.flatten(0, 1)[plan.out]
    for m in range(len(plan.out)):
        ia, ib = int(plan.ia[m]), int(plan.ib[m])
        ch = 2 if ib > ia else 0
        want = lin_img[m] + wts[m, 0] * a_res[ia, ch] + wts[m, 1] * a_res[ia, ch + 1]
        torch.testing.assert_close(sr[m], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(img, lin(x)[0].detach())
    tp.train()
    img, seg = tp(x)
    img.pow(2).mean().backward()
    assert tp.tp_head.weight.grad.abs().sum() > 0


def test_tp_knots_only_for_acquired2d():
    from gemini_cmr.core.errors import ModelError

    with pytest.raises(ModelError, match="tp_knots"):
        GeminiConfig(encoder="slices-as-channels", tp_knots=2)
    assert GeminiConfig.from_dict(GeminiConfig(encoder="acquired-2d").to_dict()).tp_knots == 0


def _stacks(layouts, depth, h=12, w=20, seed=0):
    """A batch of stacks, each (number of acquired slices, repetitions, padding) for `_placed`, zero-padded
    at the end to `depth` SR slices."""
    xs = [_placed(n, reps, pad, h, w, seed + i)[0] for i, (n, reps, pad) in enumerate(layouts)]
    return torch.cat([torch.nn.functional.pad(v, (0, 0, 0, 0, 0, depth - v.shape[1])) for v in xs])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("levels", [2, 3, 0])
def test_acquired_to_sr_host_equals_the_dense_path(monkeypatch, dtype, channels_last, levels):
    """The CPU path (`acquired_to_sr_host`, NumPy) against the dense path on random acquired-slice outputs:
    same labels and same image bit for bit, with ties between classes (scores on a coarse grid), stacks of
    one acquired slice, depth padding at either end or none, slices repeated 1 to 6 times, an all-padding
    stack, non-square slices, bfloat16 or float32 scores in either memory layout; `levels` 0: constant
    scores (no disagreement anywhere)."""
    depth = 24
    layouts = [(4, [3, 5, 4, 3], (0, 1)), (1, [5], (3, 2)), (5, [1, 2, 6, 1, 3], (4, 0)),
               (2, [12, 12], (0, 0)), (3, [2, 1, 2], (10, 9))]
    x = torch.cat([_stacks(layouts[:3], depth, seed=1), torch.zeros((1, depth, 12, 20)),
                   _stacks(layouts[3:], depth, seed=7)])
    plan = acquired_plan(x)
    assert plan.n == 15 and [len(r) for r in plan.runs] == [4, 1, 5, 0, 2, 3]
    g = torch.Generator().manual_seed(levels)
    a_img = torch.randn((plan.n, 12, 20), generator=g) * 100
    if levels:
        a_seg = (torch.randint(0, levels, (plan.n, 4, 12, 20), generator=g) * 0.5).to(dtype)
    else:
        a_seg = torch.full((plan.n, 4, 12, 20), 0.25, dtype=dtype)
    if channels_last:
        a_seg = a_seg.contiguous(memory_format=torch.channels_last)
    model = GeminiGenerator(GeminiConfig(depth=depth, widths=(4, 8, 16), encoder="acquired-2d")).eval()
    monkeypatch.setattr(model, "acquired_parts", lambda inp, *a, **k: (a_img, a_seg, plan, None))
    with torch.inference_mode():
        img, lab = model._infer_acquired(x)  # the CPU default
        ref_img, ref_lab = model._infer_acquired(x, grouped=False)
    assert img.shape == ref_img.shape == x.shape and lab.dtype == torch.uint8
    assert torch.equal(lab, ref_lab) and torch.equal(img, ref_img)
    padding = torch.ones(x.shape[0] * depth, dtype=torch.bool)
    padding[plan.out] = False
    assert not img.flatten(0, 1)[padding].any() and not lab.flatten(0, 1)[padding].any()
    a_lab = gem.class_argmax(a_seg.float())
    disagree = (a_lab[plan.ia] != a_lab[plan.ib]).any((1, 2))
    assert bool(disagree.any()) == bool(levels)
    if levels:  # some interpolated labels differ from the nearest slice's
        assert not torch.equal(lab.flatten(0, 1)[plan.out], a_lab[plan.ia])


def test_acquired_to_sr_host_with_through_plane_residuals(monkeypatch):
    """With `tp_knots` the CPU path takes the image from `interpolate_acquired` and the same labels."""
    x = _stacks([(4, [3, 5, 4, 3], (0, 1)), (1, [4], (6, 6))], 16, h=16, w=16)
    plan = acquired_plan(x)
    g = torch.Generator().manual_seed(3)
    a_img, a_seg = torch.randn((plan.n, 16, 16), generator=g), torch.randn((plan.n, 4, 16, 16), generator=g)
    a_res = torch.randn((plan.n, 4, 16, 16), generator=g)
    model = GeminiGenerator(GeminiConfig(depth=16, widths=(4, 8, 16), encoder="acquired-2d", tp_knots=2)).eval()
    monkeypatch.setattr(model, "acquired_parts", lambda inp, *a, **k: (a_img, a_seg, plan, a_res))
    with torch.inference_mode():
        img, lab = model._infer_acquired(x)
        ref_img, ref_lab = model._infer_acquired(x, grouped=False)
    assert torch.equal(lab, ref_lab) and torch.equal(img, ref_img)
    assert not torch.equal(img.flatten(0, 1)[plan.out], gem.interpolate_acquired(a_img, None, plan)[0])


@pytest.mark.parametrize("extra", [{}, {"tp_knots": 2, "seg_tp_knots": 2}, {"seg_tp_knots": 1, "seg_tp_hidden": 8}])
def test_labels_only_inference_gives_the_same_labels_without_the_image_decoder(monkeypatch, extra):
    """`infer(labels_only=True)` (the heart-finding pass) never runs the image decoder and returns the
    labels of the full inference bit for bit, with and without through-plane residuals and with TTA."""
    x = _stacks([(4, [3, 5, 4, 3], (0, 1)), (3, [4, 5, 4], (3, 2))], 24, h=16, w=16)
    torch.manual_seed(0)
    model = GeminiGenerator(GeminiConfig(depth=24, widths=(4, 8, 16), encoder="acquired-2d", **extra)).eval()
    with torch.no_grad():  # random heads (the residual ones start at zero), so that labels vary
        for name, p in model.named_parameters():
            if "tp_" in name or "seg_head" in name:
                p.normal_(0, 0.5)
    with torch.inference_mode():
        img, lab = model.infer(x)
        lab_tta = model.infer(x, flips=gem.TTA_FLIPS)[1]
    calls = []
    monkeypatch.setattr(model.image_decoder, "forward", lambda *a, **k: calls.append(1))
    with torch.inference_mode():
        img2, lab2 = model.infer(x, labels_only=True)
        lab2_tta = model.infer(x, flips=gem.TTA_FLIPS, labels_only=True)[1]
    assert not calls
    assert torch.equal(lab2, lab) and torch.equal(lab2_tta, lab_tta)
    assert img2.shape == img.shape and len(torch.unique(lab)) >= 2  # not one class everywhere
