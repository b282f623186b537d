"""Test-time augmentation (in-plane mirrorings) of the generator's labels, predictor and engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gemini_cmr.core.models.gemini import TTA_FLIPS, GeminiConfig, GeminiGenerator, class_argmax, tta_scores

DEMO = Path(__file__).resolve().parents[3] / "resources" / "demo" / "demo_study.nii.gz"


def _net(encoder: str) -> GeminiGenerator:
    torch.manual_seed(1)
    g = GeminiGenerator(GeminiConfig(depth=16, widths=(4, 8, 16), encoder=encoder, input_to_heads=True))
    for m in g.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return g.eval()


def _stack(seed: int = 0) -> torch.Tensor:
    """(1, 16, 24, 24): 4 acquired slices repeated 4 times each, an asymmetric bright blob in each."""
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand((4, 24, 24), generator=g) * 0.3
    lr[:, 5:14, 8:20] += 1.0
    return lr.repeat_interleave(4, 0)[None]


def test_tta_scores_is_the_log_of_the_mean_softmax_mirrored_back():
    g = torch.Generator().manual_seed(0)
    s = torch.randn((2, 4, 5, 6), generator=g)
    m = [torch.randn((2, 4, 5, 6), generator=g) for _ in TTA_FLIPS]
    want = (torch.softmax(s, 1) + sum(torch.softmax(t, 1).flip(d) for t, d in zip(m, TTA_FLIPS))) / 4
    torch.testing.assert_close(tta_scores(s, m, TTA_FLIPS), torch.log(want))
    torch.testing.assert_close(tta_scores(s, [], ()), torch.log_softmax(s, 1))


@pytest.mark.parametrize("encoder", ["acquired-2d", "slices-as-channels"])
def test_tta_labels_are_mirror_equivariant_and_match_the_averaged_passes(encoder):
    """The mirrorings form a group: the labels of a mirrored input are the mirrored labels (plain inference
    has no such symmetry), and they are the argmax of the four passes' mean probabilities."""
    net = _net(encoder)
    x = _stack()
    with torch.inference_mode():
        img, lab = net.infer(x, flips=TTA_FLIPS)
        img0, lab0 = net.infer(x)
        torch.testing.assert_close(img, img0)  # the image is the unmirrored pass's
        for dims in TTA_FLIPS:
            _, lab_m = net.infer(x.flip(dims), flips=TTA_FLIPS)
            agree = (lab_m.flip(dims) == lab).float().mean().item()
            assert agree > 0.999, (dims, agree)
        if encoder != "acquired-2d":
            logits = [net(x)[1]] + [net(x.flip(d))[1].flip(d) for d in TTA_FLIPS]
            mean = torch.stack([torch.softmax(t, 1) for t in logits]).mean(0)
            assert (class_argmax(mean) == lab).float().mean().item() > 0.999


def test_predictor_and_engine_tta(tmp_path):
    """`Predictor.predict(tta=True)` runs 4 network passes per stack; the engine records it in the result
    and run.json."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.outputs import write_outputs
    from gemini_cmr.core.predict import Predictor

    study = load_study(DEMO)
    p = Predictor.load(None, device="cpu")
    calls = []
    model = p._inference_model()
    real = type(model).forward

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    type(model).forward = counting
    try:
        plain = p.predict(study, phases=[0])
        n_plain = len(calls)
        calls.clear()
        aug = p.predict(study, phases=[0], tta=True)
        assert len(calls) == 4 * n_plain
    finally:
        type(model).forward = real
    np.testing.assert_allclose(aug.sr_image, plain.sr_image, atol=1e-5)
    assert (aug.sr_labels == plain.sr_labels).mean() > 0.99  # a consensus of the same model
    res = SuperResolver(model=p).run(study, phases="0", meshes="none", motion_correction=False, tta=True)
    assert res.tta == "all"
    write_outputs(res, tmp_path / "out", ["stl"])
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["model"]["tta"] == "all"


def test_engine_tta_at_ed_es_only():
    """"ed_es": ED and ES labels as with every phase augmented, the other phases as without; the phenotypes
    come from those labels."""
    from gemini_cmr.core.engine import SuperResolver, tta_mode_of
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.predict import Predictor

    study = load_study(DEMO)
    p = Predictor.load(None, device="cpu")
    engine = SuperResolver(model=p)
    kw = {"phases": "0,2,4,6", "meshes": "none", "motion_correction": False}
    plain, full, part = (engine.run(study, tta=m, **kw) for m in ("off", "all", "ed_es"))
    assert (plain.tta, full.tta, part.tta) == ("off", "all", "ed_es")
    assert (part.ed_phase, part.es_phase) == (full.ed_phase, full.es_phase)
    for i, t in enumerate(part.phases):
        want = full if t in (part.ed_phase, part.es_phase) else plain
        np.testing.assert_array_equal(part.sr_labels[i], want.sr_labels[i])
        np.testing.assert_array_equal(part.lr_labels[i], want.lr_labels[i])
    np.testing.assert_array_equal(part.sr_image, plain.sr_image)
    assert part.phenotypes["lv_ef_pct"] == pytest.approx(full.phenotypes["lv_ef_pct"])
    assert "predict_tta" in part.timings
    with pytest.raises(ValueError):
        tta_mode_of("sometimes")


@pytest.mark.parametrize("command", ["super-resolve", "batch"])
def test_cli_tta_options(command):
    from gemini_cmr.cli.main import build_parser

    parser = build_parser()
    base = [command, "X", "--out", "Y"]
    assert parser.parse_args(base).tta == "off"
    assert parser.parse_args([*base, "--tta"]).tta == "all"
    assert parser.parse_args([*base, "--tta-ed-es"]).tta == "ed_es"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--tta", "--tta-ed-es"])
