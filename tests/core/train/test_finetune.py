"""Fine-tuning on a user's cohort: partial labels (coding, losses, Dice), label conventions and grids,
the per-subject check, the held-out split, the scaled recipe, and the CLI end to end (train, compare
before / after on the held-out subjects, the model folder with its card)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.study import Study, StudyMeta
from gemini_cmr.core.train.lr_data import (
    IGNORE,
    LRSubject,
    annotation,
    check_lr_subjects,
    choose_holdout,
    code_labels,
    detect_convention,
    labels_on_image,
    load_lr_split,
    set_code,
)
from gemini_cmr.core.train.semi import (
    SemiConfig,
    SemiTrainer,
    annotated_classes,
    finetune_config,
    partial_dice,
    seg_losses,
)
from tests.core.train.lr_toy import (
    AFFINE,
    TINY_MODEL,
    TINY_RUN,
    heart_labels,
    write_cohort,
    write_subject,
    write_tiny_model,
)


def _old_losses(q, lab, w):
    """The losses before partial labels (exact labels and IGNORE only)."""
    k = q.shape[1]
    ce = F.nll_loss(torch.log(q.clamp_min(1e-6)), lab, weight=w, ignore_index=IGNORE)
    m = (lab != IGNORE).float()[:, None]
    onehot = F.one_hot(lab.clamp(max=k - 1), k).permute(0, 3, 1, 2).float() * m
    qm = q * m
    inter = (qm * onehot).sum((0, 2, 3))[1:]
    denom = (qm.sum((0, 2, 3)) + onehot.sum((0, 2, 3)))[1:]
    return ce, 1 - ((2 * inter + 1.0) / (denom + 1.0)).mean()


def test_seg_losses_with_full_labels_are_the_usual_losses():
    torch.manual_seed(0)
    q = torch.softmax(torch.randn(3, 4, 8, 8), 1)
    lab = torch.randint(0, 4, (3, 8, 8))
    lab[0, :2] = IGNORE
    w = torch.tensor([0.3, 1.0, 1.2, 1.4])
    for got, want in zip(seg_losses(q, lab, w), _old_losses(q, lab, w)):
        torch.testing.assert_close(got, want)


def test_a_structure_that_is_not_annotated_is_never_taught_as_background():
    w = torch.ones(4)
    lab = torch.zeros(1, 4, 4, dtype=torch.int64)
    lab[0, 1:3, 1:3] = 1  # LV annotated; myocardium and RV not: the rest may be background, myo or RV
    unknown = set_code({0, 2, 3})
    lab[lab == 0] = unknown

    def q_with(rest: int) -> torch.Tensor:
        q = torch.full((1, 4, 4, 4), 0.02)
        q[0, 1, 1:3, 1:3] = 0.94
        mask = lab[0] == unknown
        q[0, rest][mask] = 0.94
        q[0, 1][mask] = 0.02
        return q / q.sum(1, keepdim=True)

    ce_bg, dice_bg = seg_losses(q_with(0), lab, w)
    ce_rv, dice_rv = seg_losses(q_with(3), lab, w)  # RV predicted where it is not annotated: no penalty
    torch.testing.assert_close(ce_bg, ce_rv)
    torch.testing.assert_close(dice_bg, dice_rv)
    assert annotated_classes(lab, 4).tolist() == [False, True, False, False]
    q = torch.full((1, 4, 4, 4), 0.02)
    q[0, 1] = 0.94  # LV predicted everywhere, also outside the LV: penalised
    assert seg_losses(q / q.sum(1, keepdim=True), lab, w)[0] > ce_bg + 1
    # the Dice of the prediction: LV known everywhere, myo and RV not annotated
    pred = q_with(3).argmax(1)[0].numpy()
    d = partial_dice(pred, lab[0].numpy())
    assert d["lv_cavity"] == 1.0 and np.isnan(d["lv_myocardium"]) and np.isnan(d["rv_cavity"])


def _study(labels, extra=None):
    img = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    return Study(image=img, affine=AFFINE, labels=labels, meta=StudyMeta(extra=dict(extra or {})))


def test_annotation_from_contours_and_label_maps():
    lab = np.stack([heart_labels(), heart_labels()])
    lab[0][lab[0] == 2] = 0  # phase 0: endocardium only
    lab[lab == 3] = 0  # no RV
    contoured = _study(lab, {"contour_slices": [[0, 1], [0, 2], [1, 1], [1, 2], [1, 3]]})
    ann = annotation(contoured)
    assert ann[0] == [None, frozenset({0, 1}), frozenset({0, 1}), None, None]
    assert ann[1][1:4] == [frozenset({0, 1, 2})] * 3 and ann[1][0] is None
    coded = code_labels(lab[0], ann[0])
    assert (coded[0] == IGNORE).all() and (coded[3] == IGNORE).all()
    assert set(np.unique(coded[1])) == {1, set_code({0, 2, 3})}
    # a label map: the structures present in the subject, every slice of a labelled phase
    ann = annotation(_study(lab))
    assert ann[1] == [frozenset({0, 1, 2})] * 5
    ann = annotation(_study(lab, {"empty_slices": "unlabelled", "structures": [1]}))
    assert ann[1][0] is None and ann[1][1] == frozenset({0, 1})
    coded = code_labels(lab[1], ann[1])
    assert set(np.unique(coded[1])) == {1, set_code({0, 2, 3})}  # myo not declared: not taught either


def test_label_convention_is_detected():
    lab = heart_labels()
    assert detect_convention(lab)[0] == "project"
    acdc = lab.copy()
    acdc[lab == 1], acdc[lab == 3] = 3, 1
    conv, why = detect_convention(acdc)
    assert conv == "acdc" and "ringed by myocardium" in why
    ukdhp = lab.copy()
    ukdhp[lab == 3] = 4
    assert detect_convention(ukdhp)[0] == "ukdhp"
    assert detect_convention(np.where(lab == 3, 0, lab))[0] == "project"  # LV + myo only
    with pytest.raises(DataError, match="fit no known convention"):
        detect_convention(np.where(lab == 3, 7, lab))


def test_labels_on_image_reorients_flipped_grids_and_refuses_others(tmp_path):
    from gemini_cmr.core.io.layouts import study_from_nifti

    image, labels = write_subject(tmp_path, "a", 0)
    study = study_from_nifti(image)
    want = labels_on_image(study, labels, "project")[0]
    assert (want == np.stack([heart_labels(shift=t) for t in range(2)])).all()
    # the same labels written with the rows flipped (as a DICOM-to-NIfTI converter may): same voxels
    from gemini_cmr.core.io.nifti import save_nifti

    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = 31
    save_nifti(tmp_path / "flipped.nii.gz", want[:, :, ::-1], AFFINE @ flip)
    got, conv, why = labels_on_image(study, tmp_path / "flipped.nii.gz", "auto")
    assert (got == want).all() and conv == "project"
    shifted = AFFINE.copy()
    shifted[0, 3] = 6.0
    save_nifti(tmp_path / "shifted.nii.gz", want, shifted)
    with pytest.raises(DataError, match="another grid than their image"):
        labels_on_image(study, tmp_path / "shifted.nii.gz", "project")
    save_nifti(tmp_path / "small.nii.gz", want[:, :, :20], AFFINE)
    with pytest.raises(DataError, match="another grid"):
        labels_on_image(study, tmp_path / "small.nii.gz", "project")


def test_check_table_reports_every_bad_subject_and_writes_nothing(tmp_path):
    root = tmp_path / "cohort"
    write_subject(root, "good", 0)
    write_subject(root, "lvonly", 1, rv=False)
    shifted = AFFINE.copy()
    shifted[1, 3] = 12.0
    write_subject(root, "offgrid", 2, label_affine=shifted)
    write_subject(root, "values", 3, values={3: 5})
    write_subject(root, "empty", 4, labelled=False)
    doc = {"subjects": [{"id": s, "image": f"{s}.nii.gz", "labels": f"{s}_gt.nii.gz", "convention": "auto"}
                        for s in ("good", "lvonly", "offgrid", "values", "empty")]}
    before = sorted(p.name for p in root.iterdir())
    rows = {r["id"]: r for r in check_lr_subjects("pairs", root / "table.json", holdout=["good"], doc=doc)}
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written
    assert rows["good"]["ok"] and rows["good"]["split"] == "val" and rows["good"]["structures"] == "LV, Myo, RV"
    assert rows["lvonly"]["ok"] and rows["lvonly"]["missing"] == ["RV"] and rows["lvonly"]["structures"] == "LV, Myo"
    assert "phases 0, 1" in rows["good"]["labelled"] and "32 x 32" in rows["good"]["geometry"]
    assert not rows["offgrid"]["ok"] and "another grid" in rows["offgrid"]["problem"]
    assert not rows["values"]["ok"] and "[1, 2, 5]" in rows["values"]["problem"]
    assert not rows["empty"]["ok"] and rows["empty"]["problem"] == "no labelled slice"
    for r in rows.values():  # one line each
        assert "\n" not in r["problem"]


def test_held_out_split_is_stratified_and_needs_two_subjects():
    subs = [LRSubject(f"p{i:02d}", "train", [], None, group="ABCDE"[i // 4]) for i in range(20)]
    held = choose_holdout(subs)
    assert len(held) == 4 and held == choose_holdout(subs)  # 20%, reproducible
    assert len({s.group for s in subs if s.sid in held}) == 4  # 4 of the 5 groups, one each
    held = choose_holdout(subs, n=5)
    assert sorted(s.group for s in subs if s.sid in held) == list("ABCDE")
    with pytest.raises(DataError, match="at least 2"):
        choose_holdout(subs[:1])
    with pytest.raises(DataError, match="at least 1 trains"):
        choose_holdout(subs[:3], n=3)


def test_finetune_config_scales_the_recipe(tmp_path):
    init = write_tiny_model(tmp_path / "init", roi_mm=150)
    cfg = finetune_config(4, init, ["s3"])
    assert cfg["init"] == str(init) and cfg["model"]["widths"] == [4, 8, 8] and cfg["lr"] == pytest.approx(2e-4)
    assert cfg["roi_mm"] == 150 and cfg["batch_size"] == 4 and cfg["max_steps"] == 50 and cfg["holdout"] == ["s3"]
    big = finetune_config(160, init)
    assert big["batch_size"] == 8 and big["max_steps"] == 500 and big["val_every"] == 2
    scratch = finetune_config(160)
    assert scratch["lr"] == pytest.approx(2e-3) and scratch["max_steps"] == 1200 and "init" not in scratch
    SemiConfig.from_dict(cfg)  # a valid training config


def test_finetuning_keeps_the_starting_models_augmentation(tmp_path):
    """A model whose training config records its augmentation is fine-tuned with that augmentation (the bundled
    ACDC model's noise and transposition included); one without keeps the recipe's."""
    from gemini_cmr.core.models.store import read_config
    from gemini_cmr.core.resources import acdc_model_path
    from gemini_cmr.core.train.semi import REAL_DATA_RECIPE

    bundled = read_config(acdc_model_path() / "config.json")["training"]["config"]["augment"]
    cfg = finetune_config(4, acdc_model_path())
    assert cfg["augment"] == bundled and cfg["augment"]["rician"] > 0 and cfg["augment"]["transpose"] > 0
    SemiConfig.from_dict(cfg)
    plain = finetune_config(4, write_tiny_model(tmp_path / "init"))
    assert plain["augment"] == REAL_DATA_RECIPE["augment"] and finetune_config(4)["augment"] == REAL_DATA_RECIPE["augment"]
    init = write_tiny_model(tmp_path / "init2")
    conf = json.loads((init / "config.json").read_text())
    conf["training"]["config"] = {"augment": {**REAL_DATA_RECIPE["augment"], "gamma": [0.5, 2.0]}}
    (init / "config.json").write_text(json.dumps(conf))
    assert finetune_config(4, init)["augment"]["gamma"] == [0.5, 2.0]


def test_held_out_subjects_never_choose_the_checkpoint(tmp_path):
    manifest = write_cohort(tmp_path / "cohort", n=3, rv=False)
    init = write_tiny_model(tmp_path / "init")
    cfg = SemiConfig.from_dict({**finetune_config(4, init, ["s2"]), **TINY_RUN, "max_steps": 4, "epochs": 4,
                                "val_every": 1})
    events = []
    SemiTrainer(cfg, f"pairs:{manifest}", tmp_path / "run", "cpu", events.append).run()
    val = [e for e in events if e["event"] == "val"]
    assert len(val) == 2 and not any(e["best"] for e in val)
    assert np.isnan(val[-1]["rv_cavity"]) and 0 <= val[-1]["lv_cavity"] <= 1  # no RV in this cohort
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["training"]
    assert best["step"] == 4 and "chose nothing" in best["note"]
    samples = load_lr_split("pairs", manifest, "val", holdout=["s2"])
    assert {s.subject for s in samples} == {"s2"}
    with pytest.raises(DataError, match="not in the data"):
        load_lr_split("pairs", manifest, "val", holdout=["s9"])


def test_finetune_from_the_command_line(tmp_path, capsys):
    from gemini_cmr.cli.main import main

    manifest = write_cohort(tmp_path / "cohort", n=3, rv=False)
    init = write_tiny_model(tmp_path / "init")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY_RUN, "model": TINY_MODEL, "lr": 1e-3}))
    run = tmp_path / "run"
    code = main(["train", "gemini", "--data", f"pairs:{manifest}", "--init", str(init), "--holdout", "s1",
                 "--out", str(run), "--device", "cpu", "--config", str(config), "--max-steps", "2"])
    assert code == 0
    err = capsys.readouterr().err
    assert "held out (never choose the checkpoint): s1" in err and "| LV cavity Dice" in err
    figures = json.loads((run / "finetune.json").read_text())
    assert figures["held_out"] == ["s1"] and set(figures["rows"]) == {"before", "after"}
    for which in ("before", "after"):
        s = figures["summary"][which]
        assert 0 <= s["dice_lv_cavity"]["mean"] <= 1 and s["dice_rv_cavity"]["n"] == 0
        assert s["err_rv_edv_ml"]["n"] == 0  # no RV annotated: no RV figures
        row = figures["rows"][which][0]
        assert row["manual_lv_ef_pct"] > 10 and row["manual_rv_edv_ml"] is None
    model = run / "model"
    card = (model / "MODEL_CARD.md").read_text()
    assert "held out (never used to choose the checkpoint): s1" in card and "| LV cavity Dice" in card
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["training"]["init"] == str(init) and cfg["evaluation"]["after"]["n"] == 1
    assert "test terms" in cfg["licence"] and (model / "LICENCE.md").is_file()
    assert not any(p.name.endswith((".partial", ".old")) for p in run.iterdir())
    from gemini_cmr.core.train.runs import GEMINI, trained_model_path

    assert trained_model_path(GEMINI, run) == model
    from gemini_cmr.core.predict import Predictor

    assert Predictor.load(model, device="cpu").model_id.startswith(figures["models"]["after"]["model_id"])
    # bad input: one line, exit 2
    assert main(["train", "gemini", "--data", f"pairs:{manifest}", "--init", str(init), "--holdout", "s1,s0,s2",
                 "--out", str(tmp_path / "run2"), "--device", "cpu"]) == 2
    assert "none left to train" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


def test_dicom_series_with_label_nifti_through_a_subject_table(tmp_path):
    """A DICOM cine + a label NIfTI on its grid (as written, and with the rows flipped as converters may),
    and a label NIfTI on another grid: listed in a pairs table, checked, and read into training samples."""
    from gemini_cmr.core.io.nifti import save_nifti
    from tests.core.io.dicom_factory import CineSpec, expected_ras_affine, make_cine, write

    spec = CineSpec(n_slices=5, n_phases=2, rows=32, cols=32, spacing=(1.5, 1.5))
    write(tmp_path / "dcm", make_cine(spec))
    affine = expected_ras_affine(spec)
    labels = np.stack([heart_labels(shift=t, rv=False) for t in range(2)])
    save_nifti(tmp_path / "labels.nii.gz", labels, affine)
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = 31
    save_nifti(tmp_path / "flipped.nii.gz", labels[:, :, ::-1], affine @ flip)
    other = affine.copy()
    other[:3, 3] += 5.0
    save_nifti(tmp_path / "other.nii.gz", labels, other)
    doc = {"subjects": [{"id": name, "image": "dcm", "labels": f"{name}.nii.gz", "convention": "auto"}
                        for name in ("labels", "flipped", "other")]}
    (tmp_path / "table.json").write_text(json.dumps(doc))
    rows = {r["id"]: r for r in check_lr_subjects("pairs", tmp_path / "table.json")}
    assert rows["labels"]["ok"] and rows["flipped"]["ok"] and rows["labels"]["missing"] == ["RV"]
    assert not rows["other"]["ok"] and "another grid" in rows["other"]["problem"]
    assert rows["labels"]["geometry"].startswith("5 x 32 x 32, 1.50 x 1.50 x 8.0 mm")
    doc["subjects"] = doc["subjects"][:2]
    (tmp_path / "table.json").write_text(json.dumps(doc))
    a, b = (load_lr_split("pairs", tmp_path / "table.json", "train", holdout=[h]) for h in ("flipped", "labels"))
    assert [s.subject for s in a] == ["labels"] * 2 and [s.subject for s in b] == ["flipped"] * 2
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.labels, y.labels)
        assert (x.labels == set_code({0, 3})).any() and not (x.labels == 3).any()


def test_uk_biobank_layout_source(tmp_path):
    from gemini_cmr.core.io.nifti import save_nifti
    from gemini_cmr.core.train.lr_data import lr_subjects, parse_source

    for i in range(3):
        d = tmp_path / "ukbb" / f"100{i}"
        d.mkdir(parents=True)
        image, labels = write_subject(tmp_path / "tmp", f"x{i}", i)
        import nibabel as nib

        save_nifti(d / "sa.nii.gz", np.asarray(nib.load(image).dataobj).transpose(3, 2, 1, 0), AFFINE)
        save_nifti(d / ("label_sa.nii.gz" if i else "seg_sa.nii.gz"),
                   np.stack([heart_labels(shift=t) for t in range(2)]), AFFINE)
    assert parse_source("ukbb:/x")[0] == "ukbb"
    subs = lr_subjects("ukbb", tmp_path / "ukbb")
    assert [(s.sid, s.split) for s in subs] == [("1000", "val"), ("1001", "train"), ("1002", "train")]
    rows = check_lr_subjects("ukbb", tmp_path / "ukbb")
    assert all(r["ok"] and r["structures"] == "LV, Myo, RV" and r["convention"] == "ukbb" for r in rows)
    assert len(load_lr_split("ukbb", tmp_path / "ukbb", "train")) == 4
    with pytest.raises(DataError, match="UK Biobank"):
        lr_subjects("ukbb", tmp_path / "tmp")
