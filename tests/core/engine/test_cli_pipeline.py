"""End to end through `gemini-cmr super-resolve` / `evaluate` with the real Predictor and bundled model."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from gemini_cmr.cli.main import main
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.io.nifti import read_nifti_array, save_nifti
from gemini_cmr.core.models.store import BUNDLED_MODEL_DIR

from .fakes import make_study, write_paired_dataset


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    s = make_study(n_phases=3)
    path = tmp_path_factory.mktemp("study") / "cine.nii.gz"
    save_nifti(path, s.image, s.affine, phase_interval_ms=40.0)
    return path, s


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    return err[-1]


def test_super_resolve_cli_outputs(tmp_path, study_file, capsys):
    path, s = study_file
    out = tmp_path / "out"
    rc = main(["super-resolve", str(path), "--out", str(out), "--mesh-format", "stl,ply", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "LVEDV" in captured.out and "super-resolved" in captured.err  # result on stdout, progress on stderr
    sr = sr_grid(s.grid)
    img, aff, _ = read_nifti_array(out / "sr_image.nii.gz")
    assert img.shape == (3, *sr.shape) and np.allclose(aff, sr.affine, atol=1e-4)
    lab, aff, _ = read_nifti_array(out / "sr_labels.nii.gz")
    assert lab.shape == img.shape and lab.dtype == np.uint8 and lab.max() <= 3
    lr, aff_lr, _ = read_nifti_array(out / "lr_labels.nii.gz")
    assert lr.shape == s.image.shape and np.allclose(aff_lr, s.affine, atol=1e-4)
    run = json.loads((out / "run.json").read_text())
    assert len(run["model"]["id"]) == 64 and run["device"] == "cpu"
    assert {"load_model", "predict", "meshes", "write", "load_study"} <= set(run["timings_s"])
    assert run["arguments"]["mesh_format"] == ["stl", "ply"]
    ph = json.loads((out / "phenotypes.json").read_text())
    assert set(ph["volume_curves_ml"]) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    assert len(ph["volume_curves_ml"]["lv_cavity"]) == 3
    assert (out / "phenotypes.csv").is_file() and (out / "meshes").is_dir()
    # Meshes exist for each structure the (bundled) model found at ED.
    for name in ph["volume_curves_ml"]:
        if ph["volume_curves_ml"][name][ph["phases"].index(ph["ed_phase"])] > 0:
            assert (out / "meshes" / f"ed_{name}.stl").is_file() and (out / "meshes" / f"ed_{name}.ply").is_file()


def test_super_resolve_cli_int16_sr_image(tmp_path, study_file, capsys):
    """`--sr-dtype int16`: the SR image in scaled 16-bit integers, the same values within half a step."""
    path, s = study_file
    rc = main(["super-resolve", str(path), "--out", str(tmp_path / "f"), "--device", "cpu", "--quiet"])
    rc2 = main(["super-resolve", str(path), "--out", str(tmp_path / "i"), "--device", "cpu", "--quiet",
                "--sr-dtype", "int16"])
    assert rc == rc2 == 0, capsys.readouterr().err
    ref, _, _ = read_nifti_array(tmp_path / "f" / "sr_image.nii.gz")
    nii = nib.load(tmp_path / "i" / "sr_image.nii.gz")
    img, _, _ = read_nifti_array(tmp_path / "i" / "sr_image.nii.gz")
    assert nii.get_data_dtype() == np.int16 and np.abs(img - ref).max() <= 0.51 * float(nii.dataobj.slope)
    assert json.loads((tmp_path / "i" / "run.json").read_text())["sr_image_dtype"] == "int16"


def test_super_resolve_bad_input(tmp_path, study_file, capsys):
    path, _ = study_file
    out = tmp_path / "never"
    assert main(["super-resolve", str(tmp_path / "missing.nii.gz"), "--out", str(out)]) == 2
    assert _err_line(capsys).startswith("gemini-cmr: ")
    assert main(["super-resolve", str(path), "--out", str(out), "--model", str(tmp_path / "nomodel")]) == 2
    assert "model" in _err_line(capsys)
    bad = tmp_path / "badmodel"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((BUNDLED_MODEL_DIR / "model.safetensors").read_bytes())
    (bad / "config.json").write_text(json.dumps({"kind": "vama", "version": 1, "model": {}}))
    assert main(["super-resolve", str(path), "--out", str(out), "--model", str(bad)]) == 2
    _err_line(capsys)
    assert main(["super-resolve", str(path), "--out", str(out), "--mesh-format", "fbx"]) == 2
    assert "fbx" in _err_line(capsys)
    assert main(["super-resolve", str(path), "--out", str(out), "--phases", "7"]) == 2
    assert "phases" in _err_line(capsys)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_evaluate_cli(tmp_path, capsys):
    data = write_paired_dataset(tmp_path / "paired", splits=("test", "train"), n_phases=3, ed_es=(0, 1))
    assert main(["evaluate", "--data", str(data), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Dice 3D" in out and "Dice slice-wise" in out and "PSNR ED" in out and "LVEF (%)" in out
    assert main(["evaluate", "--data", str(data), "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 1 and res["split"] == "test"
    assert set(res["summary"]["dice_3d"]) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    assert main(["evaluate", "--data", str(tmp_path / "nothing")]) == 2
    assert "dataset" in _err_line(capsys)


def test_super_resolve_with_adapter(tmp_path, study_file, capsys):
    from gemini_cmr.core.models import vama
    from gemini_cmr.core.models.store import file_sha256

    path, _ = study_file
    model_id = file_sha256(BUNDLED_MODEL_DIR / "model.safetensors")
    tiny = {"base_channels": 4, "depth": 2, "latent_channels": 4, "disc_channels": 4}
    wrong = vama.save_adapter(tmp_path / "wrong", vama.VAMA(tiny),
                              {"gemini_model_id": "0" * 64, "normalisation": {"target_scale": 300.0}})
    out = tmp_path / "out"
    assert main(["super-resolve", str(path), "--out", str(out), "--adapter", str(wrong), "--device", "cpu"]) == 2
    assert "trained for" in _err_line(capsys) and not out.exists()
    right = vama.save_adapter(tmp_path / "right", vama.VAMA(tiny),
                              {"gemini_model_id": model_id, "normalisation": {"target_scale": 300.0}})
    assert main(["super-resolve", str(path), "--out", str(out), "--adapter", str(right), "--device", "cpu",
                 "--phases", "0,2", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["adapter"]["id"] == file_sha256(right / "adapter.safetensors")
    assert run["phases"] == [0, 2] and "adapt" in run["timings_s"]


def test_long_slab_real_predictor():
    """A slab deeper than the network (20 x 8 mm = 80 SR slices > 64) is covered, not truncated."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.study import Study

    s = make_study(n_phases=2)
    aff = s.affine.copy()
    image = np.concatenate([s.image, s.image], axis=1)  # 20 slices
    long = Study(image=image, affine=aff, meta=s.meta)
    r = SuperResolver(device="cpu").run(long, phases="all", meshes="none")
    sr = sr_grid(long.grid)
    assert sr.shape[0] == 80 and r.sr_image.shape == (2, *sr.shape)
    assert np.all(np.isfinite(r.sr_image)) and r.lr_labels.shape == image.shape


@pytest.mark.data
def test_super_resolve_acdc_real(tmp_path, shared_data, capsys):
    """ACDC patient001 (ED/ES frames, expert labels, Info.cfg): outputs overlay the input, the study's ED/ES
    and height/weight are used, and the expert-label volumes are reported beside the SR ones."""
    folder = shared_data / "acdc" / "training" / "patient001"
    if not folder.is_dir():
        pytest.skip("ACDC patient001 not available")
    out = tmp_path / "p001"
    assert main(["super-resolve", str(folder), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    ph = json.loads((out / "phenotypes.json").read_text())
    assert (ph["ed_phase"], ph["es_phase"]) == (0, 1) and ph["ed_phase_source"] == "study"
    assert ph["bsa_m2"] == pytest.approx((184 * 95 / 3600) ** 0.5)
    lr = ph["lr"]
    assert lr["phases"] == [0, 1]
    # Expert labels: LV EDV ~295 mL, EF ~24% (dilated cardiomyopathy), on 1.5625 x 1.5625 x 10 mm voxels.
    assert lr["lv_edv_ml"] == pytest.approx(295.5, abs=1.0) and lr["lv_ef_pct"] == pytest.approx(23.65, abs=0.5)
    lab, aff, _ = read_nifti_array(out / "lr_labels.nii.gz")
    img, img_aff, _ = read_nifti_array(folder / "patient001_frame01.nii.gz")
    assert lab.shape[1:] == img.shape and np.allclose(np.linalg.norm(aff[:3, :3], axis=0), [1.5625, 1.5625, 10.0],
                                                      atol=1e-3)
