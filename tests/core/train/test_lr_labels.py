"""Issue 14: LR-labelled cohorts (ACDC layout), slab losses, semi-supervised training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import DataError
from core.io.nifti import save_nifti
from core.models.gemini import GeminiConfig, GeminiGenerator
from core.train.lr_data import IGNORE, LRItems, acdc_split, acdc_subjects, load_acdc_split, parse_source
from core.train.semi import SemiConfig, SemiTrainer, acquired_losses, slab_losses

AFFINE = np.diag([1.5, 1.5, 8.0, 1.0])


def _acdc_patient(root, n: int, seed: int):
    rng = np.random.default_rng(seed)
    folder = root / f"patient{n:03d}"
    folder.mkdir(parents=True)
    for frame in (1, 5):
        img = rng.random((5, 24, 24)).astype(np.float32) * 100
        lab = np.zeros((5, 24, 24), np.uint8)
        lab[1:4, 6:16, 6:16] = 2  # ACDC myocardium
        lab[1:4, 8:14, 8:14] = 3  # ACDC LV -> project 1
        lab[1:5, 7:15, 17:22] = 1  # ACDC RV -> project 3
        img[lab > 0] += 80
        save_nifti(folder / f"patient{n:03d}_frame{frame:02d}.nii.gz", img, AFFINE)
        save_nifti(folder / f"patient{n:03d}_frame{frame:02d}_gt.nii.gz", lab, AFFINE)
    (folder / "Info.cfg").write_text("ED: 1\nES: 5\nGroup: NOR\nHeight: 170\nNbFrame: 10\nWeight: 70\n")


@pytest.fixture(scope="module")
def acdc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc") / "training"
    for n, seed in ((1, 0), (2, 1), (5, 2)):
        _acdc_patient(root, n, seed)
    return root


def test_split_rule_and_source(acdc_root):
    assert acdc_split("patient005") == "val" and acdc_split("patient100") == "val"
    assert acdc_split("patient001") == "train"
    assert [(s, sp) for s, _, sp in acdc_subjects(acdc_root)] == [
        ("patient001", "train"), ("patient002", "train"), ("patient005", "val")]
    assert parse_source("acdc:/x/y") == ("acdc", __import__("pathlib").Path("/x/y"))
    assert parse_source("data/phantoms") is None
    with pytest.raises(DataError, match="ACDC folder not found"):
        acdc_subjects(acdc_root / "nope")


def test_samples_labels_remapped_and_cached(acdc_root, tmp_path):
    s1 = load_acdc_split(acdc_root, "train", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    s2 = load_acdc_split(acdc_root, "train", cache_dir=tmp_path)  # from the cache
    assert [(s.subject, s.phase, s.is_ed, s.is_es) for s in s1] == [
        ("patient001", 0, True, False), ("patient001", 1, False, True),
        ("patient002", 0, True, False), ("patient002", 1, False, True)]
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a.planes, b.planes)
        np.testing.assert_array_equal(a.slice_index, b.slice_index)
    s = s1[0]
    assert s.planes.shape[0] == 5 and s.labels.shape == s.planes.shape
    assert len(s.slice_index) == 20  # 5 x 8 mm on 2 mm SR slices
    assert np.all(np.diff(s.slice_index) >= 0) and set(s.slice_index) == set(range(5))
    # ACDC LV (3) is project 1 and lies inside the myocardium (2); ACDC RV (1) -> project 3
    ys, xs = np.nonzero(s.labels[2] == 1)
    assert 8 * 1.5 <= ys.mean() * 1.25 <= 14 * 1.5 and (s.labels[2] == 3).any()


def test_items_repeat_each_acquired_slice_and_align_labels(acdc_root):
    samples = load_acdc_split(acdc_root, "train")
    items = LRItems(samples, depth=24, multiple=4)
    from core.train.data import Augment

    x, lab, slab = items.get(0, np.random.default_rng(0), Augment(crop=16, noise=0.05))
    assert x.shape == (24, 16, 16) and lab.shape == (24, 16, 16) and slab.shape == (24,)
    assert list(slab[:2]) == [-1, -1] and list(slab[-2:]) == [-1, -1]  # 20 SR slices centred in 24
    assert np.all(x[slab < 0] == 0)
    for j in range(5):
        rows = np.nonzero(slab == j)[0]
        assert len(rows) == 4 and all(np.array_equal(x[r], x[rows[0]]) for r in rows)  # noise per slice
    assert np.all(lab[5:] == IGNORE) and np.all(lab[:5] != IGNORE)


def test_acquired_losses_match_the_sr_level_slab_losses(acdc_root):
    torch.manual_seed(0)
    samples = load_acdc_split(acdc_root, "train")
    items = LRItems(samples, depth=24, multiple=4)
    batch = [items.get(i, None, None, crop=16) for i in range(3)]
    x, lab, slab = (torch.from_numpy(np.stack(v)) for v in zip(*batch))
    g = GeminiGenerator(GeminiConfig(depth=24, widths=(4, 8, 8), encoder="acquired-2d", input_to_heads=True))
    w = torch.tensor([0.2, 1.0, 1.2, 1.5])
    a = acquired_losses(g, x, lab, slab, w)
    sr, logits = g(x)
    b = slab_losses(sr, logits, x, lab, slab, w)
    for k in ("ce", "dice", "degrade"):
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    (a["ce"] + a["dice"] + a["degrade"]).backward()
    assert g.inc[0].weight.grad.abs().sum() > 0


def test_acquired_seg_target_uses_each_acquired_slice_own_logits(acdc_root):
    torch.manual_seed(0)
    samples = load_acdc_split(acdc_root, "train")
    items = LRItems(samples, depth=24, multiple=4)
    batch = [items.get(i, None, None, crop=16) for i in range(2)]
    x, lab, slab = (torch.from_numpy(np.stack(v)) for v in zip(*batch))
    g = GeminiGenerator(GeminiConfig(depth=24, widths=(4, 8, 8), encoder="acquired-2d", input_to_heads=True))
    w = torch.ones(4)
    a = acquired_losses(g, x, lab, slab, w, seg_target="acquired")
    _, a_seg, _ = g.acquired_parts(x)
    probs = torch.softmax(a_seg, 1)
    torch.testing.assert_close(a["q"], probs)
    ce = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-6)), a["labels"], weight=w, ignore_index=IGNORE)
    torch.testing.assert_close(a["ce"], ce)
    s = acquired_losses(g, x, lab, slab, w, seg_target="slab")
    assert not torch.allclose(s["ce"], a["ce"])  # slab averaging mixes the neighbours in
    torch.testing.assert_close(s["degrade"], a["degrade"])  # the image term is the same either way
    with pytest.raises(DataError, match="seg_target"):
        acquired_losses(g, x, lab, slab, w, seg_target="centre")


def test_semi_training_writes_a_loadable_model(acdc_root, tmp_path):
    cfg = SemiConfig.from_dict({
        "model": {"depth": 24, "widths": [4, 8, 8], "encoder": "acquired-2d", "input_to_heads": True},
        "omega_gan": 0.0, "crop": 16, "batch_size": 2, "epochs": 1, "amp": "off", "num_threads": 1,
        "val_crop": 0, "lr": 3e-3})
    events = []
    summary = SemiTrainer(cfg, f"acdc:{acdc_root}", tmp_path / "run", device="cpu",
                          callback=events.append).run()
    assert summary["status"] == "done" and summary["step"] == 2
    val = [e for e in events if e["event"] == "val"]
    assert val and 0 <= val[-1]["ed_lv_cavity"] <= 1 and val[-1]["n"] == 2
    from core.io.layouts import load_acdc
    from core.predict import Predictor

    p = Predictor.load(tmp_path / "run" / "best", device="cpu", precision="float32")
    study = load_acdc(acdc_root / "patient005")
    pred = p.predict(study, phases=[0])
    assert pred.sr_labels.shape == (1, 20, 29, 29) and p.loaded.config["training"]["data_kind"] == "lr-labels"
    with pytest.raises(DataError, match="acdc:PATH"):
        SemiTrainer(cfg, str(acdc_root), tmp_path / "run2", device="cpu").run()
