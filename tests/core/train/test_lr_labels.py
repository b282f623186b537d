"""LR-labelled cohorts (ACDC layout), slab losses, semi-supervised training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.io.layouts import acdc_split, acdc_subjects
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
from gemini_cmr.core.train.lr_data import IGNORE, LRItems, load_acdc_split, parse_source
from gemini_cmr.core.train.semi import SemiConfig, SemiTrainer, acquired_losses, slab_losses

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
    from gemini_cmr.core.train.data import Augment

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
    _, a_seg, _, _ = g.acquired_parts(x)
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
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.predict import Predictor

    p = Predictor.load(tmp_path / "run" / "best", device="cpu", precision="float32")
    study = load_acdc(acdc_root / "patient005")
    pred = p.predict(study, phases=[0])
    assert pred.sr_labels.shape == (1, 20, 29, 29) and p.loaded.config["training"]["data_kind"] == "lr-labels"
    with pytest.raises(DataError, match="acdc:PATH"):
        SemiTrainer(cfg, str(acdc_root), tmp_path / "run2", device="cpu").run()


def _mnms_subject(folder, code: str, seed: int):
    """An M&Ms-style subject: 4D cine (T=6) and 4D labels (M&Ms values) at ED (0) and ES (3)."""
    rng = np.random.default_rng(seed)
    d = folder / code
    d.mkdir(parents=True)
    img = rng.random((24, 24, 5, 6)).astype(np.float32) * 100  # NIfTI order x, y, z, t
    lab = np.zeros((24, 24, 5, 6), np.uint8)
    for t, r in ((0, 5), (3, 3)):  # LV larger at ED
        lab[12 - r - 2:12 + r + 2, 12 - r - 2:12 + r + 2, 1:4, t] = 2
        lab[12 - r:12 + r, 12 - r:12 + r, 1:4, t] = 1
        lab[2:6, 4:20, 1:5, t] = 3
    aff = np.diag([1.5, 1.5, 8.0, 1.0])
    import nibabel as nib

    nib.save(nib.Nifti1Image(img, aff), d / f"{code}_sa.nii.gz")
    nib.save(nib.Nifti1Image(lab, aff), d / f"{code}_sa_gt.nii.gz")
    return d


def test_mnms_and_manifest_sources(tmp_path):
    from gemini_cmr.core.train.lr_data import load_lr_split, lr_subjects

    root = tmp_path / "mnms"
    for i in range(3):
        _mnms_subject(root / "Training" / "Labeled", f"A{i}B", i)
    _mnms_subject(root / "Validation", "V0X", 9)
    assert parse_source("mnms:/x") == ("mnms", Path("/x")) and parse_source("pairs:m.json")[0] == "pairs"
    subs = lr_subjects("mnms", root)
    assert {s.sid: s.split for s in subs} == {"A0B": "train", "A1B": "train", "A2B": "train", "V0X": "val"}
    train = load_lr_split("mnms", root, "train", cache_dir=tmp_path / "cache")
    assert len(train) == 6  # 3 subjects x ED, ES
    ed = [s for s in train if s.is_ed]
    assert len(ed) == 3 and all(s.phase == 0 for s in ed) and all(s.phase == 3 for s in train if s.is_es)
    assert set(np.unique(train[0].labels)) == {0, 1, 2, 3}
    assert len(load_lr_split("mnms", root, "train", cache_dir=tmp_path / "cache")) == 6  # from the cache

    # the same files through a pairs manifest, with an explicit split and the ACDC convention refused
    m = tmp_path / "pairs.json"
    entries = [{"id": f"s{i}", "image": f"mnms/Training/Labeled/A{i}B/A{i}B_sa.nii.gz",
                "labels": f"mnms/Training/Labeled/A{i}B/A{i}B_sa_gt.nii.gz", "convention": "mnms",
                "split": "val" if i == 2 else "train"} for i in range(3)]
    import json

    m.write_text(json.dumps({"subjects": entries}))
    assert [s.split for s in lr_subjects("pairs", m)] == ["train", "train", "val"]
    val = load_lr_split("pairs", m, "val")
    assert len(val) == 2 and {s.subject for s in val} == {"s2"}
    entries[0]["convention"] = "acdc"  # values 1/2/3 exist in ACDC too: accepted but remapped (LV <-> RV)
    m.write_text(json.dumps({"subjects": entries}))
    got = load_lr_split("pairs", m, "train")
    assert (got[0].labels == 3).sum() > 0
    entries[1]["labels"] = "missing.nii.gz"
    m.write_text(json.dumps({"subjects": entries}))
    with pytest.raises(DataError, match="s1: file not found"):
        lr_subjects("pairs", m)
    m.write_text("{}")
    with pytest.raises(DataError, match="manifest"):
        lr_subjects("pairs", m)
    with pytest.raises(DataError, match="M&Ms"):
        lr_subjects("mnms", tmp_path / "cache")


def test_incomplete_acdc_patients_are_refused_by_name_before_training(tmp_path):
    """A label file without its image frame, an ED/ES frame without labels, labels on another grid: the study
    still loads (with warnings, for viewing), but training data refuse it in one line naming the patient, and the
    wizard's check lists the problem."""
    from gemini_cmr.cli.main import main
    from gemini_cmr.core.train.lr_data import check_lr_subjects, load_lr_split

    root = tmp_path / "training"
    for n, seed in ((1, 0), (2, 1), (3, 2), (4, 3)):
        _acdc_patient(root, n, seed)
    assert len(load_lr_split("acdc", root, "train")) == 8  # 4 patients x ED/ES, all complete
    (root / "patient002" / "patient002_frame05.nii.gz").unlink()  # ES image missing, its labels left
    (root / "patient003" / "patient003_frame05_gt.nii.gz").unlink()  # ES labels missing
    lab = np.zeros((5, 24, 24), np.uint8)
    lab[1:4, 8:14, 8:14] = 3
    moved = AFFINE.copy()
    moved[0, 3] += 5.0
    save_nifti(root / "patient004" / "patient004_frame01_gt.nii.gz", lab, moved)  # labels on another grid
    rows = {r["id"]: r for r in check_lr_subjects("acdc", root)}
    assert rows["patient001"]["ok"] and not rows["patient001"]["problem"]
    assert "patient002_frame05_gt.nii.gz: no image of frame 5" in rows["patient002"]["problem"]
    assert rows["patient003"]["problem"] == "Info.cfg ES frame 5: no labels (no patient003_frame05_gt.nii.gz)"
    assert "another grid" in rows["patient004"]["problem"]
    with pytest.raises(DataError, match=r"subject patient002: patient002_frame05_gt.nii.gz: no image of frame 5"):
        load_lr_split("acdc", root, "train")
    shutil.rmtree(root / "patient002")
    with pytest.raises(DataError, match=r"subject patient003: Info.cfg ES frame 5: no labels"):
        load_lr_split("acdc", root, "train")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"depth": 24, "widths": [4, 8, 8], "encoder": "acquired-2d"}, "crop": 16,
                               "max_steps": 1, "amp": "off", "seg_target": "acquired"}))
    out = tmp_path / "run"
    assert main(["train", "gemini", "--data", f"acdc:{root}", "--config", str(cfg), "--out", str(out)]) == 2
    # refused while the data load, before a step: only the complete patients' data cache is there
    assert sorted(q.name for q in out.iterdir()) == ["cache"]
