"""M&Ms-2 subject folders as studies: `<id>_SA_CINE` with the labelled `_SA_ED`/`_SA_ES` frames found in it (labels
1 LV, 2 myo, 3 RV), the two frames alone without the cine, and `super-resolve FOLDER` with its `_LA_` files found."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import load_study
from gemini_cmr.core.io.layouts import find_layout_image
from gemini_cmr.core.io.nifti import save_nifti


def subject(folder, cine: bool = True, sid: str = "160"):
    rng = np.random.default_rng(0)
    aff = np.diag([1.25, 1.25, 10.0, 1.0])
    image = rng.uniform(10, 400, (6, 5, 20, 24)).astype(np.float32)
    ed, es = np.zeros((5, 20, 24), np.uint8), np.zeros((5, 20, 24), np.uint8)
    ed[:, 4:9, 4:9], ed[:, 9:11, 4:9], ed[:, 12:16, 4:9] = 1, 2, 3
    es[:, 5:8, 5:8] = 1
    if cine:
        save_nifti(folder / f"{sid}_SA_CINE.nii.gz", image, aff, 30.0)
    save_nifti(folder / f"{sid}_SA_ED.nii.gz", image[0], aff)
    save_nifti(folder / f"{sid}_SA_ES.nii.gz", image[3], aff)
    save_nifti(folder / f"{sid}_SA_ED_gt.nii.gz", ed, aff)
    save_nifti(folder / f"{sid}_SA_ES_gt.nii.gz", es, aff)
    save_nifti(folder / f"{sid}_LA_CINE.nii.gz", image[:, :1], np.diag([1.25, 1.25, 8.0, 1.0]))  # not a SA image
    return image, ed, es


def test_a_subject_folder_loads_the_cine_with_the_labelled_frames(tmp_path):
    image, ed, es = subject(tmp_path)
    assert find_layout_image(tmp_path) == (tmp_path / "160_SA_CINE.nii.gz", "mnms2")
    for study in (load_study(tmp_path), load_study(tmp_path / "160_SA_CINE.nii.gz")):
        assert study.image.shape == image.shape and np.allclose(study.image, image, atol=1e-3)
        assert study.meta.format == "mnms2" and study.meta.patient_id == "160"
        assert (study.meta.ed_phase, study.meta.es_phase) == (0, 3) and study.labelled_phases == [0, 3]
        assert np.array_equal(study.labels[0], ed) and np.array_equal(study.labels[3], es)
        assert not study.labels[1].any() and np.allclose(study.phase_times_ms, np.arange(6) * 30.0)
    single = load_study(tmp_path / "160_SA_ES.nii.gz")  # one frame given: that frame with its labels
    assert single.image.shape == (1, 5, 20, 24) and np.array_equal(single.labels[0], es)


def test_without_the_cine_the_ed_and_es_frames_are_the_study(tmp_path):
    image, ed, es = subject(tmp_path, cine=False)
    study = load_study(tmp_path)
    assert study.image.shape == (2, 5, 20, 24) and np.allclose(study.image[1], image[3], atol=1e-3)
    assert (study.meta.ed_phase, study.meta.es_phase) == (0, 1) and np.array_equal(study.labels[1], es)
    assert any("no 160_SA_CINE" in w for w in study.meta.warnings)


def test_bad_mnms2_files_name_the_file(tmp_path):
    subject(tmp_path)
    save_nifti(tmp_path / "160_SA_ES_gt.nii.gz", np.full((5, 20, 24), 4, np.uint8), np.diag([1.25, 1.25, 10.0, 1.0]))
    with pytest.raises(StudyError, match=r"160_SA_ES_gt\.nii\.gz: unexpected label values \[4\]"):
        load_study(tmp_path)
    save_nifti(tmp_path / "160_SA_ED.nii.gz", np.zeros((4, 20, 24), np.float32), np.diag([1.25, 1.25, 10.0, 1.0]))
    with pytest.raises(StudyError, match=r"160_SA_ED\.nii\.gz: frame size \(4, 20, 24\) does not match"):
        load_study(tmp_path)


def test_super_resolve_an_mnms2_folder_with_its_long_axis_cine(tmp_path, monkeypatch):
    from gemini_cmr.cli.main import main
    from tests.core.engine.fakes import FakePredictor, make_study
    from tests.core.engine.test_longaxis_engine import four_chamber

    s = make_study(n_phases=2, ed_es=(0, 1))
    sub = tmp_path / "201"
    save_nifti(sub / "201_SA_CINE.nii.gz", s.image, s.affine, 40.0)
    save_nifti(sub / "201_SA_ED.nii.gz", s.image[0], s.affine)
    save_nifti(sub / "201_SA_ED_gt.nii.gz", s.labels[0], s.affine)
    la = four_chamber(s)
    save_nifti(sub / "201_LA_CINE.nii.gz", la.image[:, None], la.affine, 40.0)

    class Fixed(FakePredictor):
        loaded = type("Loaded", (), {"weights_path": tmp_path / "fake.safetensors"})()

        def predict(self, study, phases=None, progress=None, cancel=None, **kw):
            study.meta.extra.update(heart_centre=s.meta.extra["heart_centre"], heart_frame=s.meta.extra["heart_frame"])
            return super().predict(study, phases, progress, cancel)

    monkeypatch.setattr("gemini_cmr.core.predict.Predictor.load", classmethod(lambda cls, *a, **k: Fixed()))
    out = tmp_path / "out"
    assert main(["super-resolve", str(sub), "--out", str(out), "--device", "cpu", "--model", str(tmp_path),
                 "--no-motion-correction", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["input"]["format"] == "mnms2" and run["input"]["shape"] == list(s.image.shape)
    (rec,) = run["long_axis"]
    assert rec["used"] and rec["view"] == "4ch" and rec["path"] == str(sub / "201_LA_CINE.nii.gz")
    assert (out / "la_4ch_sr_labels.nii.gz").is_file()
