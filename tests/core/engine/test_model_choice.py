"""The engine picks the phantom model for phantoms and the ACDC model for real studies."""

from __future__ import annotations

import numpy as np

import gemini_cmr.core.resources as res
from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.study import Study, StudyMeta


def _study(fmt: str = "dicom", **meta) -> Study:
    img = np.random.default_rng(0).random((2, 4, 24, 24)).astype(np.float32)
    return Study(image=img, affine=np.diag([1.5, 1.5, 8.0, 1.0]), meta=StudyMeta(format=fmt, **meta))


def test_phantoms_are_recognised(tmp_path):
    assert res.is_phantom_study(_study("phantom"))
    assert res.is_phantom_study(_study("nifti", vendor="gemini-cmr phantom (ukdhp-like)"))
    assert not res.is_phantom_study(_study("dicom", vendor="GE MEDICAL SYSTEMS"))
    assert not res.is_phantom_study(_study("acdc"))
    img = _study().image
    for descrip, phantom in (("gemini-cmr demo phantom seed 2024", True), ("scanner export", False)):
        path = tmp_path / f"{phantom}.nii.gz"
        save_nifti(path, img, np.diag([1.5, 1.5, 8.0, 1.0]), None, descrip)
        assert res.is_phantom_study(_study("nifti", source_path=str(path))) is phantom


def test_demo_study_is_a_phantom():
    from gemini_cmr.core.io.loader import load_study

    assert res.is_phantom_study(load_study(res.demo_study_path()))


def test_default_model_for(monkeypatch, tmp_path):
    path, why = res.default_model_for(_study("phantom"))
    assert path == res.bundled_model_path() and "phantom" in why
    monkeypatch.setattr(res, "acdc_model_path", lambda: tmp_path / "gemini-acdc")
    path, why = res.default_model_for(_study("dicom"))
    assert path == res.bundled_model_path() and "not installed" in why
    (tmp_path / "gemini-acdc").mkdir()
    (tmp_path / "gemini-acdc" / "model.safetensors").write_bytes(b"x")
    path, why = res.default_model_for(_study("dicom"))
    assert path == tmp_path / "gemini-acdc" and "ACDC" in why


def test_bundled_acdc_model_is_installed_and_loads():
    from gemini_cmr.core.predict import Predictor

    p = Predictor.load(res.acdc_model_path(), device="cpu")
    assert p.model.config.encoder == "acquired-2d"
    assert p.loaded.config["training"]["data_kind"] == "lr-labels"


class _Stub:
    def __init__(self, path):
        self.model_id = f"id-{path.name}"
        self.device = "cpu"
        self.loaded = type("L", (), {"weights_path": path / "model.safetensors"})()


def test_engine_switches_model_per_study(monkeypatch, tmp_path):
    from gemini_cmr.core import engine
    from gemini_cmr.core.predict import Predictor

    loads = []

    def fake_load(path=None, device="auto", **kw):
        p = res.bundled_model_path() if path is None else path
        loads.append(p.name)
        return _Stub(p)

    monkeypatch.setattr(Predictor, "load", staticmethod(fake_load))
    monkeypatch.setattr(res, "acdc_model_path", lambda: tmp_path / "gemini-acdc")
    (tmp_path / "gemini-acdc").mkdir()
    (tmp_path / "gemini-acdc" / "model.safetensors").write_bytes(b"x")
    sr = engine.SuperResolver(model=None, device="cpu")
    sr._choose_model(_study("dicom"))
    assert sr.model_id == "id-gemini-acdc" and "ACDC" in sr.model_choice
    sr._choose_model(_study("phantom"))
    assert sr.model_id == "id-gemini-phantom" and "phantom" in sr.model_choice
    sr._choose_model(_study("acdc"))
    assert loads == ["gemini-phantom", "gemini-acdc"]  # each model loaded once
    explicit = engine.SuperResolver(model=tmp_path / "gemini-acdc", device="cpu")
    assert not explicit._auto and explicit.model_choice == "explicit model"


