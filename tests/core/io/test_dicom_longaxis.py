"""Long-axis cine series beside a DICOM short-axis study (a PACS export: one folder of many series): found with the
stack (`StudyMeta.long_axis_series`, `core.longaxis.long_axis_in_study`), the short-axis choice unchanged, series
of another Frame of Reference or study ignored with one line naming them, and `super-resolve FOLDER` using them."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
from pydicom.uid import generate_uid

from gemini_cmr.core.io import load_study
from gemini_cmr.core.longaxis import LongAxisCine, LongAxisInput, long_axis_in_study, validate_long_axis

from .dicom_factory import AXIAL, CineSpec, array_cine, make_cine, write


@lru_cache(maxsize=1)
def phantom():
    """A small phantom with a 4-chamber cine: consistent short- and long-axis geometry."""
    from gemini_cmr.core.synth.dataset import make_subject

    return make_subject(4, n_phases=3, long_axis=("4ch",), noise=False)


def study_folder(tmp_path, other_for: bool = True, other_study: bool = False):
    """SAX cine, its 4ch cine, a localizer and (optionally) a long-axis series of another Frame of Reference or
    of another study, written as one folder."""
    pair = phantom()
    study_uid, for_uid = generate_uid(), generate_uid()
    la = pair.long_axis["4ch"]
    folder = tmp_path / "export"
    write(folder, array_cine(pair.lr.image, pair.lr.affine, "SAX cine", study_uid, for_uid, 10), prefix="SA")
    write(folder, array_cine(la.image, la.affine, "CINE 4 chamber", study_uid, for_uid, 11), prefix="LA")
    write(folder, make_cine(CineSpec(n_slices=3, n_phases=1, description="localizer", orientation=AXIAL),
                            study_uid, for_uid), prefix="LOC")
    if other_for:
        write(folder, array_cine(la.image, la.affine, "LAX other", study_uid, generate_uid(), 12), prefix="OF")
    if other_study:
        write(folder, array_cine(la.image, la.affine, "LAX 2ch old", generate_uid(), generate_uid(), 13), prefix="OS")
    return folder, pair


def test_the_long_axis_series_are_found_with_the_stack(tmp_path):
    folder, pair = study_folder(tmp_path, other_study=True)
    study = load_study(folder)
    assert study.meta.series_description == "SAX cine" and study.image.shape == pair.lr.image.shape
    nz = pair.lr.image.shape[1]
    flip = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, nz - 1], [0, 0, 0, 1]])  # DICOM: slices along row x col
    assert np.allclose(study.affine, pair.lr.affine @ flip, atol=1e-3)
    assert not any("4 chamber" in w or "LAX" in w for w in study.meta.warnings)  # reported by their user
    assert sorted(c.description for c in study.meta.long_axis_series) == ["CINE 4 chamber", "LAX 2ch old", "LAX other"]
    found = long_axis_in_study(study)
    (cine,) = [x for x in found if isinstance(x, LongAxisCine) and x.view == "4ch"]
    la = pair.long_axis["4ch"]
    assert cine.image.shape == la.image.shape and np.allclose(cine.affine, la.affine, atol=1e-3)
    assert np.abs(cine.image - la.image).max() < 1e-3 * (la.image.max() - la.image.min())
    assert cine.source_path == f"{folder} (series 'CINE 4 chamber')"
    (old,) = [x for x in found if isinstance(x, LongAxisInput)]
    assert old.reason.startswith(f"{folder} (series 'LAX 2ch old'): another study: StudyInstanceUID")
    items = validate_long_axis(found, study)
    used = {i.path: i for i in items if i.used}
    assert list(used) == [cine.source_path]
    (other_for,) = [i for i in items if not i.used and "LAX other" in i.path]
    assert "Frame of Reference" in other_for.reason and other_for.reason.startswith(f"{folder} (series 'LAX other')")

    alone = tmp_path / "sax-only"
    write(alone, array_cine(pair.lr.image, pair.lr.affine, "SAX cine", generate_uid(), generate_uid(), 10))
    ref = load_study(alone)  # the short-axis choice does not change with the long-axis series beside it
    assert np.array_equal(ref.image, study.image) and ref.meta.long_axis_series == []


def test_a_parallel_single_slice_series_is_not_a_long_axis_cine(tmp_path):
    pair = phantom()
    study_uid, for_uid = generate_uid(), generate_uid()
    folder = tmp_path / "export"
    write(folder, array_cine(pair.lr.image, pair.lr.affine, "SAX cine", study_uid, for_uid, 10), prefix="SA")
    one = pair.lr.image[:, 3:4]
    aff = pair.lr.affine.copy()
    aff[:3, 3] = pair.lr.affine[:3] @ np.array([0.0, 0.0, 3.0, 1.0])
    write(folder, array_cine(one, aff, "SAX repeat slice 4", study_uid, for_uid, 11), prefix="RP")
    study = load_study(folder)
    assert study.meta.long_axis_series == [] and any("SAX repeat slice 4" in w for w in study.meta.warnings)


@pytest.fixture
def fake_predictor(monkeypatch, tmp_path):
    from tests.core.engine.fakes import FakePredictor

    class Fixed(FakePredictor):
        loaded = type("Loaded", (), {"weights_path": tmp_path / "fake.safetensors"})()

        def predict(self, study, phases=None, progress=None, cancel=None, **kw):
            study.meta.extra.update(heart_centre=study.grid.centre(), heart_frame=study.grid.directions)
            return super().predict(study, phases, progress, cancel)

    monkeypatch.setattr("gemini_cmr.core.predict.Predictor.load", classmethod(lambda cls, *a, **k: Fixed()))


def test_super_resolve_a_study_folder_uses_its_long_axis_series(tmp_path, fake_predictor, capsys):
    from gemini_cmr.cli.main import main

    folder, _ = study_folder(tmp_path)
    out = tmp_path / "out"
    args = ["super-resolve", str(folder), "--out", str(out), "--device", "cpu", "--model", str(tmp_path),
            "--no-motion-correction", "--no-dicom", "--mesh-format", "stl"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "long-axis series found in the study" in err and "4ch" in err
    lines = [ln for ln in err.splitlines() if "LAX other" in ln and "warning" in ln]
    assert len(lines) == 1 and "Frame of Reference" in lines[0], err
    run = json.loads((out / "run.json").read_text())
    assert run["input"]["shape"] == list(phantom().lr.image.shape)  # the short-axis cine, as without them
    rec = {r["path"]: r for r in run["long_axis"]}
    four = rec[f"{folder} (series 'CINE 4 chamber')"]
    assert four["used"] and four["view"] == "4ch" and four["output"] == "la_4ch_sr_labels.nii.gz"
    assert not rec[f"{folder} (series 'LAX other')"]["used"] and (out / "la_4ch_sr_labels.nii.gz").is_file()

    assert main([*args, "--no-long-axis"]) == 0
    err = capsys.readouterr().err
    assert "not used (--no-long-axis)" in err and "CINE 4 chamber" in err
    run = json.loads((out / "run.json").read_text())
    assert run["long_axis"] == [] and not (out / "la_4ch_sr_labels.nii.gz").exists()
