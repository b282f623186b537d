"""DICOM short-axis cine reader: files -> `Study` with exact RAS+ geometry (the stack builder).

The work is split in three modules:
- `dicom_files`: each file parsed once (header and raw pixel bytes together), pixels decoded only for
  the frames that are loaded, so a 240-file cine loads in a few tenths of a second;
- `dicom_series`: frames grouped into candidate stacks (a multi-position series, or UK Biobank's one
  series per slice) and the SAX cine chosen (most slices x phases, or the caller's SeriesInstanceUID); the
  single-position cines at an angle to it are kept on the study (`StudyMeta.long_axis_series`) for
  `core.longaxis.long_axis_in_study`;
- `seg`: DICOM segmentations (SEG) beside the images become the labels of the images they reference;
- here: the chosen stack becomes (T, Z, Y, X). Slices are positions along the slice normal
  (ImagePositionPatient . normal), phases are ordered by TriggerTime, then TemporalPositionIdentifier,
  AcquisitionTime, InstanceNumber (TriggerTime may differ between slices: one breath-hold each); the
  slice step is the distance between slice centres (SliceThickness goes to the metadata); DICOM
  patient space is LPS+ and the project's world RAS+, so the first two rows of the affine are negated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import limits
from gemini_cmr.core.io.dicom_files import (
    DicomFrame,
    DicomSource,
    as_float,
    frame_pixels,
    quiet_pydicom,
    read_frame,
    scan_sources,
)
from gemini_cmr.core.io.dicom_series import (
    Candidate,
    choose_candidate,
    dedupe,
    find_candidates,
    long_axis_candidates,
    one_series_per_position,
    positions,
)
from gemini_cmr.core.io.seg import attach_segmentations, is_segmentation
from gemini_cmr.core.study import DicomIdentity, Study, StudyMeta

__all__ = ["DicomFrame", "DicomSource", "build_study", "load_dicom", "quiet_pydicom", "read_frame"]

log = logging.getLogger(__name__)

#: Largest float32 cine (bytes) ever built; the cap in use is `limits.cap("max_image_bytes")`
#: (GEMINI_CMR_MAX_IMAGE_BYTES) and `limits.cap("max_voxels")`.
MAX_STUDY_BYTES = 8 * 1024**3
#: Two images of one slice and phase whose pixels differ by less than this (mean absolute difference
#: relative to the mean magnitude) are the same image exported twice; two acquisitions differ by their
#: noise, several percent.
DUPLICATE_TOLERANCE = 0.01
#: Relative tolerance on slice gaps before the stack is called unevenly spaced.
GAP_TOLERANCE = 0.1

_PHASE_KEYS = ("trigger_time", "temporal_position", "acquisition_time", "instance")


# --- building the stack -----------------------------------------------------------------------------
def _phase_key(f: DicomFrame) -> tuple:
    key = []
    for attr in _PHASE_KEYS:
        v = getattr(f, attr)
        key.append((0, v) if v is not None else (1, 0.0))
    return tuple(key)


def _warn_repeated_trigger_times(groups: list[list[DicomFrame]], warn: list[str]) -> None:
    """Two images of one slice at the same TriggerTime usually mean mixed image types (magnitude and
    phase) or two acquisitions in one series; their phases would interleave, so say so."""
    for k, group in enumerate(groups):
        times = [f.trigger_time for f in group]
        if None not in times and len(set(times)) < len(times):
            warn.append(f"slice {k + 1} has {len(times)} images but only {len(set(times))} distinct TriggerTimes "
                        "(mixed image types or repeated acquisition?); phases may be interleaved")
            return


def _same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Identical or near-identical images (a lossless or high-quality lossy re-export)."""
    if a.shape != b.shape:
        return False
    diff = float(np.mean(np.abs(a.astype(np.float64) - b)))
    scale = max(float(np.mean(np.abs(a))), float(np.mean(np.abs(b))))
    return diff <= DUPLICATE_TOLERANCE * scale if scale > 0 else diff == 0.0


def _moment(f: DicomFrame) -> tuple:
    """When in the cycle an image was acquired: TriggerTime and TemporalPositionIdentifier when either is
    stated, else AcquisitionTime and InstanceNumber."""
    if f.trigger_time is not None or f.temporal_position is not None:
        return f.trigger_time, f.temporal_position
    return None, None, f.acquisition_time, f.instance


def drop_duplicate_images(groups: list[list[DicomFrame]], warn: list[str]) -> list[list[DicomFrame]]:
    """Drop second copies of an image: same slice position, same moment in the cycle and the same pixels.

    A series exported twice (new SOPInstanceUIDs, so `dedupe` keeps both) would otherwise load with
    twice the phases, interleaved (an LVEF of 100%). Images at the same moment with different pixels
    (magnitude and phase images, a repeated acquisition) are kept and reported by
    `_warn_repeated_trigger_times`.
    """
    dropped = 0
    out = []
    pixels: dict[int, np.ndarray] = {}

    def px(f: DicomFrame) -> np.ndarray:
        if id(f) not in pixels:
            pixels[id(f)] = frame_pixels(f)
        return pixels[id(f)]

    for group in groups:
        by_moment: dict[tuple, list[DicomFrame]] = {}
        for f in group:
            by_moment.setdefault(_moment(f), []).append(f)
        if all(len(v) == 1 for v in by_moment.values()):
            out.append(group)
            continue
        keep_ids: set[int] = set()
        for same in by_moment.values():
            kept: list[DicomFrame] = []
            for f in same:
                if len(same) > 1 and any((f.rows, f.cols) == (k.rows, k.cols) and _same_pixels(px(k), px(f))
                                         for k in kept):
                    dropped += 1
                    continue
                kept.append(f)
            keep_ids.update(id(f) for f in kept)
        out.append([f for f in group if id(f) in keep_ids])
    if dropped:
        warn.append(f"ignored {dropped} duplicate image(s): the same slice position, trigger time and pixels as "
                    "another image (a series exported twice, with new SOPInstanceUIDs?)")
    return out


def _format_slices(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> 'slices 1-3, 6' (1-based, as users count)."""
    parts, start = [], None
    for i, k in enumerate(indices):
        if start is None:
            start = k
        if i + 1 == len(indices) or indices[i + 1] != k + 1:
            parts.append(f"{start + 1}" if start == k else f"{start + 1}-{k + 1}")
            start = None
    return ("slice " if len(indices) == 1 else "slices ") + ", ".join(parts)


def _complete_groups(
    groups: list[list[DicomFrame]], allow_incomplete: bool, where: str, warn: list[str]
) -> list[list[DicomFrame]]:
    counts = [len(g) for g in groups]
    full = max(counts)
    if min(counts) == full:
        return groups
    by_count: dict[int, list[int]] = {}
    for k, n in enumerate(counts):
        by_count.setdefault(n, []).append(k)
    detail = "; ".join(f"{_format_slices(ks)} of {len(groups)}: {n} phases"
                       for n, ks in sorted(by_count.items(), key=lambda kv: kv[1][0]))
    keep = [k for k, n in enumerate(counts) if n == full]
    if not allow_incomplete:
        raise StudyError(f"incomplete cine series: {detail} (allow_incomplete / --allow-incomplete loads the "
                         f"{len(keep)} complete slice(s))", where)
    if len(keep) < 2:
        raise StudyError(f"incomplete cine series: {detail}; fewer than 2 complete slices", where)
    warn.append(f"incomplete series ({detail}): loaded the complete subset, {_format_slices(keep)}")
    return [groups[k] for k in keep]


def _affine(groups: list[list[DicomFrame]], where: str, warn: list[str]) -> np.ndarray:
    """Voxel (column, row, slice) -> RAS+ mm. Slice step = distance between slice centres."""
    ref = groups[0][0]
    row_dir, col_dir = ref.orientation[:3], ref.orientation[3:]
    normal = ref.normal
    dy, dx = ref.pixel_spacing
    origins = np.array([g[0].position for g in groups])
    dist = origins @ normal
    nz = len(groups)
    step = (dist[-1] - dist[0]) / (nz - 1) if nz > 1 else float(ref.dataset.get("SliceThickness") or 1.0)
    if nz > 2:
        gaps = np.diff(dist)
        if np.max(np.abs(gaps - step)) > GAP_TOLERANCE * step:
            raise StudyError(f"uneven slice spacing: gaps between slice centres range {gaps.min():.2f}-"
                             f"{gaps.max():.2f} mm (missing slice?)", where)
    # In-plane offsets between slices are not representable in one affine: warn if above half a pixel.
    expected = origins[0] + np.outer(dist - dist[0], normal)
    shift = float(np.max(np.linalg.norm(origins - expected, axis=1)))
    if shift > 0.5 * min(dx, dy):
        warn.append(f"slices are shifted in-plane by up to {shift:.1f} mm; the stack uses the first slice's "
                    "in-plane position")
    affine = np.eye(4)
    affine[:3, 0] = row_dir * dx
    affine[:3, 1] = col_dir * dy
    affine[:3, 2] = normal * step
    affine[:3, 3] = origins[0]
    affine[:2, :] *= -1.0  # LPS -> RAS
    return affine


def _patient_size_cm(ds: Dataset, warn: list[str]) -> float | None:
    size = as_float(ds.get("PatientSize"))
    if size is None or size <= 0:
        return None
    if size < 3.0:  # metres, as the standard says
        return size * 100.0
    if 50.0 <= size <= 250.0:
        warn.append(f"PatientSize {size:g} looks like centimetres (DICOM uses metres); used as cm")
        return size
    return None


def build_study(
    candidate: Candidate, where: str, allow_incomplete: bool = False, warn: list[str] | None = None
) -> Study:
    """Turn a chosen candidate into a `Study` (T, Z, Y, X) float32 with a RAS+ affine."""
    warn = [] if warn is None else warn
    groups = one_series_per_position(positions(candidate.frames), warn)
    groups = drop_duplicate_images(groups, warn)
    groups = [sorted(g, key=_phase_key) for g in groups]
    _warn_repeated_trigger_times(groups, warn)
    groups = _complete_groups(groups, allow_incomplete, where, warn)
    nz, nt = len(groups), len(groups[0])
    ref = groups[0][0]
    nbytes = nt * nz * ref.rows * ref.cols * 4
    size = f"{nt} phases x {nz} slices x {ref.cols}x{ref.rows}"
    limits.check_count(nt * nz * ref.rows * ref.cols, "max_voxels", f"study too large: {size}", where)
    limits.check_count(nbytes, "max_image_bytes", f"study too large: {size} as float32", where)
    if nbytes > MAX_STUDY_BYTES:
        raise StudyError(f"study too large: {size} = {nbytes / 1024**3:.1f} GiB", where)
    affine = _affine(groups, where, warn)
    if nz >= 2:
        warn += limits.check_geometry((nz, ref.rows, ref.cols), affine, where)
    image = np.empty((nt, nz, ref.rows, ref.cols), dtype=np.float32)
    instances = np.zeros((nt, nz), dtype=np.int64)
    times = np.full((nt, nz), np.nan)
    for k, group in enumerate(groups):
        for t, f in enumerate(group):
            image[t, k] = frame_pixels(f)
            instances[t, k] = -1 if f.instance is None else int(f.instance)
            if f.trigger_time is not None:
                times[t, k] = f.trigger_time
    ds = ref.dataset
    meta = StudyMeta(
        source_path=where,
        format="dicom",
        patient_id=str(ds.get("PatientID", "") or ""),
        vendor=str(ds.get("Manufacturer", "") or ""),
        series_description=candidate.description,
        series_uid=candidate.series_uids[0],
        slice_thickness_mm=ref.slice_thickness if ref.slice_thickness is not None else as_float(ds.get("SliceThickness")),
        height_cm=_patient_size_cm(ds, warn),
        weight_kg=(w if (w := as_float(ds.get("PatientWeight"))) and w > 0 else None),
        warnings=warn,
        extra={
            "series_uids": list(candidate.series_uids),
            "instance_numbers": instances.tolist(),  # [phase][slice], for contour files named by instance
            "n_images": nt * nz,
        },
    )
    meta.dicom = _identity(groups, ds)
    phase_times = None if np.isnan(times).any() else times.mean(axis=1)
    return Study(image=image, affine=affine, phase_times_ms=phase_times, meta=meta)


#: Copied from the first image into `DicomIdentity.attributes`: the patient and study modules and the
#: series facts that derived series repeat (core/io/dicom_write.py).
IDENTITY_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "SeriesNumber", "SeriesDescription", "Modality",
    "BodyPartExamined", "PatientPosition", "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime",
    "FlipAngle",
)


def _identity(groups: list[list[DicomFrame]], ds: Dataset) -> DicomIdentity | None:
    """The study's DICOM identity (None when the images lack the UIDs a derived object needs). An element
    that cannot be decoded is left out: the identity never stops a study from loading."""
    nt = len(groups[0])
    frames = [[groups[k][t] for k in range(len(groups))] for t in range(nt)]
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    if not study_uid or any(not f.sop_uid for row in frames for f in row):
        return None
    attributes: dict[str, Any] = {}
    for keyword in IDENTITY_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - a corrupt optional element is simply not copied
            continue
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple, MultiValue)):
            attributes[keyword] = [str(v) for v in value]
        else:
            attributes[keyword] = str(value)
    multiframe = any(f.frame_number is not None for row in frames for f in row)
    return DicomIdentity(
        study_uid=study_uid,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        sop_instance_uids=[[f.sop_uid for f in row] for row in frames],
        series_uids=[g[0].series_uid for g in groups],
        attributes=attributes,
        frame_numbers=[[int(f.frame_number or 1) for f in row] for row in frames] if multiframe else None,
    )


def load_dicom(
    sources: Iterable[DicomSource],
    where: str,
    series_uid: str | None = None,
    allow_incomplete: bool = False,
    hint: str = "",
) -> Study:
    """Read DICOM sources (a folder's files or a zip's members) and load the SAX cine among them.

    `hint` is appended to the error when no DICOM image is found (e.g. where NIfTI files were seen).
    """
    with quiet_pydicom():
        return _load_dicom(sources, where, series_uid, allow_incomplete, hint)


def _load_dicom(
    sources: Iterable[DicomSource], where: str, series_uid: str | None, allow_incomplete: bool, hint: str
) -> Study:
    scan = scan_sources(sources, where)
    if not scan.frames:
        raise StudyError(f"no DICOM images among {scan.n_files} file(s){hint}", where)
    warn: list[str] = []
    if scan.n_skipped:
        warn.append(f"skipped {scan.n_skipped} non-DICOM file(s)")
    frames = dedupe(scan.frames, warn)
    segs = [f for f in frames if is_segmentation(f.dataset)]
    if segs:
        frames = [f for f in frames if not is_segmentation(f.dataset)]
        if not frames:
            raise StudyError(f"only DICOM segmentations (SEG) here, no images: load the folder that holds a "
                             f"segmentation together with the series it references{hint}", where)
    candidates, skipped = find_candidates(frames, warn)
    chosen = choose_candidate(candidates, skipped, series_uid, where)
    normal = chosen.frames[0].normal
    long_axis = long_axis_candidates(candidates, chosen)
    for c in candidates + skipped:
        if c is chosen or any(c is la for la in long_axis):  # long-axis cines: reported by their user
            continue
        if c.problem:
            reason = c.problem
        elif c.frames[0].orientation is not None and abs(float(np.dot(c.frames[0].normal, normal))) < 0.999:
            reason = "other orientation"
        else:
            reason = f"not chosen ({c.n_positions} slices x {c.n_phases} phases)"
        warn.append(f"skipped series {c.label}: {reason}")
    study = build_study(chosen, where, allow_incomplete, warn)
    study.meta.long_axis_series = long_axis
    if segs:
        attach_segmentations(study, segs, warn)
    for w in warn:
        log.info("%s: %s", where, w)
    return study
