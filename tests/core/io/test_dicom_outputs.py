"""DICOM outputs (SR series, segmentations) and the viewers' label files: written by `write_outputs`, read back
with pydicom, highdicom, pynrrd and the project's own loader (`gemini-cmr info`)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import highdicom as hd
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest

from gemini_cmr.cli.main import main as cli_main
from gemini_cmr.core import outputs
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.io import load_study
from gemini_cmr.core.study import LABEL_COLOURS, STRUCTURE_CODES, STRUCTURE_NAMES
from tests.core.engine.fakes import FakePredictor, make_study

from .dicom_factory import CineSpec, make_cine, write


def _nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    arr = np.asarray(img.dataobj)
    return (arr.transpose(3, 2, 1, 0) if arr.ndim == 4 else arr.transpose(2, 1, 0)[None]), img.affine


def _dicom_result(folder: Path, n_phases: int = 3):
    spec = CineSpec(n_slices=6, n_phases=n_phases, rows=44, cols=48, spacing=(1.8, 1.8), gap=8.0,
                    thickness=8.0)
    datasets = make_cine(spec)
    for ds in datasets:
        ds.PatientName = "Doe^Jane"
        ds.StudyDate = "20240102"
        ds.SeriesNumber = 7
    write(folder, datasets)
    study = load_study(folder)
    study.meta.extra["heart_centre"] = study.grid.centre()
    study.meta.extra["heart_frame"] = study.grid.directions
    result = SuperResolver(model=FakePredictor()).run(study, meshes="none")
    return study, result, datasets


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_out")
    study, result, datasets = _dicom_result(root / "study")
    out = root / "out"
    outputs.write_outputs(result, out, ["stl"])  # DICOM input: DICOM outputs by default
    return study, result, datasets, out


def test_dicom_input_writes_the_dicom_outputs_by_default(written):
    study, result, datasets, out = written
    info = json.loads((out / "run.json").read_text())
    rec = info["dicom"]
    assert rec["study_instance_uid"] == datasets[0].StudyInstanceUID and rec["new_study"] is False
    assert rec["frame_of_reference_uid"] == datasets[0].FrameOfReferenceUID
    n = len(result.phases)
    assert rec["files"] == n * result.sr_grid.shape[0] + 2 * n + 1  # + the quality check's Secondary Capture
    assert len(list((out / "dicom/sr").glob("MR_*.dcm"))) == n * result.sr_grid.shape[0]
    assert len(list((out / "dicom/sr").glob("SEG_*.dcm"))) == n == len(list((out / "dicom/lr_labels").glob("*.dcm")))
    assert "dicom/sr/SEG_p00.dcm" in info["outputs"] and info["outputs"][-1] == "run.json"


def test_quality_capture_is_the_review_image_in_the_study(written):
    import pydicom
    from PIL import Image

    study, result, datasets, out = written
    ds = pydicom.dcmread(out / "dicom/qc/QC.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.Modality == "OT"
    assert ds.StudyInstanceUID == datasets[0].StudyInstanceUID and ds.PatientID == datasets[0].PatientID
    assert ds.SeriesNumber == 7 + 4000 and ds.SeriesDescription.startswith("Gemini CMR quality check")
    info = json.loads((out / "run.json").read_text())
    assert ds.SeriesInstanceUID == info["dicom"]["series_instance_uids"]["qc"]
    assert ds.SeriesInstanceUID not in {d.SeriesInstanceUID for d in datasets}
    with Image.open(out / "qc.png") as im:
        assert np.array_equal(ds.pixel_array, np.asarray(im.convert("RGB")))  # the same picture as qc.png
    assert "dicom/qc/QC.dcm" in info["outputs"]


def test_sr_series_round_trips_image_geometry_and_identity(written):
    study, result, datasets, out = written
    _, affine = _nifti(out / "sr_image.nii.gz")
    sr_image = result.sr_image  # the NIfTI of a real study is int16 by default: compare with the float image
    back = load_study(out / "dicom/sr")
    assert back.image.shape == sr_image.shape
    assert np.abs(back.affine - affine).max() < 0.01  # mm: the SR series has sr_image.nii.gz's geometry
    step = (sr_image.max() - sr_image.min()) / 65535
    assert np.abs(back.image - sr_image).max() <= 0.5 * step + 1e-3
    np.testing.assert_allclose(back.phase_times_ms, study.phase_times_ms[result.phases], atol=1e-3)
    ds = pydicom.dcmread(sorted((out / "dicom/sr").glob("MR_p01_s003.dcm"))[0])
    src = datasets[0]
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.SeriesInstanceUID not in {d.SeriesInstanceUID for d in datasets}
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "Gemini CMR" in ds.DerivationDescription
    assert ds.PatientName == "Doe^Jane" and ds.PatientID == src.PatientID and ds.StudyDate == "20240102"
    assert int(ds.SeriesNumber) == 1007 and ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    assert float(ds.TriggerTime) == pytest.approx(study.phase_times_ms[1], abs=1e-3)
    # Each SR instance names the acquired image of the same phase nearest to it.
    ref = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
    assert ref in study.meta.dicom.sop_instance_uids[1]


def test_segmentations_read_back_with_highdicom_equal_the_nifti_labels(written):
    study, result, datasets, out = written
    sr_labels, _ = _nifti(out / "sr_labels.nii.gz")
    mr = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in (out / "dicom/sr").glob("MR_p01_*")}
    seg = hd.seg.segread(out / "dicom/sr/SEG_p01.dcm")
    assert seg.SegmentationType == "BINARY" and seg.StudyInstanceUID == datasets[0].StudyInstanceUID
    names = {int(d.SegmentNumber): d for d in seg.SegmentSequence}
    for label, d in names.items():
        key = [k for k, v in STRUCTURE_NAMES.items() if v == d.SegmentLabel][0]
        assert d.SegmentedPropertyTypeCodeSequence[0].CodeValue == STRUCTURE_CODES[key][0]
        assert d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert d.SegmentAlgorithmType == "AUTOMATIC"
        alg = d.SegmentationAlgorithmIdentificationSequence[0]
        assert alg.AlgorithmVersion == result.model_id[:64] and "Gemini CMR" in alg.AlgorithmName
        rgb = hd.color.CIELabColor.from_dicom_value(d.RecommendedDisplayCIELabValue).to_rgb(clip=True)
        assert np.abs(np.array(rgb, float) - LABEL_COLOURS[label]).max() <= 2
    ordered = sorted(mr, key=lambda uid: mr[uid].name)  # MR_p01_s000 ... slice order
    pixels = seg.get_pixels_by_source_instance(ordered, combine_segments=True, skip_overlap_checks=True)
    np.testing.assert_array_equal(pixels, sr_labels[1])
    # The project's loader: the SEG beside its series becomes the study's labels, every phase.
    back = load_study(out / "dicom/sr")
    np.testing.assert_array_equal(back.labels, sr_labels)
    assert back.labelled_phases == list(range(len(result.phases)))
    assert back.meta.label_source.startswith("DICOM segmentation")


def test_segmentation_of_the_acquired_slices_overlays_the_source_series(written, tmp_path):
    study, result, datasets, out = written
    lr_labels, _ = _nifti(out / "lr_labels.nii.gz")
    seg = pydicom.dcmread(out / "dicom/lr_labels/SEG_p00.dcm")
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [datasets[0].SeriesInstanceUID]
    source_uids = {d.SOPInstanceUID for d in datasets}
    refs = {fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for fg in seg.PerFrameFunctionalGroupsSequence}
    assert refs and refs <= source_uids
    both = tmp_path / "pacs"
    shutil.copytree(Path(study.meta.source_path), both / "source")
    shutil.copytree(out / "dicom/lr_labels", both / "seg")
    back = load_study(both)
    np.testing.assert_array_equal(back.labels, lr_labels)
    np.testing.assert_allclose(back.affine, study.affine)


def test_info_opens_the_series_and_a_segmentation(written, capsys):
    _, result, _, out = written
    assert cli_main(["info", str(out / "dicom/sr")]) == 0
    text = capsys.readouterr().out
    assert "labels:" in text and "DICOM segmentation" in text
    assert cli_main(["info", "--json", str(out / "dicom/sr/SEG_p00.dcm")]) == 0  # the SEG's series
    info = json.loads(capsys.readouterr().out)
    assert info["label_source"].startswith("DICOM segmentation") and info["label_values"] == [0, 1, 2, 3]
    assert info["shape"][1] == result.sr_grid.shape[0]
    assert cli_main(["info", str(out / "dicom/lr_labels")]) == 2
    err = capsys.readouterr().err
    assert "only DICOM segmentations" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["info", str(out / "dicom")]) == 0  # SR series + its SEGs; the others are reported
    assert "skipped 3 segmentation(s) that reference none of the loaded images" in capsys.readouterr().out


def test_viewer_label_files(written):
    _, result, _, out = written
    sr_labels, affine = _nifti(out / "sr_labels.nii.gz")
    for phase, name in ((result.ed_phase, "sr_labels_ed.seg.nrrd"), (result.es_phase, "sr_labels_es.seg.nrrd")):
        data, header = nrrd.read(str(out / name))
        np.testing.assert_array_equal(data.transpose(2, 1, 0), sr_labels[result.phases.index(phase)])
        lps = affine.copy()
        lps[:2] *= -1
        np.testing.assert_allclose(header["space directions"], lps[:3, :3].T, atol=1e-6)
        np.testing.assert_allclose(header["space origin"], lps[:3, 3], atol=1e-6)
        assert header["space"] == "left-posterior-superior"
        for n, (key, label_name) in enumerate(STRUCTURE_NAMES.items()):
            assert header[f"Segment{n}_Name"] == label_name
            assert int(header[f"Segment{n}_LabelValue"]) == n + 1
            colour = np.array(header[f"Segment{n}_Color"].split(), float) * 255
            assert np.abs(colour - LABEL_COLOURS[n + 1]).max() < 0.5
            assert STRUCTURE_CODES[key][0] in header[f"Segment{n}_Tags"]
    rows = [line.split() for line in (out / "labels_itksnap.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    assert [tuple(int(v) for v in r[1:4]) for r in rows[1:]] == [LABEL_COLOURS[i] for i in (1, 2, 3)]
    assert '"LV myocardium"' in (out / "labels_itksnap.txt").read_text()
    root = ET.parse(out / "sr.itksnap").getroot()
    entries = {e.get("key"): e.get("value") for e in root.iter("entry")}
    assert entries["SaveLocation"] == str(out.resolve())
    paths = [e.get("value") for e in root.iter("entry") if e.get("key") == "AbsolutePath"]
    assert paths == [str(out.resolve() / "sr_image.nii.gz"), str(out.resolve() / "sr_labels.nii.gz")]
    labels = [e.get("value") for e in root.iter("entry") if e.get("key") == "Label"]
    assert labels == list(STRUCTURE_NAMES.values())


def test_nifti_input_gets_a_new_study_and_dicom_stays_off_by_default(tmp_path):
    result = SuperResolver(model=FakePredictor()).run(make_study(n_phases=2), meshes="none")
    outputs.write_outputs(result, tmp_path / "plain", [])
    assert not (tmp_path / "plain/dicom").exists()
    assert json.loads((tmp_path / "plain/run.json").read_text())["dicom"] is None
    outputs.write_outputs(result, tmp_path / "out", [], dicom=True, dicom_compression="none")
    rec = json.loads((tmp_path / "out/run.json").read_text())["dicom"]
    assert rec["new_study"] is True and rec["transfer_syntax"] == pydicom.uid.ExplicitVRLittleEndian
    assert not (tmp_path / "out/dicom/lr_labels").exists()  # no acquired images to reference
    back = load_study(tmp_path / "out/dicom/sr")
    sr_image, affine = _nifti(tmp_path / "out/sr_image.nii.gz")
    assert np.abs(back.affine - affine).max() < 0.01
    np.testing.assert_array_equal(back.labels, result.sr_labels)
    ds = pydicom.dcmread(next((tmp_path / "out/dicom/sr").glob("MR_*.dcm")))
    assert ds.StudyInstanceUID == rec["study_instance_uid"] and ds.PatientID == "fake-001"


def test_a_run_without_dicom_removes_our_stale_dicom_files_only(tmp_path):
    study, result, _ = _dicom_result(tmp_path / "study", n_phases=2)
    out = tmp_path / "out"
    outputs.write_outputs(result, out, [])
    (out / "dicom/sr/notes.txt").write_text("mine")
    outputs.write_outputs(result, out, [], dicom=False)
    assert sorted(p.relative_to(out).as_posix() for p in (out / "dicom").rglob("*")) == ["dicom/sr",
                                                                                          "dicom/sr/notes.txt"]
    assert json.loads((out / "run.json").read_text())["dicom"] is None


def test_a_new_dicom_folder_moves_in_whole_and_a_rerun_replaces_file_by_file(tmp_path, monkeypatch):
    """First run into a new folder: `dicom/` is published with one rename, not one per file; the SR instances
    are written straight into the private staging folder (no temporary name each). A rerun into the same
    folder (with a user's file in `dicom/sr/`) replaces our files one by one and keeps the user's."""
    import os

    study, result, _ = _dicom_result(tmp_path / "study", n_phases=2)
    out = tmp_path / "out"
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        renamed.append(Path(dst).relative_to(out).as_posix() if out in Path(dst).parents else str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    outputs.write_outputs(result, out, [])
    n_sr = len(result.phases) * result.sr_grid.shape[0]
    assert "dicom" in renamed and not [r for r in renamed if r.startswith("dicom/")]
    assert not [r for r in renamed if Path(r).name.startswith("MR_")]  # neither a temporary name nor a move each
    first = sorted(p.relative_to(out).as_posix() for p in (out / "dicom").rglob("*.dcm"))
    assert len([f for f in first if "/MR_" in f]) == n_sr
    first_info = json.loads((out / "run.json").read_text())
    assert all((out / name).is_file() for name in first_info["outputs"])

    (out / "dicom/sr/notes.txt").write_text("mine")
    renamed.clear()
    outputs.write_outputs(result, out, [])
    assert "dicom" not in renamed and "dicom/sr/MR_p00_s000.dcm" in renamed
    again = sorted(p.relative_to(out).as_posix() for p in (out / "dicom").rglob("*.dcm"))
    assert again == first and (out / "dicom/sr/notes.txt").read_text() == "mine"
    a = pydicom.dcmread(out / "dicom/sr/MR_p00_s000.dcm")
    assert a.SeriesInstanceUID != first_info["dicom"]["series_instance_uids"]["sr_image"]  # the new run's
    assert not list(out.glob(f"{outputs.STAGING_PREFIX}*"))


def test_a_file_named_like_a_dicom_folder_is_refused_before_the_compute(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dicom").write_text("x")
    with pytest.raises(outputs.GeminiError, match="DICOM output folder"):
        outputs.check_output_folder(out)


def test_cli_dicom_options(tmp_path, monkeypatch, capsys):
    import gemini_cmr.core.engine as engine

    study, _, _ = _dicom_result(tmp_path / "study", n_phases=2)
    real = engine.SuperResolver

    class Fake(real):
        def __init__(self, model=None, adapter=None, device="auto", **kw):
            super().__init__(model=FakePredictor())

        def run(self, s, **kw):
            s.meta.extra.update(study.meta.extra)
            return super().run(s, **kw)

    monkeypatch.setattr(engine, "SuperResolver", Fake)
    src = study.meta.source_path
    assert cli_main(["super-resolve", src, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert (tmp_path / "a/dicom/sr/SEG_p00.dcm").is_file()
    assert cli_main(["super-resolve", src, "--out", str(tmp_path / "b"), "--quiet", "--no-dicom"]) == 0
    assert not (tmp_path / "b/dicom").exists() and (tmp_path / "b/sr_labels_ed.seg.nrrd").is_file()
    assert cli_main(["super-resolve", src, "--out", str(tmp_path / "c"), "--quiet",
                     "--dicom-compression", "none"]) == 0
    ds = pydicom.dcmread(next((tmp_path / "c/dicom/sr").glob("MR_*.dcm")))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    args = json.loads((tmp_path / "c/run.json").read_text())["arguments"]
    assert args["dicom"] is True and args["dicom_compression"] == "none"


def test_one_series_per_slice_stack_gets_a_segmentation_per_phase_and_series(tmp_path):
    """UK Biobank stores each slice as its own series; a segmentation references one series."""
    spec = CineSpec(n_slices=4, n_phases=2, rows=44, cols=48, spacing=(1.8, 1.8), gap=8.0, one_series_per_slice=True)
    datasets = make_cine(spec)
    write(tmp_path / "study", datasets)
    study = load_study(tmp_path / "study")
    study.meta.extra["heart_centre"] = study.grid.centre()
    study.meta.extra["heart_frame"] = study.grid.directions
    result = SuperResolver(model=FakePredictor()).run(study, meshes="none")
    outputs.write_outputs(result, tmp_path / "out", [])
    segs = sorted(p.name for p in (tmp_path / "out/dicom/lr_labels").iterdir())
    assert segs == [f"SEG_p{t:02d}_s{k:03d}.dcm" for t in range(2) for k in range(4)]
    shutil.copytree(tmp_path / "out/dicom/lr_labels", tmp_path / "study/seg")
    back = load_study(tmp_path / "study")
    lr_labels, _ = _nifti(tmp_path / "out/lr_labels.nii.gz")
    np.testing.assert_array_equal(back.labels, lr_labels)


def test_foreign_segments_are_ignored_with_a_warning_and_a_broken_seg_is_skipped(written, tmp_path):
    _, result, _, out = written
    folder = tmp_path / "sr"
    shutil.copytree(out / "dicom/sr", folder)
    for path in folder.glob("SEG_*.dcm"):
        ds = pydicom.dcmread(path)
        item = ds.SegmentSequence[2]
        item.SegmentLabel = "Liver"
        item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "10200004"
        if path.name == "SEG_p01.dcm":
            del ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence
            ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence = [pydicom.Dataset()]
        ds.save_as(path)
    back = load_study(folder)
    sr_labels, _ = _nifti(out / "sr_labels.nii.gz")
    assert 3 not in np.unique(back.labels)
    np.testing.assert_array_equal(back.labels[0], np.where(sr_labels[0] == 3, 0, sr_labels[0]))
    assert any("ignored segment(s) Liver" in w for w in back.meta.warnings)
    assert any("SEG_p01.dcm: unreadable frame references" in w for w in back.meta.warnings)
    assert back.labelled_phases == [0, 2]


def test_batch_passes_the_dicom_options_through(tmp_path, monkeypatch, capsys):
    import gemini_cmr.core.engine as engine
    from gemini_cmr.cli import batch
    from gemini_cmr.core.io.nifti import save_nifti
    from tests.core.engine.fakes import CentreFakePredictor

    real = engine.SuperResolver
    monkeypatch.setattr(engine, "SuperResolver",
                        lambda model=None, adapter=None, device="auto", **kw: real(model=CentreFakePredictor()))
    monkeypatch.setattr(batch, "model_identity",
                        lambda model, adapter: {"model": {"path": "default", "sha256": ["f" * 64]}, "adapter": None})
    studies = tmp_path / "studies"
    write(studies / "dcm", make_cine(CineSpec(n_slices=4, n_phases=2, rows=40, cols=40, spacing=(1.8, 1.8))))
    s = make_study(n_phases=2)
    save_nifti(studies / "nii.nii.gz", s.image, s.affine, phase_interval_ms=40.0)
    out = tmp_path / "out"
    assert cli_main(["batch", str(studies), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert (out / "dcm/dicom/lr_labels").is_dir() and not (out / "nii/dicom").exists()
    assert cli_main(["batch", str(studies), "--out", str(out), "--device", "cpu", "--quiet", "--dicom",
                     "--dicom-compression", "none"]) == 0  # other options: both redone
    rec = json.loads((out / "nii/run.json").read_text())
    assert rec["dicom"]["new_study"] is True and any("not DICOM" in w for w in rec["warnings"])
    assert rec["resume_key"]["options"]["dicom"] is True
    summary = json.loads((out / "batch_summary.json").read_text())
    assert {r["status"] for r in summary["studies"]} == {"ok"}


@pytest.mark.parametrize("compression", ["none", "jpeg-ls"])
def test_sr_instances_are_written_byte_for_byte_as_pydicom_writes_them(tmp_path, compression):
    """The SR series' writer encodes the elements its instances share with the template once
    (`InstanceWriter`): every file is the same bytes as `Dataset.save_as(enforce_file_format=True)`."""
    from pydicom.dataset import Dataset

    from gemini_cmr.core.io import dicom_write

    _, result, _ = _dicom_result(tmp_path / "in", n_phases=2)
    ctx = dicom_write.dicom_context(result.study, "m", "0" * 64, "1")
    ident = result.study.meta.dicom
    folder = tmp_path / "sr"
    headers = dicom_write.write_sr_series(folder, result.sr_image, result.sr_grid, result.phases,
                                          result.study.phase_times_ms, ctx, compression,
                                          source_grid=result.study.grid, source_uids=ident.sop_instance_uids)
    assert len(headers) == 2
    for row, phase in enumerate(result.phases):
        for k in (0, len(headers[row]) // 2):
            path = folder / f"MR_p{phase:02d}_s{k:03d}.dcm"
            ds = pydicom.dcmread(path)
            again = Dataset(ds)
            again.file_meta = ds.file_meta
            expected = tmp_path / "expected.dcm"
            again.save_as(expected, enforce_file_format=True)
            assert path.read_bytes() == expected.read_bytes()


def test_sr_series_jpegls_is_the_same_bytes_as_pydicom_compress(tmp_path, monkeypatch):
    """The JPEG-LS frames encoded by `encode_jpegls_frames` give the same files as pydicom's
    `Dataset.compress` per instance, with UIDs and times fixed."""
    import datetime as dt
    import io
    import itertools

    from gemini_cmr.core.io import dicom_write

    _, result, _ = _dicom_result(tmp_path / "in", n_phases=3)
    ident = result.study.meta.dicom
    real_encode = dicom_write.encode_jpegls_frames

    class FixedNow(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(dicom_write, "datetime", FixedNow)

    def write(folder, compression="jpeg-ls"):
        counter = itertools.count(1)
        monkeypatch.setattr(dicom_write, "generate_uid", lambda *a, **k: f"1.2.3.{next(counter)}")
        ctx = dicom_write.dicom_context(result.study, "m", "0" * 64, "1")
        dicom_write.write_sr_series(folder, result.sr_image, result.sr_grid, result.phases,
                                    result.study.phase_times_ms, ctx, compression, source_grid=result.study.grid,
                                    source_uids=ident.sop_instance_uids)
        return {p.name: p.read_bytes() for p in sorted(folder.glob("*.dcm"))}

    plain = write(tmp_path / "plain", "none").items()  # the same instances uncompressed, compressed by pydicom here
    reference = {}
    for name, data in plain:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.compress(dicom_write.JPEGLSLossless, ds.pixel_array, encoding_plugin="pyjpegls",
                    generate_instance_uid=False)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        reference[name] = out.getvalue()
    monkeypatch.setattr(dicom_write, "encode_jpegls_frames", real_encode)
    assert write(tmp_path / "direct") == reference
    assert len(reference) == 3 * result.sr_image.shape[1]
    ds = pydicom.dcmread(tmp_path / "direct" / next(iter(reference)))
    assert ds.file_meta.TransferSyntaxUID == dicom_write.JPEGLSLossless and ds.pixel_array.dtype == np.uint16


def test_segmentations_encoded_by_the_caching_encoder_are_the_bytes_pydicom_writes(tmp_path):
    """`CachingEncoder` (sequences laid out here, element bytes cached) writes each segmentation, on the SR
    grid and on the acquired slices, byte for byte as `Dataset.save_as(enforce_file_format=True)`."""
    import io

    from gemini_cmr.core.io import dicom_write

    _, result, _ = _dicom_result(tmp_path / "in", n_phases=2)
    ctx, headers, sources = _sr_headers_and_sources(tmp_path, result)
    encoder = dicom_write.CachingEncoder()
    jobs = (dicom_write.segmentation_jobs(tmp_path / "a", result.sr_labels, headers, result.phases, ctx, "sr_labels")
            + dicom_write.segmentation_jobs(tmp_path / "b", result.lr_labels, sources, result.phases, ctx,
                                            "lr_labels"))
    assert len(jobs) == 4
    with dicom_write.quiet_validation():
        for job in jobs:
            seg = dicom_write._segmentation(job.sources, job.labels, job.descriptions, job.ctx, job.role,
                                            job.series_uid, job.number, job.phase, job.grid_name)
            expected = io.BytesIO()
            seg.save_as(expected, enforce_file_format=True)
            assert encoder.file_bytes(seg) == expected.getvalue()


def _same_instance(ds: pydicom.Dataset) -> bytes:
    """`ds`'s file with its own UIDs, dates and times replaced by fixed ones."""
    import io

    uid = "1.2.3.4"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceCreationDate = ds.ContentDate = "20240102"
    ds.InstanceCreationTime = ds.ContentTime = "030405"
    ds.ContributingEquipmentSequence[-1].ContributionDateTime = "20240102030405"
    for item in [*ds.DimensionOrganizationSequence, *ds.DimensionIndexSequence]:
        item.DimensionOrganizationUID = "1.2.3.5"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("case", ["labels", "empty", "one segment", "one series per slice"])
def test_segmentations_are_what_highdicom_builds(tmp_path, case):
    """`SegmentationWriter` (one highdicom segmentation of one plane per series, the frames and references
    made here) writes what highdicom builds for the whole job, UIDs, dates and times aside; on the SR grid
    and on the acquired slices, with empty planes, an empty segmentation, a segment absent from some planes."""
    import io

    from gemini_cmr.core.io import dicom_write

    if case == "one series per slice":
        spec = CineSpec(n_slices=4, n_phases=2, rows=44, cols=50, spacing=(1.8, 1.8), gap=8.0,
                        one_series_per_slice=True)
        write(tmp_path / "in", make_cine(spec))
        study = load_study(tmp_path / "in")
        study.meta.extra["heart_centre"] = study.grid.centre()
        study.meta.extra["heart_frame"] = study.grid.directions
        result = SuperResolver(model=FakePredictor()).run(study, meshes="none")
    else:
        _, result, _ = _dicom_result(tmp_path / "in", n_phases=2)
    ctx, headers, sources = _sr_headers_and_sources(tmp_path, result)
    sr_labels, lr_labels = result.sr_labels.copy(), result.lr_labels.copy()
    if case == "empty":
        sr_labels[0] = 0
        lr_labels[1] = 0
    elif case == "one segment":
        sr_labels[0, ::2][sr_labels[0, ::2] == 2] = 0
        lr_labels[:, 1:][lr_labels[:, 1:] != 1] = 0
    jobs = (dicom_write.segmentation_jobs(tmp_path / "a", sr_labels, headers, result.phases, ctx, "sr_labels")
            + dicom_write.segmentation_jobs(tmp_path / "b", lr_labels, sources, result.phases, ctx, "lr_labels"))
    assert len(jobs) == (2 + 2 * 4 if case == "one series per slice" else 4)
    writer = dicom_write.SegmentationWriter()
    with dicom_write.quiet_validation():
        for job in jobs:
            ours = pydicom.dcmread(io.BytesIO(writer.file_bytes(job)))
            theirs = dicom_write._segmentation(job.sources, job.labels, job.descriptions, job.ctx, job.role,
                                               job.series_uid, job.number, job.phase, job.grid_name)
            assert int(ours.NumberOfFrames) == int(theirs.NumberOfFrames) > 0
            assert _same_instance(ours) == _same_instance(theirs)
    assert all(series is not None for series in writer._series.values())


def _sr_headers_and_sources(tmp_path, result):
    """The DICOM context, the uncompressed SR series' headers (written to tmp_path/sr) and the acquired
    slices' source images of a result: what the segmentation writers take."""
    from gemini_cmr.core.io import dicom_write

    study, ident = result.study, result.study.meta.dicom
    ctx = dicom_write.dicom_context(study, "m", "0" * 64, "1")
    headers = dicom_write.write_sr_series(tmp_path / "sr", result.sr_image, result.sr_grid, result.phases,
                                          study.phase_times_ms, ctx, "none", source_grid=study.grid,
                                          source_uids=ident.sop_instance_uids)
    return ctx, headers, dicom_write.source_images(study, result.phases, ctx)


def test_charls_through_ctypes_is_pyjpegls_byte_for_byte():
    """The GIL-free JPEG-LS path is in use here and encodes real-looking frames (smooth anatomy-like
    values, flat background, noise; odd sizes; the full 16-bit range) exactly as pyjpegls does."""
    from scipy import ndimage

    from gemini_cmr.core.io import dicom_write

    encode = dicom_write._charls_encoder()
    if encode is None:  # pyjpegls 1.5 (the version this was built against) must have it
        from importlib.metadata import version

        assert not version("pyjpegls").startswith("1.5."), "pyjpegls 1.5: the ctypes CharLS entry point failed"
        pytest.skip(f"pyjpegls {version('pyjpegls')}: no GIL-free CharLS entry point (pyjpegls encodes)")
    rng = np.random.default_rng(3)
    frames = [
        (ndimage.gaussian_filter(rng.normal(size=(61, 47)) * 900, 2) + 1500).clip(0, 65535).astype("<u2"),
        np.zeros((16, 16), "<u2"),
        rng.integers(0, 65536, size=(33, 129), dtype=np.uint16),
    ]
    frames[0][:, :10] = 0  # background beside the anatomy
    for frame in frames:
        assert encode(frame) == dicom_write._jpegls_reference(frame)
    # a strided view (one column of a larger array) is encoded as its own values
    view = np.arange(40 * 30, dtype="<u2").reshape(40, 30)[:, ::2]
    assert encode(view) == dicom_write._jpegls_reference(np.ascontiguousarray(view))


def test_sr_series_files_are_the_same_with_and_without_the_threaded_encoder(tmp_path, monkeypatch):
    """Phases encoded ahead on worker threads write the same files as pyjpegls one phase after the other."""
    import datetime as dt
    import itertools

    from gemini_cmr.core.io import dicom_write

    class FixedNow(dt.datetime):  # the series date and time: the same in both writes
        @classmethod
        def now(cls, tz=None):
            return cls(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(dicom_write, "datetime", FixedNow)
    _, result, _ = _dicom_result(tmp_path / "in", n_phases=4)

    def write(folder):
        counter = itertools.count(1)
        monkeypatch.setattr(dicom_write, "generate_uid", lambda *a, **k: f"1.2.3.{next(counter)}")
        ctx = dicom_write.dicom_context(result.study, "m", "0" * 64, "1")
        headers = dicom_write.write_sr_series(folder, result.sr_image, result.sr_grid, result.phases, None, ctx)
        files = {p.name: p.read_bytes() for p in sorted(folder.glob("*.dcm"))}
        return files, [[h.SOPInstanceUID for h in row] for row in headers]

    assert dicom_write.thread_workers() >= 1
    monkeypatch.setattr(dicom_write, "thread_workers", lambda: 3)  # more threads than this machine's cores
    threaded = write(tmp_path / "threaded")
    monkeypatch.setattr(dicom_write, "_charls_encoder", lambda: None)
    serial = write(tmp_path / "serial")
    assert threaded == serial and len(serial[0]) == 4 * result.sr_image.shape[1]


def test_sr_series_encoder_failure_and_cancel_stop_the_threaded_writing(tmp_path, monkeypatch):
    """An encoding error on a worker thread reaches the caller; a cancel stops before the next phase."""
    from gemini_cmr.core.errors import Cancelled
    from gemini_cmr.core.io import dicom_write

    _, result, _ = _dicom_result(tmp_path / "in", n_phases=4)
    ctx = dicom_write.dicom_context(result.study, "m", "0" * 64, "1")
    real = dicom_write.encode_jpegls_frames
    calls = []

    def failing(stored):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("JPEG-LS encoding failed: test")
        return real(stored)

    monkeypatch.setattr(dicom_write, "encode_jpegls_frames", failing)
    with pytest.raises(RuntimeError, match="test"):
        dicom_write.write_sr_series(tmp_path / "a", result.sr_image, result.sr_grid, result.phases, None, ctx)
    monkeypatch.setattr(dicom_write, "encode_jpegls_frames", real)
    rows = iter([False, True])
    with pytest.raises(Cancelled):
        dicom_write.write_sr_series(tmp_path / "b", result.sr_image, result.sr_grid, result.phases, None, ctx,
                                    cancel=lambda: next(rows))
    assert len(list((tmp_path / "b").glob("*.dcm"))) == result.sr_image.shape[1]  # the first phase only


def test_quality_capture_keeps_an_input_uid_pydicom_calls_invalid_without_a_warning(tmp_path):
    """Sunnybrook's UIDs have components with leading zeros: they are the study's identity and are kept, as
    in the other DICOM outputs, without pydicom's warning reaching the user."""
    import warnings

    import pydicom

    from gemini_cmr.core.io import dicom_write

    ctx = dicom_write.DicomContext("2.16.124.113543.6006.99.07295588411837466977", "1.2.3", {"PatientID": "p"},
                                   False, "m", "0" * 64, "v")
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[2, 3] = (255, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = dicom_write.write_quality_capture(tmp_path / "qc" / "QC.dcm", rgb, ctx)
    with dicom_write.quiet_validation():  # reading it back: pydicom would warn about the same UID
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == ctx.study_uid and ds.Rows == 8 and ds.Columns == 12
    assert np.array_equal(ds.pixel_array, rgb)
