"""DICOM Segmentation (SEG) objects read back as labels of the series they reference.

A SEG found beside the images of a cine (`core.io.dicom`) becomes the study's `labels`: each frame names
the source image it was derived from (Derivation Image Sequence, as highdicom writes it), so it lands on
that image's (phase, slice); each segment maps to a project label (0 background, 1 LV cavity, 2 LV
myocardium, 3 RV cavity) by its label text (`STRUCTURE_NAMES`, keys or short names) or else by its
segmented property type code (`STRUCTURE_CODES`). BINARY, FRACTIONAL (> half the maximum) and LABELMAP
segmentations are read. A SEG that references none of the loaded images, or whose frames have another
matrix, is skipped with a warning; segments of other structures are ignored with a warning.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import limits
from gemini_cmr.core.io.dicom_files import DicomFrame
from gemini_cmr.core.study import LABEL_OF, STRUCTURE_CODES, STRUCTURE_NAMES, STRUCTURE_SHORT, Study

#: Segmentation Storage (BINARY, FRACTIONAL) and Label Map Segmentation Storage.
SEGMENTATION_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

_BY_NAME = {name.lower(): key for key, name in STRUCTURE_NAMES.items()}
_BY_NAME.update({key: key for key in STRUCTURE_NAMES})
_BY_NAME.update({short.lower(): key for key, short in STRUCTURE_SHORT.items()})
_BY_CODE = {code: key for key, (code, _) in STRUCTURE_CODES.items()}


def is_segmentation(ds: Dataset) -> bool:
    try:
        return str(ds.get("SOPClassUID", "") or "") in SEGMENTATION_CLASSES
    except Exception:  # noqa: BLE001 - an undecodable header is not a segmentation
        return False


def referenced_series(ds: Dataset) -> list[str]:
    """SeriesInstanceUIDs a SEG references (Referenced Series Sequence), in order."""
    out = []
    for item in ds.get("ReferencedSeriesSequence") or []:
        uid = str(item.get("SeriesInstanceUID", "") or "")
        if uid and uid not in out:
            out.append(uid)
    return out


def segment_labels(ds: Dataset) -> tuple[dict[int, int], list[str]]:
    """{segment number: project label} and the names of segments that are none of the structures."""
    mapping: dict[int, int] = {}
    unknown: list[str] = []
    for item in ds.get("SegmentSequence") or []:
        number = int(item.get("SegmentNumber", 0) or 0)
        text = str(item.get("SegmentLabel", "") or "").strip()
        key = _BY_NAME.get(text.lower())
        if key is None:
            codes = item.get("SegmentedPropertyTypeCodeSequence") or []
            key = _BY_CODE.get(str(codes[0].get("CodeValue", ""))) if codes else None
        if key is None:
            unknown.append(text or f"segment {number}")
        else:
            mapping[number] = LABEL_OF[key]
    return mapping, unknown


def _frame_sources(ds: Dataset) -> list[tuple[int | None, str | None, int | None]]:
    """(segment number, referenced source SOPInstanceUID, referenced frame number or None) of every frame."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    out = []
    for fg in ds.get("PerFrameFunctionalGroupsSequence") or []:
        ident = fg.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence") or []
        number = int(ident[0].ReferencedSegmentNumber) if ident else None
        uid, frame = None, None
        for deriv in fg.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []:
            for src in deriv.get("SourceImageSequence") or []:
                uid = str(src.get("ReferencedSOPInstanceUID", "") or "") or None
                if uid:
                    frames = src.get("ReferencedFrameNumber")
                    if frames not in (None, ""):
                        frame = int(frames[0] if isinstance(frames, (list, tuple, MultiValue)) else frames)
                    break
            if uid:
                break
        out.append((number, uid, frame))
    return out


def _pixels(f: DicomFrame, n_frames: int) -> np.ndarray:
    ds = f.dataset
    rows, cols = int(ds.Rows), int(ds.Columns)
    limits.check_count(n_frames * rows * cols, "max_voxels", "segmentation too large", f.name)
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is one line
        raise StudyError(f"cannot decode the segmentation's pixel data ({type(exc).__name__}: {exc})",
                         f.name) from None
    return arr.reshape(n_frames, rows, cols)


def attach_segmentations(study: Study, segs: list[DicomFrame], warn: list[str]) -> int:
    """Put the labels of the SEG objects `segs` that reference `study`'s images into `study.labels`;
    returns how many were used. Needs `study.meta.dicom` (the SOPInstanceUIDs of the loaded images)."""
    ident = study.meta.dicom
    if ident is None or not segs:
        return 0
    # the loaded images by SOPInstanceUID, and by frame number too when they are frames of multi-frame files
    frames = ident.frame_numbers
    where = {(uid, frames[t][k] if frames else None): (t, k)
             for t, row in enumerate(ident.sop_instance_uids) for k, uid in enumerate(row)}
    _, _, ny, nx = study.image.shape
    labels = np.zeros(study.image.shape, dtype=np.uint8)
    phases: set[int] = set()
    used = 0
    elsewhere: list[str] = []
    for f in sorted(segs, key=lambda f: f.name):
        ds = f.dataset
        try:
            sources = _frame_sources(ds)
        except Exception as exc:  # noqa: BLE001 - a malformed segmentation must not stop the study
            warn.append(f"skipped segmentation {f.name}: unreadable frame references ({type(exc).__name__})")
            continue
        targets = [where.get((uid, frame if frames else None)) if uid else None for _, uid, frame in sources]
        if not any(t is not None for t in targets):
            elsewhere.append(f.name)
            continue
        if (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) != (ny, nx):
            warn.append(f"skipped segmentation {f.name}: {ds.get('Columns')}x{ds.get('Rows')} frames, the images "
                        f"are {nx}x{ny}")
            continue
        try:
            mapping, unknown = segment_labels(ds)
        except Exception as exc:  # noqa: BLE001
            warn.append(f"skipped segmentation {f.name}: unreadable segment descriptions ({type(exc).__name__})")
            continue
        if unknown:
            warn.append(f"segmentation {f.name}: ignored segment(s) {', '.join(unknown)} (not LV cavity, LV "
                        "myocardium or RV cavity)")
        if not mapping:
            continue
        pixels = _pixels(f, len(sources))
        kind = str(ds.get("SegmentationType", "BINARY")).upper()
        threshold = 0
        if kind == "FRACTIONAL":
            threshold = int(ds.get("MaximumFractionalValue", 255) or 255) // 2
        lut = np.zeros(max(max(mapping), int(pixels.max(initial=0))) + 1, dtype=np.uint8)
        for number, value in mapping.items():
            lut[number] = value
        for i, ((number, _, _), target) in enumerate(zip(sources, targets)):
            if target is None:
                continue
            t, k = target
            if kind == "LABELMAP":
                frame = lut[pixels[i]]
                labels[t, k] = np.where(frame > 0, frame, labels[t, k])
            elif number in mapping:
                labels[t, k][pixels[i] > threshold] = mapping[number]
            phases.add(t)
        used += 1
    if elsewhere:
        warn.append(f"skipped {len(elsewhere)} segmentation(s) that reference none of the loaded images, "
                    f"e.g. {elsewhere[0]}")
    if used:
        study.labels = labels
        study.labelled_phases = sorted(phases)
        study.meta.label_source = f"DICOM segmentation ({used} file{'s' if used > 1 else ''})"
    return used
