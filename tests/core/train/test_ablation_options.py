"""Recipe options for the ablations of the ACDC recipe: deep supervision of the segmentation decoder
(`SemiConfig.deep_supervision`, training only) and instance norm (`model.norm`), each in a few real steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.models.blocks import channels_last_convs
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.models.store import load_model, load_tensors
from gemini_cmr.core.train.deep_supervision import DeepSupervisionHeads, level_weights
from gemini_cmr.core.train.lr_data import IGNORE, SET_BASE, LRItems, load_acdc_split
from gemini_cmr.core.train.semi import SemiConfig, SemiTrainer, acquired_losses, downsample_labels, seg_losses
from tests.core.train.test_lr_labels import _acdc_patient

A2D = {"depth": 24, "widths": [4, 8, 8, 8], "encoder": "acquired-2d", "input_to_heads": True}


@pytest.fixture(scope="module")
def acdc3(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc-abl") / "training"
    for n, seed in ((1, 0), (2, 1), (5, 2)):
        _acdc_patient(root, n, seed)
    return root


def _cfg(tmp_path, **kw) -> SemiConfig:
    return SemiConfig.from_dict({"model": A2D, "omega_gan": 0.0, "crop": 16, "batch_size": 2, "epochs": 100,
                                 "max_steps": 3, "amp": "off", "num_threads": 1, "val_crop": 0, "lr": 3e-3,
                                 "seg_target": "acquired", "class_weights": [1, 1, 1, 1],
                                 "checkpoint_every": 1, "cache_dir": str(tmp_path / "cache"), **kw})


def test_level_weights_halve_and_sum_to_one():
    assert level_weights(0) == [1.0]
    np.testing.assert_allclose(level_weights(2), [4 / 7, 2 / 7, 1 / 7])


def test_downsampled_labels_are_the_union_of_each_block():
    k = 4
    set_bg_rv = SET_BASE + 0b1001  # a slice annotating the LV only: background or RV
    lab = torch.tensor([[[1, 1, 2, 1, 0, 0, 3, IGNORE],
                         [1, 1, 1, 1, 0, 0, 3, 3],
                         [set_bg_rv, set_bg_rv, set_bg_rv, 1, 2, 2, 0, 3],
                         [set_bg_rv, set_bg_rv, set_bg_rv, set_bg_rv, 2, 2, 1, 2]]])
    got = downsample_labels(lab, 2, k)
    assert got.dtype == lab.dtype and got.shape == (1, 2, 4)
    assert got[0, 0].tolist() == [1, SET_BASE + 0b0110, 0, IGNORE]  # exact, LV or myo, exact, unlabelled
    assert got[0, 1].tolist() == [set_bg_rv, SET_BASE + 0b1011, 2, IGNORE]  # every class -> IGNORE
    assert downsample_labels(lab, 4, k).tolist() == [[[IGNORE, IGNORE]]]
    assert torch.equal(downsample_labels(lab, 1, k), lab)
    # the coarse codes mean what the block's pixels allow: the loss of a prediction that puts each block's
    # probability on one of its pixels' classes is zero cross-entropy on the exact and set pixels
    q = torch.zeros(1, k, 2, 4)
    q[0, 1, 0, 0] = q[0, 1, 0, 1] = q[0, 0, 0, 2] = q[0, 0, 1, 0] = q[0, 1, 1, 1] = q[0, 2, 1, 2] = 1.0
    q[0, 0, 0, 3] = q[0, 0, 1, 3] = 1.0
    ce, _ = seg_losses(q, got, torch.ones(k))
    assert float(ce) < 1e-5


def _batch(root, n: int = 2):
    items = LRItems(load_acdc_split(root, "train"), depth=24, multiple=8)
    batch = [items.get(i, None, None, crop=16) for i in range(n)]
    return (torch.from_numpy(np.stack(v)) for v in zip(*batch))


def test_deep_supervision_losses_weight_the_coarser_levels(acdc3):
    torch.manual_seed(0)
    x, lab, slab = _batch(acdc3)
    g = GeminiGenerator(GeminiConfig(**A2D))
    heads = DeepSupervisionHeads(g.config.widths, 4, 2)
    w = torch.ones(4)
    plain = acquired_losses(g, x, lab, slab, w, seg_target="acquired")
    deep = acquired_losses(g, x, lab, slab, w, seg_target="acquired", aux_heads=heads)
    torch.testing.assert_close(deep["q"], plain["q"])  # the generator's outputs are untouched
    torch.testing.assert_close(deep["degrade"], plain["degrade"])
    (ce0, d0), (ce1, d1), (ce2, d2) = deep["levels"]
    torch.testing.assert_close(ce0, plain["ce"])
    torch.testing.assert_close(d0, plain["dice"])
    torch.testing.assert_close(deep["ce"], (4 * ce0 + 2 * ce1 + ce2) / 7)
    torch.testing.assert_close(deep["dice"], (4 * d0 + 2 * d1 + d2) / 7)
    levels: list[torch.Tensor] = []
    g.acquired_parts(x, levels)
    assert [tuple(t.shape[1:]) for t in levels] == [(8, 4, 4), (8, 8, 8)]  # 1/4 then 1/2 of the 16 px crop
    (deep["ce"] + deep["dice"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    with pytest.raises(DataError, match="deep_supervision 3"):
        DeepSupervisionHeads(g.config.widths, 4, 3)


def test_deep_supervision_trains_resumes_and_exports_the_generator_alone(acdc3, tmp_path):
    """A few real steps with deep supervision: the heads train and are checkpointed (exact resume), every
    model folder holds exactly the generator's tensors, and the exported model infers as the trainer's
    generator does."""
    cfg = _cfg(tmp_path, deep_supervision=2)
    t = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu")
    summary = t.run()
    assert summary["status"] == "done" and summary["step"] == 3
    expected = set(GeminiGenerator(GeminiConfig(**A2D)).state_dict())
    for folder in ("last", "best"):
        assert set(load_tensors(tmp_path / "run" / folder / "model.safetensors")) == expected
    state = load_tensors(tmp_path / "run" / "last" / "state.safetensors")
    assert {k for k in state if k.startswith("A.")} == {"A.heads.0.weight", "A.heads.0.bias",
                                                          "A.heads.1.weight", "A.heads.1.bias"}
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["training"]["config"]["deep_supervision"] == 2
    m = load_model(tmp_path / "run" / "last")
    x, _, _ = _batch(acdc3, 1)
    t.G.eval()
    convs = [c for c in t.G.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)  # CPU
    channels_last_convs(t.G, on=False)  # the exported copy's memory format: the same arithmetic
    with torch.no_grad():
        a, b = t.G.infer(x), m.generator.infer(x)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    # stopped after 2 steps and resumed: the same weights as the uninterrupted run
    part = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run2", device="cpu").run(stop_after=2)
    assert part["status"] == "stopped"
    resumed = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run2", device="cpu").run(resume=True)
    assert resumed["weights_sha256"] == summary["weights_sha256"]
    # the checkpoint and the config must agree on deep supervision
    with pytest.raises(DataError, match="with deep supervision"):
        SemiTrainer(_cfg(tmp_path), f"acdc:{acdc3}", tmp_path / "run2", device="cpu").run(resume=True)
    with pytest.raises(DataError, match="deep_supervision must be"):
        _cfg(tmp_path, deep_supervision=-1)


def test_instance_norm_recipe_trains_and_predicts(acdc3, tmp_path):
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.predict import Predictor

    cfg = _cfg(tmp_path, model={**A2D, "norm": "instance"})
    summary = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu").run()
    assert summary["status"] == "done" and summary["step"] == 3
    p = Predictor.load(tmp_path / "run" / "last", device="cpu", precision="bfloat16")
    assert p.config["model"]["norm"] == "instance"
    pred = p.predict(load_acdc(acdc3 / "patient005"), phases=[0])
    assert pred.sr_labels.shape[0] == 1 and np.isfinite(pred.sr_image).all()


def test_distill_loss_is_the_scaled_kl_of_the_teacher_from_the_model():
    from gemini_cmr.core.train.semi import distill_loss

    torch.manual_seed(0)
    s, t = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    assert float(distill_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / 2, 1), torch.log_softmax(t / 2, 1),
                                    reduction="none", log_target=True).sum(1).mean() * 4
    torch.testing.assert_close(distill_loss(s, t, 2.0), kl)
    assert float(distill_loss(s, t)) > 0
    with pytest.raises(DataError, match="do not match"):
        distill_loss(s, t[:, :3])
    with pytest.raises(DataError, match="distill_temperature"):
        SemiConfig.from_dict({"distill_temperature": 0})


def test_distillation_learns_the_teachers_scores_on_every_acquired_slice(acdc3, tmp_path):
    """A teacher trained a few steps, then a narrower model distilled from it: the term is in the loss
    (acquired_losses' "distill" is the KL of the same slices), the teacher stays frozen, the saved config
    names the teacher's id, and a teacher of another depth is refused naming its folder."""
    teacher_run = tmp_path / "teacher"
    SemiTrainer(_cfg(tmp_path), f"acdc:{acdc3}", teacher_run, device="cpu").run()
    teacher = load_model(teacher_run / "last")
    x, lab, slab = _batch(acdc3)
    student = GeminiGenerator(GeminiConfig(**{**A2D, "widths": [4, 4, 8, 8]}))
    with torch.no_grad():
        t_seg = teacher.generator.acquired_parts(x)[1]
    parts = acquired_losses(student, x, lab, slab, torch.ones(4), seg_target="acquired", teacher_seg=t_seg)
    torch.testing.assert_close(parts["distill"], distill_loss_of(student, x, t_seg))
    parts["distill"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert float(acquired_losses(student, x, lab, slab, torch.ones(4), seg_target="acquired")["distill"]) == 0

    before = {k: v.clone() for k, v in teacher.generator.state_dict().items()}
    cfg = _cfg(tmp_path, model={**A2D, "widths": [4, 4, 8, 8]}, distill=str(teacher_run / "last"),
               lambda_distill=2.0, distill_temperature=2.0)
    t = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "student", device="cpu")
    summary = t.run()
    assert summary["status"] == "done" and summary["step"] == 3
    assert all(torch.equal(before[k], v.cpu()) for k, v in t.teacher.state_dict().items())
    assert not any(p.requires_grad for p in t.teacher.parameters())
    saved = json.loads((tmp_path / "student" / "last" / "config.json").read_text())
    assert saved["training"]["distill_teacher_id"] == teacher.model_id
    assert saved["training"]["config"]["distill"] == str(teacher_run / "last")
    with pytest.raises(DataError, match="depth 24") as err:
        SemiTrainer(_cfg(tmp_path, model={**A2D, "depth": 32}, distill=str(teacher_run / "last")),
                    f"acdc:{acdc3}", tmp_path / "bad", device="cpu").run()
    assert "teacher" in str(err.value)


def distill_loss_of(model, x, teacher_seg):
    from gemini_cmr.core.train.semi import distill_loss

    return distill_loss(model.acquired_parts(x)[1].float(), teacher_seg.float())


def test_fold_models_of_a_recipe_are_each_folds_own():
    from gemini_cmr.core.train.cv import fold_init

    cfg = {"init": "runs/a/{fold}/model", "distill": "runs/t/{fold}/model", "lr": 1}
    assert fold_init(cfg, 3) == {"init": "runs/a/fold3/model", "distill": "runs/t/fold3/model"}
    assert fold_init(cfg, "all") == {"init": "runs/a/final/model", "distill": "runs/t/final/model"}
    assert fold_init({"lr": 1}, 0) == {}


def test_beyond_end_rows_mark_the_slices_next_to_each_structures_extent():
    from gemini_cmr.core.train.semi import beyond_end_rows

    lab = torch.zeros(3, 8, 2, 2, dtype=torch.int64)
    lab[0, 2:6, 0, 0] = 1  # LV on slices 2-5: slices 1 and 6 lie beyond it
    lab[0, 3:5, 1, 1] = 3  # RV on slices 3-4: slices 2 and 5 (which hold the LV) lie beyond it
    lab[1, 0:7, 0, 0] = 2  # a structure from the first slice: only its apical side has a slice beyond
    lab[1, 7] = IGNORE  # an unlabelled row is never marked
    got = beyond_end_rows(lab, 4)
    assert got[0].tolist() == [False, True, True, False, False, True, True, False]
    assert got[1].tolist() == [False] * 8
    assert not got[2].any()  # no structure, nothing to be beyond
    lab[1, 7] = 0
    assert beyond_end_rows(lab, 4)[1].tolist() == [False] * 7 + [True]


def test_end_slice_weight_weighs_the_cross_entropy_of_the_slices_beyond(acdc3, tmp_path):
    from gemini_cmr.core.train.semi import beyond_end_rows

    torch.manual_seed(0)
    x, lab, slab = _batch(acdc3)
    g = GeminiGenerator(GeminiConfig(**A2D))
    w = torch.ones(4)
    with torch.no_grad():
        plain = acquired_losses(g, x, lab, slab, w, seg_target="acquired")
        heavy = acquired_losses(g, x, lab, slab, w, seg_target="acquired", end_weight=3.0)
    torch.testing.assert_close(heavy["dice"], plain["dice"])  # only the cross-entropy is weighted
    torch.testing.assert_close(heavy["q"], plain["q"])
    # the weighted CE is the voxel mean with the marked slices' voxels counted 3 times
    q, rows_lab, src, d = plain["q"], plain["labels"], plain["plan"].src, x.shape[1]
    marked = beyond_end_rows(lab, 4)[src // d, slab.reshape(-1)[src]]
    assert 0 < int(marked.sum()) < len(marked)  # the toy stacks have both kinds of slice
    nll = -torch.log(q.gather(1, rows_lab.clamp(max=3)[:, None]).squeeze(1).clamp_min(1e-6))
    rw = torch.where(marked, 3.0, 1.0)[:, None, None] * (rows_lab != IGNORE).float()
    torch.testing.assert_close(heavy["ce"], (nll * rw).sum() / rw.sum())
    assert not torch.isclose(heavy["ce"], plain["ce"])
    with pytest.raises(DataError, match="end_slice_weight must be"):
        _cfg(tmp_path, end_slice_weight=0)
    # a few real steps with the option on, recorded beside the checkpoint
    cfg = _cfg(tmp_path, end_slice_weight=3.0)
    assert SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "run", device="cpu").run()["status"] == "done"
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["training"]["config"]["end_slice_weight"] == 3.0
    other = _cfg(tmp_path, end_slice_weight=3.0, model={**A2D, "encoder": "shared-2d"})
    with pytest.raises(DataError, match="end_slice_weight needs the acquired-2d encoder"):
        SemiTrainer(other, f"acdc:{acdc3}", tmp_path / "run3", device="cpu").run()


def test_train_only_the_through_plane_heads_keeps_the_acquired_slices_outputs(acdc3, tmp_path):
    """`train_only`: a model continued with only its through-plane heads training (dropped-slice
    self-supervision) keeps every other tensor, BatchNorm statistics included, so the acquired slices' class
    scores are the starting model's to the bit while the heads learn; a prefix naming no parameter is refused
    with the model's module names."""
    start_run = tmp_path / "start"
    SemiTrainer(_cfg(tmp_path), f"acdc:{acdc3}", start_run, device="cpu").run()
    heads = {**A2D, "tp_knots": 1, "seg_tp_knots": 1, "seg_tp_hidden": 4}
    prefixes = ["tp_head", "seg_tp_head", "seg_tp_deep"]
    cfg = _cfg(tmp_path, model=heads, init=str(start_run / "last"), drop_slices=1.0, train_only=prefixes,
               max_steps=4)
    t = SemiTrainer(cfg, f"acdc:{acdc3}", tmp_path / "heads", device="cpu")
    assert t.run()["status"] == "done"
    start = load_model(start_run / "last").generator.state_dict()
    after = load_model(tmp_path / "heads" / "last").generator.state_dict()
    for k, v in after.items():
        if any(k.startswith(p + ".") for p in prefixes):
            continue
        assert torch.equal(v, start[k]), k  # weights and BatchNorm running statistics
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in after.items() if k.startswith("seg_tp_head."))
    x, _, _ = _batch(acdc3, 1)
    a = load_model(start_run / "last").generator.eval()
    b = load_model(tmp_path / "heads" / "last").generator.eval()
    with torch.no_grad():
        assert torch.equal(a.acquired_parts(x)[1], b.acquired_parts(x)[1])
    saved = json.loads((tmp_path / "heads" / "last" / "config.json").read_text())
    assert saved["training"]["config"]["train_only"] == prefixes
    with pytest.raises(DataError, match="train_only names no parameter of the model: tp_heads") as err:
        SemiTrainer(_cfg(tmp_path, train_only=["tp_heads"]), f"acdc:{acdc3}", tmp_path / "bad", device="cpu").run()
    assert "seg_decoder" in str(err.value)
