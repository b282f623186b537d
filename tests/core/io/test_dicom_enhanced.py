"""Enhanced (multi-frame) MR DICOM input: the frames of one file, or of one file per slice, load as the
classic single-frame series they encode (image, geometry, phase times, slice thickness), their derived
outputs reference the source frames, and a multi-frame file without per-frame geometry is refused with
its name."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.uid import EnhancedMRImageStorage, RLELossless

from gemini_cmr.core import outputs
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import load_study
from tests.core.engine.fakes import FakePredictor
from tests.core.io import dicom_factory as fac
from tests.core.io.dicom_factory import CineSpec


def _same_study(a, b) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    np.testing.assert_allclose(a.phase_times_ms, b.phase_times_ms)
    assert a.meta.slice_thickness_mm == b.meta.slice_thickness_mm
    assert a.meta.height_cm == pytest.approx(b.meta.height_cm)


@pytest.mark.parametrize("per_slice", [False, True], ids=["one-file", "one-file-per-slice"])
def test_enhanced_cine_loads_as_its_classic_series(tmp_path, per_slice):
    spec = CineSpec(slope=2.0, intercept=-10.0, gap=-8.0)  # slices acquired against the normal, rescaled
    classic = fac.make_cine(spec)
    fac.write(tmp_path / "classic", classic)
    files = fac.enhanced(classic, per_slice=per_slice)
    assert all(ds.SOPClassUID == EnhancedMRImageStorage and int(ds.NumberOfFrames) > 1 for ds in files)
    fac.write(tmp_path / "enhanced", files)
    ref, study = load_study(tmp_path / "classic"), load_study(tmp_path / "enhanced")
    _same_study(study, ref)
    ident = study.meta.dicom
    assert ident.sop_class_uid == EnhancedMRImageStorage
    # every (phase, slice) names its file and frame: the frame holds that image
    by_uid = {str(ds.SOPInstanceUID): ds for ds in files}
    for t in range(study.n_phases):
        for k in range(study.n_slices):
            ds = by_uid[ident.sop_instance_uids[t][k]]
            n = ident.frame_numbers[t][k]
            raw = np.frombuffer(ds.PixelData, "<i2").reshape(-1, spec.rows, spec.cols)[n - 1]
            np.testing.assert_array_equal(raw * spec.slope + spec.intercept, study.image[t, k])


def test_compressed_enhanced_frames_decode_one_by_one_with_their_own_rescaling(tmp_path):
    spec = CineSpec(n_slices=3, n_phases=4, slope=1.5, intercept=4.0)
    classic = fac.make_cine(spec)
    fac.write(tmp_path / "classic", classic)
    (ds,) = fac.enhanced(classic, per_frame_rescale=True)
    # one frame's rescaling differs from the others': only the functional groups say so
    item = ds.PerFrameFunctionalGroupsSequence[5].PixelValueTransformationSequence[0]
    item.RescaleSlope, item.RescaleIntercept = "3", "0"
    pos = [float(v) for v in ds.PerFrameFunctionalGroupsSequence[5].PlanePositionSequence[0].ImagePositionPatient]
    ds.compress(RLELossless, encoding_plugin="pydicom")
    fac.write(tmp_path / "enhanced", [ds])
    ref, study = load_study(tmp_path / "classic"), load_study(tmp_path / "enhanced")
    k = int(np.argmin([np.linalg.norm(spec.position(j) - pos) for j in range(spec.n_slices)]))
    t = int(float(ds.PerFrameFunctionalGroupsSequence[5].CardiacSynchronizationSequence[0]
                  .NominalCardiacTriggerDelayTime) // spec.phase_interval)
    stored = (ref.image[t, k] - spec.intercept) / spec.slope
    np.testing.assert_allclose(study.image[t, k], stored * 3.0)
    study.image[t, k] = ref.image[t, k]
    _same_study(study, ref)


def test_phase_frames_of_a_complex_acquisition_are_left_out(tmp_path):
    spec = CineSpec(n_slices=3, n_phases=4)
    classic = fac.make_cine(spec)
    fac.write(tmp_path / "classic", classic)
    fac.write(tmp_path / "enhanced", fac.enhanced(classic, phase_frames=True))
    _same_study(load_study(tmp_path / "enhanced"), load_study(tmp_path / "classic"))


def test_multiframe_without_per_frame_geometry_is_refused_with_the_file(tmp_path):
    (ds,) = fac.enhanced(fac.make_cine(CineSpec(n_slices=3, n_phases=4)))
    del ds.PerFrameFunctionalGroupsSequence
    fac.write(tmp_path, [ds])
    with pytest.raises(StudyError, match="without per-frame functional groups") as err:
        load_study(tmp_path)
    assert "IM" in str(err.value)  # the file is named
    (ds,) = fac.enhanced(fac.make_cine(CineSpec(n_slices=3, n_phases=4)))
    ds.NumberOfFrames = 7  # the header and the functional groups disagree
    ds.PixelData = ds.PixelData[: 7 * 20 * 24 * 2]
    fac.write(tmp_path / "bad", [ds])
    with pytest.raises(StudyError, match="NumberOfFrames is 7 but the per-frame functional groups describe 12"):
        load_study(tmp_path / "bad")


SMALL = dict(n_slices=6, n_phases=3, rows=44, cols=48, spacing=(1.8, 1.8), gap=8.0, thickness=8.0)


def _written(folder, out):
    """The study in `folder` through the pipeline (fake network, heart at the grid centre), outputs in `out`."""
    study = load_study(folder)
    study.meta.extra["heart_centre"] = study.grid.centre()
    study.meta.extra["heart_frame"] = study.grid.directions
    result = SuperResolver(model=FakePredictor()).run(study, meshes="none")
    outputs.write_outputs(result, out, [])
    return study


def test_outputs_of_an_enhanced_study_reference_the_source_frames(tmp_path):
    files = fac.enhanced(fac.make_cine(CineSpec(**SMALL)))
    fac.write(tmp_path / "study", files)
    out = tmp_path / "out"
    study = _written(tmp_path / "study", out)
    rec = json.loads((out / "run.json").read_text())["dicom"]
    assert rec["study_instance_uid"] == files[0].StudyInstanceUID and rec["new_study"] is False
    assert "multi-frame" in " ".join(rec["notes"])
    assert not (out / "dicom" / "lr_labels").exists()  # no segmentation on the acquired frames
    sr = sorted((out / "dicom" / "sr").glob("MR_*.dcm"))
    assert sr and (out / "dicom" / "sr" / "SEG_p00.dcm").exists()
    ident = study.meta.dicom
    for path in sr[:: max(1, len(sr) // 5)]:
        ds = pydicom.dcmread(path)
        src = ds.SourceImageSequence[0]
        assert src.ReferencedSOPClassUID == EnhancedMRImageStorage
        pairs = {(u, n) for urow, nrow in zip(ident.sop_instance_uids, ident.frame_numbers)
                 for u, n in zip(urow, nrow)}
        assert (src.ReferencedSOPInstanceUID, int(src.ReferencedFrameNumber)) in pairs


def test_segmentation_referencing_enhanced_frames_becomes_the_labels(tmp_path):
    import nibabel as nib

    classic = fac.make_cine(CineSpec(**SMALL))
    fac.write(tmp_path / "classic", classic)
    _written(tmp_path / "classic", tmp_path / "out")
    lr_labels = np.asarray(nib.load(tmp_path / "out" / "lr_labels.nii.gz").dataobj).transpose(3, 2, 1, 0)
    # the same images as enhanced frames; the segmentation's references moved onto those frames
    files = fac.enhanced(classic)
    where = {}
    for ds in files:
        for n, fg in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
            key = (tuple(float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient),
                   float(fg.CardiacSynchronizationSequence[0].NominalCardiacTriggerDelayTime))
            where[key] = (str(ds.SOPInstanceUID), n)
    frame_of = {str(d.SOPInstanceUID): where[(tuple(float(v) for v in d.ImagePositionPatient), float(d.TriggerTime))]
                for d in classic}
    fac.write(tmp_path / "both", files)
    for path in sorted((tmp_path / "out" / "dicom" / "lr_labels").glob("SEG_*.dcm")):
        seg = pydicom.dcmread(path)
        for fg in seg.PerFrameFunctionalGroupsSequence:
            src = fg.DerivationImageSequence[0].SourceImageSequence[0]
            uid, n = frame_of[str(src.ReferencedSOPInstanceUID)]
            src.ReferencedSOPClassUID, src.ReferencedSOPInstanceUID, src.ReferencedFrameNumber = (
                EnhancedMRImageStorage, uid, n)
        seg.save_as(tmp_path / "both" / path.name)
    back = load_study(tmp_path / "both")
    assert back.meta.label_source.startswith("DICOM segmentation")
    assert len(np.unique(lr_labels)) == 4  # every structure, on several slices and phases
    np.testing.assert_array_equal(back.labels, lr_labels)
