"""The engine with a fake predictor: outputs, exact affines, back-projection, phases, cancel, adapter."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import pyvista as pv

from gemini_cmr.core.engine import Result, SuperResolver, parse_phases
from gemini_cmr.core.errors import Cancelled, GeminiError, ModelError, StudyError
from gemini_cmr.core.evaluation import metrics
from gemini_cmr.core.geometry import sr_grid
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.outputs import write_outputs

from .fakes import LV_RADII, FakePredictor, make_study, phase_scale


@pytest.fixture(scope="module")
def study():
    return make_study(n_phases=4)


@pytest.fixture(scope="module")
def result(study) -> Result:
    return SuperResolver(model=FakePredictor()).run(study, phases="all", meshes="ed_es")


def test_run_shapes_phases_and_ed_es(study, result):
    sr = sr_grid(study.grid)
    assert result.sr_grid == sr
    assert result.phases == [0, 1, 2, 3]
    assert result.sr_image.shape == result.sr_labels.shape == (4, *sr.shape)
    assert result.lr_labels.shape == study.image.shape and result.lr_labels.dtype == np.uint8
    assert (result.ed_phase, result.es_phase) == (0, 2)  # max / min LV cavity volume
    assert set(result.meshes) == {0, 2}
    assert set(result.meshes[0]) == {"lv_cavity", "lv_myocardium", "rv_cavity"}
    for key in ("predict", "lr_labels", "phenotypes", "meshes", "total"):
        assert result.timings[key] >= 0
    assert result.model_id == "f" * 64 and result.adapter_id is None


def test_lr_labels_back_on_input_grid(study, result):
    # SR labels resampled (nearest, by world coordinates) onto the oblique LR grid agree with the anatomy
    # sampled directly there.
    for t in range(study.n_phases):
        d = metrics.dice_per_structure(result.lr_labels[t], study.labels[t])
        assert d["lv_cavity"] > 0.95 and d["rv_cavity"] > 0.9 and d["lv_myocardium"] > 0.85, d


def test_phenotypes_match_analytic_volumes(study, result):
    p = result.phenotypes
    edv = 4 / 3 * math.pi * np.prod(LV_RADII) / 1000
    esv = edv * phase_scale(2, 4) ** 3
    assert p["lv_edv_ml"] == pytest.approx(edv, rel=0.03)
    assert p["lv_esv_ml"] == pytest.approx(esv, rel=0.03)
    assert p["lv_ef_pct"] == pytest.approx(100 * (1 - phase_scale(2, 4) ** 3), abs=1.5)
    assert p["bsa_m2"] == pytest.approx(math.sqrt(175 * 70 / 3600))
    # LR labels of the study are reported beside the SR ones (coarser voxels, same anatomy).
    assert p["lr"]["lv_edv_ml"] == pytest.approx(edv, rel=0.08)
    # Mesh volume matches the label volume.
    mesh_ml = result.meshes[0]["lv_cavity"].volume / 1000
    assert mesh_ml == pytest.approx(p["lv_edv_ml"], rel=0.03)


def test_write_outputs(tmp_path, study, result):
    out = tmp_path / "run1"
    paths = write_outputs(result, out, ["stl", "vtp"])
    names = {p.relative_to(out).as_posix() for p in paths}
    for n in ("sr_image.nii.gz", "sr_labels.nii.gz", "lr_labels.nii.gz", "phenotypes.json", "phenotypes.csv",
              "run.json"):
        assert n in names
    for tag in ("ed", "es"):
        for s in ("lv_cavity", "lv_myocardium", "rv_cavity"):
            assert f"meshes/{tag}_{s}.stl" in names and f"meshes/{tag}_{s}.vtp" in names
    img, aff, _ = read_nifti_array(out / "sr_image.nii.gz")
    assert img.shape == result.sr_image.shape
    assert np.allclose(aff, result.sr_grid.affine, atol=1e-4)
    hdr = nib.load(out / "sr_labels.nii.gz").header
    assert hdr["sform_code"] == 1 and hdr["qform_code"] == 1
    assert np.allclose(nib.load(out / "sr_labels.nii.gz").get_qform(), result.sr_grid.affine, atol=1e-4)
    lab, aff, _ = read_nifti_array(out / "sr_labels.nii.gz")
    assert lab.dtype == np.uint8 and np.array_equal(lab, result.sr_labels)
    lr, aff_lr, _ = read_nifti_array(out / "lr_labels.nii.gz")
    assert np.array_equal(lr, result.lr_labels) and np.allclose(aff_lr, study.affine, atol=1e-4)
    ph = json.loads((out / "phenotypes.json").read_text())
    assert ph["ed_phase"] == 0 and ph["lv_ef_pct"] == pytest.approx(result.phenotypes["lv_ef_pct"])
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["id"] == "f" * 64 and run["device"] == "cpu"
    assert "write" in run["timings_s"] and "predict" in run["timings_s"]
    assert run["versions"]["gemini_cmr"]
    m = pv.read(out / "meshes" / "ed_lv_cavity.vtp")
    assert np.allclose(m.bounds, result.meshes[0]["lv_cavity"].bounds, atol=1e-3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder gone


def test_write_outputs_int16_sr_image(tmp_path, result):
    """`sr_dtype="int16"`: the SR image stored as scaled 16-bit integers (NIfTI slope/intercept), read back
    by nibabel within half a step of the range; recorded in run.json; an unknown type is refused."""
    out = tmp_path / "int16"
    write_outputs(result, out, ["stl"], sr_dtype="int16")
    nii = nib.load(out / "sr_image.nii.gz")
    assert nii.get_data_dtype() == np.int16
    img, _, _ = read_nifti_array(out / "sr_image.nii.gz")
    src = result.sr_image
    step = float(nii.dataobj.slope)  # nibabel's scale: about the range / 65535
    assert step <= 1.01 * float(src.max() - src.min()) / 65535
    assert img.shape == src.shape and np.abs(img - src).max() <= 0.51 * step
    assert json.loads((out / "run.json").read_text())["sr_image_dtype"] == "int16"
    lab, _, _ = read_nifti_array(out / "sr_labels.nii.gz")
    assert lab.dtype == np.uint8 and np.array_equal(lab, result.sr_labels)  # labels unchanged
    with pytest.raises(GeminiError, match="float32 or int16"):
        write_outputs(result, tmp_path / "bad", ["stl"], sr_dtype="float16")
    assert not (tmp_path / "bad").exists()


def test_failed_or_cancelled_write_leaves_dir_untouched(tmp_path, result):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    (out / "phenotypes.json").write_text("old")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] >= 3

    with pytest.raises(Cancelled):
        write_outputs(result, out, ["stl"], cancel=cancel)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert (out / "phenotypes.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(GeminiError):
        write_outputs(result, out, ["fbx"])
    # A successful write into the existing folder keeps the user's file and replaces ours.
    write_outputs(result, out, ["ply"])
    assert (out / "mine.txt").read_text() == "user file"
    assert json.loads((out / "phenotypes.json").read_text())["ed_phase"] == 0
    assert (out / "meshes" / "es_rv_cavity.ply").is_file()


def test_cancel_during_run(study):
    with pytest.raises(Cancelled):
        SuperResolver(model=FakePredictor()).run(study, cancel=lambda: True)
    seen = []
    n = {"k": 0}

    def cancel_later():
        n["k"] += 1
        return n["k"] > 4

    with pytest.raises(Cancelled):
        SuperResolver(model=FakePredictor()).run(study, progress=lambda f, m: seen.append(f), cancel=cancel_later)
    assert seen and all(0.0 <= f <= 1.0 for f in seen)


def test_phases_ed_es_and_all_phase_meshes(tmp_path):
    known = make_study(n_phases=5, ed_es=(0, 3))
    fake = FakePredictor()
    r = SuperResolver(model=fake).run(known, phases="ed,es", meshes="none", motion_correction=False)
    assert fake.calls == [[0, 3]] and r.phases == [0, 3]
    assert (r.ed_phase, r.es_phase) == (0, 3) and r.meshes == {}
    assert r.phenotypes["ed_phase_source"] == "study"
    unknown = make_study(n_phases=5)
    fake = FakePredictor()
    r = SuperResolver(model=fake).run(unknown, phases="ed,es", meshes="all", motion_correction=False)
    assert fake.calls == [[0, 1, 2, 3, 4]] and r.warnings
    assert (r.ed_phase, r.es_phase) == (0, 2) and set(r.meshes) == {0, 1, 2, 3, 4}
    write_outputs(r, tmp_path / "o", "obj", all_phase_meshes=True)
    meshes = tmp_path / "o" / "meshes"
    assert (meshes / "lv_cavity_series.pvd").is_file() and (meshes / "phase_04_rv_cavity.obj").is_file()
    assert (meshes / "ed_lv_cavity.obj").is_file()
    r = SuperResolver(model=FakePredictor()).run(unknown, phases=[4, 1], meshes="none")
    assert r.phases == [1, 4]
    assert parse_phases("1,2", unknown) == ([1, 2], False)
    for bad in ("9", "x", [-1]):
        with pytest.raises(StudyError):
            parse_phases(bad, unknown)


class _FakeAdapter:
    adapter_id = "a" * 64

    def __init__(self, model_id):
        self.config = {"kind": "vama", "gemini_model_id": model_id}
        self.called = 0

    def adapt(self, study, progress=None, cancel=None):
        self.called += 1
        return study


def test_adapter_identity_checked(study):
    with pytest.raises(ModelError, match="trained for"):
        SuperResolver(model=FakePredictor(), adapter=_FakeAdapter("0" * 64))
    a = _FakeAdapter("f" * 64)
    r = SuperResolver(model=FakePredictor(), adapter=a).run(study, phases=[0, 2], meshes="none")
    assert a.called == 1 and r.adapter_id == "a" * 64 and "adapt" in r.timings


@pytest.mark.parametrize("size", [0, 10, (4 << 20) - 1, (4 << 20) * 2 + 12345])
def test_gzip_parallel_is_standard_gzip(size):
    import gzip
    import zlib

    from gemini_cmr.core.outputs import gzip_parallel

    rng = np.random.default_rng(size)
    data = (rng.integers(0, 40, size, dtype=np.uint8)).tobytes()
    half = size // 2
    noise = data[:half] + rng.integers(0, 256, size - half, dtype=np.uint8).tobytes()  # stored chunks too
    for payload, store in ((data, None), (data, 0.85), (noise, 0.85)):
        packed = gzip_parallel(payload, workers=2, store_above=store)
        assert gzip.decompress(packed) == payload
        d = zlib.decompressobj(31)  # one gzip member, nothing left over
        assert d.decompress(packed) == payload and d.eof and d.unused_data == b""
    if size > 8 << 20:
        assert len(gzip_parallel(noise, store_above=0.85)) < 1.01 * len(noise)


def test_save_nifti_fast_matches_save_nifti(tmp_path):
    from gemini_cmr.core.io.nifti import save_nifti
    from gemini_cmr.core.outputs import save_nifti_fast

    arr = np.random.default_rng(0).normal(size=(3, 20, 64, 70)).astype(np.float32)
    aff = np.array([[1.1, 0.2, 0.1, -5], [0.0, 1.2, 0.3, 7], [0.1, 0.0, 2.0, 3], [0, 0, 0, 1.0]])
    save_nifti_fast(tmp_path / "a.nii.gz", arr, aff, 40.0, "x")
    save_nifti(tmp_path / "b.nii.gz", arr, aff, 40.0, "x")
    a, b = nib.load(tmp_path / "a.nii.gz"), nib.load(tmp_path / "b.nii.gz")
    assert a.header.binaryblock == b.header.binaryblock
    assert np.array_equal(a.get_fdata(), b.get_fdata())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.nii.gz"]


def test_int16_nifti_scaling_is_exact_and_auto_is_int16_for_real_studies(tmp_path):
    """`nifti_file_parts` int16: the header's own (float32) slope and intercept reproduce every value within
    half a step of range / 65534; `sr_dtype="auto"`: int16 for real studies, float32 for phantoms."""
    import gzip

    from gemini_cmr.core.io.nifti import nifti_file_parts
    from gemini_cmr.core.outputs import resolve_sr_dtype, save_nifti_fast
    from gemini_cmr.core.study import StudyMeta

    arr = (np.random.default_rng(1).normal(size=(2, 9, 20, 24)) * 300 + 80).astype(np.float32)
    aff = np.diag([1.25, 1.25, 2.0, 1.0])
    save_nifti_fast(tmp_path / "a.nii.gz", arr, aff, 40.0, "x", "int16")
    nii = nib.load(tmp_path / "a.nii.gz")
    step = float(nii.dataobj.slope)
    assert nii.get_data_dtype() == np.int16 and step == pytest.approx((arr.max() - arr.min()) / 65534, rel=1e-6)
    back = np.asarray(nii.dataobj).transpose(3, 2, 1, 0)
    assert np.abs(back - arr).max() <= 0.5 * step * (1 + 1e-3)
    header, data = nifti_file_parts(arr, aff, 40.0, "x", "int16")
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == header + data.tobytes()
    real = make_study(n_phases=2)
    real.meta = StudyMeta(format="dicom", vendor="GE")
    phantom = make_study(n_phases=2)
    phantom.meta = StudyMeta(format="phantom")
    assert resolve_sr_dtype(real) == "int16" and resolve_sr_dtype(phantom) == "float32"
    assert resolve_sr_dtype(real, "float32") == "float32"


def test_a_predictor_without_previews_runs_as_before(study):
    """`run(preview=)` with a predictor whose `predict` has no `on_chunk`: no preview, the same result."""
    fake = FakePredictor()
    previews = []
    res = SuperResolver(model=fake).run(study, phases="all", meshes="none", motion_correction=False, first=[2],
                                        preview=previews.append)
    assert previews == [] and fake.calls == [list(range(study.n_phases))]
    assert res.sr_labels.shape[0] == study.n_phases
