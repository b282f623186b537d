"""V-AMA training: data checks, loss decrease, checkpoints/resume, adapter round trip, adaptation effect."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from gemini_cmr.core.errors import Cancelled, DataError, ModelError
from gemini_cmr.core.geometry import rotation_matrix
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.models.vama import VAMA, Adapter, percentile_scale, save_adapter
from gemini_cmr.core.study import Study
from gemini_cmr.core.train.vama import MIN_SLICES, TrainSettings, VamaData, VamaTrainer, train_vama
from gemini_cmr.core.vama.domains import read_domain
from tests.core.vama.conftest import make_anatomy, make_study, random_affine, render, write_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"base_channels": 4, "depth": 2, "latent_channels": 4, "disc_channels": 8}
QUICK = TrainSettings(epochs=1, max_steps=3, steps_per_epoch=3, batch_size=4, crop=24, device="cpu", measure=False)



def test_reads_both_layouts(domains):
    src_dir, tgt_dir = domains
    src, tgt = read_domain(src_dir, "source"), read_domain(tgt_dir, "target")
    assert [s.name for s in src] == [f"source-{i:02d}" for i in range(4)]
    assert [t.name for t in tgt] == [f"sub-{i:03d}" for i in range(4)]
    assert all(s.labels is not None and s.labels.shape == s.image.shape[1:] for s in src + tgt)
    assert all(s.image.shape[0] == 2 for s in src)


def test_a_few_steps_reduce_the_loss(domains):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = VamaData(read_domain(domains[0], "source"), read_domain(domains[1], "target"))
    assert all(a.rms_mm < 2.0 for a in data.alignments)
    trainer = VamaTrainer(VAMA(SMALL), "cpu")
    batch = data.pair_batch(4, 24, rng)
    t_losses = [trainer.step_target(*batch) for _ in range(30)]
    s_losses = [trainer.step_source(*batch) for _ in range(30)]
    for losses in (t_losses, s_losses):
        first = {k: np.mean([v[k] for v in losses[:3]]) for k in losses[0]}
        last = {k: np.mean([v[k] for v in losses[-3:]]) for k in losses[0]}
        assert last["total"] < 0.85 * first["total"], (first, last)
        # the generators start as the identity, so the pixel terms fall more slowly but steadily
        assert last["mse"] + last["l1"] < 0.99 * (first["mse"] + first["l1"]), (first, last)
        assert all(np.isfinite(v["total"]) for v in losses)


def test_run_writes_adapter_checkpoints_and_events(domains, tmp_path):
    events = []
    out = train_vama(*domains, tmp_path / "run", settings=QUICK, model_cfg=SMALL, progress=events.append)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "vama" and cfg["version"] == 1 and cfg["model"]["depth"] == 2
    assert "gemini_model_id" in cfg and cfg["training"]["seed"] == 0
    assert cfg["normalisation"]["target_scale"] > 0 and len(cfg["alignment"]) == 4
    assert (out / "adapter.safetensors").is_file()
    assert (out / "checkpoints" / "last.safetensors").is_file() and (out / "checkpoints" / "last.json").is_file()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "data" and kinds[-1] == "done" and "epoch" in kinds and "checkpoint" in kinds
    assert [e["stage"] for e in events if e["event"] == "epoch"] == ["target", "source"]
    json.dumps(events)  # JSON-ready
    with pytest.raises(DataError, match="--resume"):
        train_vama(*domains, out, settings=QUICK, model_cfg=SMALL)


def test_adapter_checkpoint_round_trip(domains, tmp_path):
    out = train_vama(*domains, tmp_path / "run", settings=QUICK, model_cfg=SMALL)
    a = Adapter.load(out)
    img, lab, aff = make_study(np.random.default_rng(7), "source")
    study = Study(img, aff, labels=lab)
    r1 = a.adapt(study)
    b = Adapter.load(out)
    r2 = b.adapt(study)
    assert np.array_equal(r1.image, r2.image) and r1.image.shape == img.shape and r1.image.dtype == np.float32
    assert np.array_equal(r1.affine, study.affine) and np.array_equal(r1.labels, lab)
    assert a.adapter_id == b.adapter_id and len(a.adapter_id) == 64
    assert r1.meta.extra["vama_adapter_id"] == a.adapter_id
    # re-saved elsewhere (folder) and as NAME.safetensors + NAME.json: identical outputs
    save_adapter(tmp_path / "copy", a.model, a.config)
    c = Adapter.load(tmp_path / "copy")
    assert np.array_equal(c.adapt(study).image, r1.image)
    shutil.copy(out / "adapter.safetensors", tmp_path / "ad.safetensors")
    shutil.copy(out / "config.json", tmp_path / "ad.json")
    assert np.array_equal(Adapter.load(tmp_path / "ad.safetensors").adapt(study).image, r1.image)
    # outputs stay in the study's units: scaling the input scales the output (Gemini-GAN is scale-free)
    np.testing.assert_allclose(a.adapt(Study(img * 10, aff)).image, r1.image * 10, rtol=1e-4, atol=1e-3)
    a.config["normalisation"]["output_units"] = "target"
    in_target_units = a.adapt(study).image
    np.testing.assert_allclose(in_target_units * percentile_scale(img), r1.image * a.target_scale, rtol=1e-4,
                               atol=1e-2)
    a.config["normalisation"]["output_units"] = "source"
    seen = []
    a.adapt(study, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0
    with pytest.raises(Cancelled):
        a.adapt(study, cancel=lambda: True)


def test_adapter_loading_refuses_bad_files(domains, tmp_path):
    with pytest.raises(ModelError, match="pickle"):
        Adapter.load(tmp_path / "adapter.pt")
    with pytest.raises(ModelError, match="not found"):
        Adapter.load(tmp_path / "nothing")
    out = train_vama(*domains, tmp_path / "run", settings=QUICK, model_cfg=SMALL)
    cfg = json.loads((out / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(out / "adapter.safetensors", bad / "adapter.safetensors")
    (bad / "config.json").write_text(json.dumps(cfg | {"kind": "gemini-gan"}))
    with pytest.raises(ModelError, match="kind"):
        Adapter.load(bad)
    (bad / "config.json").write_text(json.dumps(cfg | {"model": cfg["model"] | {"base_channels": 6}}))
    with pytest.raises(ModelError, match="shape mismatch|do not match"):
        Adapter.load(bad)
    (bad / "config.json").write_text(json.dumps(cfg | {"model": cfg["model"] | {"depth": "deep"}}))
    with pytest.raises(ModelError, match="invalid model"):
        Adapter.load(bad)
    (bad / "config.json").write_text(json.dumps(cfg | {"version": 7}))
    with pytest.raises(ModelError, match="version"):
        Adapter.load(bad)
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "adapter.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ModelError):
        Adapter.load(bad)


def test_resume_continues_to_the_same_weights(domains, tmp_path):
    settings = TrainSettings(epochs=2, steps_per_epoch=2, batch_size=4, crop=24, device="cpu")
    full = train_vama(*domains, tmp_path / "full", settings=settings, model_cfg=SMALL)
    calls = {"n": 0}

    def cancel_after_3():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        train_vama(*domains, tmp_path / "part", settings=settings, model_cfg=SMALL, cancel=cancel_after_3)
    assert json.loads((tmp_path / "part" / "checkpoints" / "last.json").read_text())["step"] == 3
    events = []
    train_vama(*domains, tmp_path / "part", settings=settings, model_cfg=SMALL, resume=True,
               progress=events.append)
    assert events[1]["event"] == "resume" or any(e["event"] == "resume" for e in events)
    a, b = Adapter.load(full), Adapter.load(tmp_path / "part")
    assert a.adapter_id == b.adapter_id


def _adaptation_ratios(domains, tmp_path, steps):
    """Train `steps` per stage (default networks and loss weights); on new source studies return the
    ratios after/before of (a) the 1-D Wasserstein distance between the intensity histograms of the study
    and of target-domain studies and (b) the mean absolute error to the same anatomy rendered in the
    target domain, all in normalised units (study / its 99.5th percentile; adapted / the same scale)."""
    torch.manual_seed(0)
    settings = TrainSettings(epochs=1, max_steps=steps, steps_per_epoch=steps, batch_size=8, crop=32,
                             device="cpu")
    a = Adapter.load(train_vama(*domains, tmp_path / "run", settings=settings))
    rng = np.random.default_rng(42)
    target = np.concatenate([(lambda im: (im / percentile_scale(im)).ravel())(make_study(rng, "target")[0])
                             for _ in range(3)])
    ratios = []
    for _ in range(2):
        labels = make_anatomy(rng)
        source, ideal = render(labels, rng, "source"), render(labels, rng, "target")
        adapted = a.adapt(Study(source, random_affine(rng))).image
        n_src, n_ideal = source / percentile_scale(source), ideal / percentile_scale(ideal)
        n_out = adapted / percentile_scale(source)  # the output, in the study's units, normalised alike
        w1 = wasserstein_distance(n_out.ravel(), target) / wasserstein_distance(n_src.ravel(), target)
        mae = np.abs(n_out - n_ideal).mean() / np.abs(n_src - n_ideal).mean()
        ratios.append((w1, mae))
    return np.array(ratios)


def test_adaptation_moves_the_intensity_histogram_toward_the_target(domains, tmp_path):
    """A briefly trained adapter (60 steps per stage) already moves source studies toward the target."""
    ratios = _adaptation_ratios(domains, tmp_path, 60)
    assert np.all(ratios < 0.8), ratios


@pytest.mark.slow
def test_adaptation_after_longer_training_nearly_closes_the_gap(domains, tmp_path):
    ratios = _adaptation_ratios(domains, tmp_path, 150)
    assert np.all(ratios[:, 0] < 0.15) and np.all(ratios[:, 1] < 0.3), ratios


# --- bad input ---------------------------------------------------------------------------------------
def test_empty_missing_and_too_small_folders(tmp_path, domains):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no LR studies"):
        train_vama(tmp_path / "empty", domains[1], tmp_path / "run")
    with pytest.raises(DataError, match="missing.*not found"):
        train_vama(tmp_path / "missing", domains[1], tmp_path / "run")
    few = write_folder(tmp_path / "few", "source", 1, seed=3)  # 2 phases x 6 slices
    with pytest.raises(DataError, match=f"few.*12 source slices.*at least {MIN_SLICES}"):
        train_vama(few, domains[1], tmp_path / "run")
    with pytest.raises(DataError, match="same folder"):
        train_vama(domains[1], domains[1], tmp_path / "run")
    junk = tmp_path / "junk"
    (junk / "notes").mkdir(parents=True)
    (junk / "notes" / "readme.txt").write_text("not a study")
    (junk / "scan.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="junk.*no readable short-axis cine"):
        train_vama(junk, domains[1], tmp_path / "run")


def test_mixed_orientations_are_accepted(tmp_path, domains):
    """Every stack is used in its own slice frame: an axial, a flipped and an oblique stack train together."""
    src = tmp_path / "src"
    shutil.copytree(domains[0], src)
    img, lab, aff = make_study(np.random.default_rng(9), "source")
    axial = aff.copy()
    axial[:3, :3] = rotation_matrix([1, 0, 0], 90) @ aff[:3, :3]  # slices along another axis
    save_nifti(src / "odd-one.nii.gz", img, axial)
    save_nifti(src / "odd-one_labels.nii.gz", lab, axial)
    flipped = aff.copy()
    flipped[:3, 0] *= -1  # mirrored in-plane axis
    save_nifti(src / "flipped.nii.gz", img[..., ::-1], flipped)
    save_nifti(src / "flipped_labels.nii.gz", lab[..., ::-1], flipped)
    studies = read_domain(src, "source")
    assert all(np.allclose(s.grid.affine[:3, :3], np.diag(s.grid.spacing)) for s in studies)
    out = train_vama(src, domains[1], tmp_path / "run", settings=QUICK, model_cfg=SMALL)
    rows = {r["source"]: r for r in json.loads((out / "config.json").read_text())["alignment"]}
    assert rows["odd-one"]["rms_mm"] < 3.0 and rows["flipped"]["rms_mm"] < 3.0


def test_mismatched_labels_and_manifest_entries_are_named(tmp_path, domains):
    src = tmp_path / "src"
    shutil.copytree(domains[0], src)
    save_nifti(src / "source-00_labels.nii.gz", np.zeros((2, 5, 40, 40), np.uint8), random_affine(
        np.random.default_rng(0)))
    with pytest.raises(DataError, match="source-00.nii.gz.*does not match"):
        train_vama(src, domains[1], tmp_path / "run")
    tgt = tmp_path / "tgt"
    shutil.copytree(domains[1], tgt)
    (tgt / "sub-002" / "lr_image.nii.gz").unlink()
    with pytest.raises(DataError, match="sub-002"):
        train_vama(domains[0], tgt, tmp_path / "run")


def test_unlabelled_studies_get_landmarks_from_gemini_segmentation(tmp_path, domains, monkeypatch):
    """Without labels, training asks `core.predict.Predictor` (Gemini-GAN) to segment the ED phase."""
    import gemini_cmr.core.predict
    from gemini_cmr.core.geometry import sr_grid

    rng = np.random.default_rng(11)
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    truth = {}
    for i in range(4):
        img, lab, aff = make_study(rng, "source")
        save_nifti(folder / f"u{i}.nii.gz", img, aff)
        truth[f"u{i}"] = (lab, aff)
    calls = []

    class FakePredictor:  # returns the phantom's own labels on the SR grid, as a perfect Gemini-GAN would
        model_id = "fake"

        @classmethod
        def load(cls, path=None, device="auto"):
            return cls()

        def predict(self, study, phases=None):
            from gemini_cmr.core.geometry import resample

            lab, _ = truth[study.meta.patient_id]
            calls.append(study.meta.patient_id)
            lr = study.grid  # the study's slice frame
            sr = sr_grid(lr)
            return type("P", (), {"sr_labels": resample(lab[phases], lr, sr, order=0), "sr_grid": sr})()

    monkeypatch.setattr(gemini_cmr.core.predict, "Predictor", FakePredictor)
    out = train_vama(folder, domains[1], tmp_path / "run", settings=QUICK, model_cfg=SMALL)
    assert sorted(calls) == sorted(truth)
    cfg = json.loads((out / "config.json").read_text())
    assert all(a["rms_mm"] < 3.0 for a in cfg["alignment"])


def test_check_domains_counts_slices_not_studies(tmp_path):
    """One long cine is enough; orientation is not compared (each stack in its own slice frame)."""
    from types import SimpleNamespace

    from gemini_cmr.core.vama.domains import check_domains

    def study(name, t, z):
        return SimpleNamespace(name=name, n_slices=t * z)

    src, tgt = tmp_path / "s", tmp_path / "t"
    check_domains([study("cine", 20, 10)], [study("a", 2, 10), study("b", 2, 10)], src, tgt)
    with pytest.raises(DataError, match=f"s: 30 source slices.*1 study.*at least {MIN_SLICES}"):
        check_domains([study("short", 3, 10)], [study("a", 20, 10)], src, tgt)
    with pytest.raises(DataError, match="same folder"):
        check_domains([study("cine", 20, 10)], [study("a", 20, 10)], src, f"acdc:{src}")


def test_the_adapter_records_its_measured_effect_on_labelled_source_studies(domains, tmp_path):
    """With labelled source studies, training scores Gemini-GAN without and with the new adapter on them
    and writes the figures into the adapter's config; the app's summary shows them."""
    from gemini_cmr.core.vama.summary import adapter_summary

    settings = TrainSettings(**{**QUICK.__dict__, "measure": True})
    events = []
    out = train_vama(*domains, tmp_path / "run", settings=settings, model_cfg=SMALL, progress=events.append)
    effect = json.loads((out / "config.json").read_text())["evaluation"]["source_labelled"]
    assert effect["studies"] == 4 and effect["phases"] == 4  # the ED phase of each (no ES known)
    assert set(effect["before"]) == set(effect["after"]) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    assert all(0.0 <= v <= 1.0 for part in ("before", "after") for v in effect[part].values())
    assert any(e["event"] == "effect" for e in events)
    text = adapter_summary(out)
    assert "Dice without -> with the adapter (source labelled)" in text and "4 studies" in text
