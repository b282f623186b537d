"""DICOM outputs: the SR cine as a new MR series of the input's study, and its labels as DICOM
Segmentations (highdicom), so that PACS and DICOM viewers show them with the original images.

```python
ctx = dicom_context(study, model_name="gemini-acdc", model_id=sha256)   # the input's study, or a new one
mr = write_sr_series(folder, sr_image, sr_grid, phases, times, ctx)    # [row][slice] headers written
write_segmentations(folder, sr_labels, mr, ctx, "SR")                  # one SEG per phase on the SR series
write_segmentations(folder2, lr_labels, source_images(study, phases, ctx), ctx, "acquired slices")
```

- **SR series** (MR Image Storage, one single-frame instance per SR slice and phase): the input's Study
  Instance UID, Frame of Reference UID and patient and study modules (`StudyMeta.dicom`), a new Series
  Instance UID; ImageType DERIVED\\SECONDARY\\OTHER with a DerivationDescription naming the model; the
  SR grid's exact geometry (ImagePositionPatient and ImageOrientationPatient in LPS: the affine's first
  two rows negated; PixelSpacing [row, column] spacing; SliceThickness and SpacingBetweenSlices the SR
  slice step); TriggerTime of each phase (when the input states it), TemporalPositionIdentifier and
  InstanceNumber slice by slice, phases within a slice; unsigned 16-bit values with RescaleSlope and
  RescaleIntercept spanning the cine's range (within half a step, range / 65535, of the float image);
  each instance names the acquired image of the same phase nearest to it (SourceImageSequence). JPEG-LS
  lossless by default (about 2.6x smaller than uncompressed), or uncompressed Explicit VR Little Endian.
- **Segmentations** (Segmentation Storage, BINARY, one instance per phase: a segmentation may not hold two
  frames at one position, so the phases of a cine are separate instances of one series): segments LV
  cavity, LV myocardium, RV cavity with SNOMED CT category and type codes (`core.study.STRUCTURE_CODES`),
  display colours (`LABEL_COLOURS`), automatic algorithm identification (model name, sha256 of its
  weights). Each frame references the image it labels: the SR instances above, or the acquired instances
  of the input (`source_images`), so the second overlays the original series in a viewer.

A study that was not read from DICOM (NIfTI) has no study to join: `dicom_context` then makes a new Study
Instance UID and Frame of Reference UID (`DicomContext.new_study`), and there are no source images for a
segmentation of the acquired slices.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, MRImageStorage, generate_uid

from gemini_cmr.core.errors import Cancelled, GeminiError
from gemini_cmr.core.io.atomic import atomic_write_bytes, write_bytes
from gemini_cmr.core.parallel import thread_workers
from gemini_cmr.core.study import (
    LABEL_COLOURS,
    LABEL_OF,
    STRUCTURE_CATEGORY_CODE,
    STRUCTURE_CODES,
    STRUCTURE_NAMES,
    Grid,
    Study,
)

log = logging.getLogger(__name__)

Cancel = Callable[[], bool]

#: Transfer syntaxes of the SR series: name -> UID.
COMPRESSIONS = {"jpeg-ls": JPEGLSLossless, "none": ExplicitVRLittleEndian}
MANUFACTURER = "Gemini CMR"
#: Added to the input's SeriesNumber for the derived series (SR image, SR labels, labels on the input).
SERIES_NUMBER_OFFSETS = {"sr_image": 1000, "sr_labels": 2000, "lr_labels": 3000, "qc": 4000}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
#: Copied from the input into every derived instance: the patient and study modules.
PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientSize", "PatientWeight", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
)
#: MR acquisition facts repeated in the SR series (the MR Image module asks for them).
MR_KEYWORDS = ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime",
               "EchoTime", "FlipAngle", "MagneticFieldStrength", "PatientPosition", "BodyPartExamined")


@dataclass
class DicomContext:
    """Who and what the derived objects belong to."""

    study_uid: str
    frame_of_reference_uid: str
    attributes: dict[str, Any]  # input keyword -> value (text or list of texts)
    new_study: bool  # True: the input was not DICOM; a new study and frame of reference were made
    model_name: str
    model_id: str
    software_version: str
    series_description: str = ""
    series_number: int = 0
    series_uids: dict[str, str] = field(default_factory=dict)  # "sr_image" | "sr_labels" | "lr_labels" -> UID

    def series_uid(self, role: str) -> str:
        return self.series_uids.setdefault(role, generate_uid())


def dicom_context(study: Study, model_name: str, model_id: str, software_version: str) -> DicomContext:
    """The input's study identity (`StudyMeta.dicom`), or a new study for an input that is not DICOM."""
    ident = study.meta.dicom
    if ident is not None and ident.study_uid:
        attrs = dict(ident.attributes)
        number = _int(attrs.get("SeriesNumber"))
        return DicomContext(ident.study_uid, ident.frame_of_reference_uid or generate_uid(), attrs, False,
                            model_name, model_id, software_version, study.meta.series_description, number)
    attrs = {"PatientID": study.meta.patient_id or study.name, "PatientName": study.meta.patient_id or ""}
    if study.meta.height_cm:
        attrs["PatientSize"] = f"{study.meta.height_cm / 100:.3f}"
    if study.meta.weight_kg:
        attrs["PatientWeight"] = f"{study.meta.weight_kg:g}"
    now = datetime.now()
    attrs.update(StudyDate=now.strftime("%Y%m%d"), StudyTime=now.strftime("%H%M%S"))
    return DicomContext(generate_uid(), generate_uid(), attrs, True, model_name, model_id, software_version,
                        study.meta.series_description, 0)


@contextlib.contextmanager
def quiet_validation() -> Iterator[None]:
    """No pydicom complaints about the input's values copied into the outputs (e.g. Sunnybrook's UIDs with
    leading zeros: they are the input's identity and are kept as they are), and no highdicom notes."""
    settings = pydicom.config.settings
    previous = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE
    hd_log = logging.getLogger("highdicom")  # e.g. its note that an empty segmentation keeps all frames
    hd_level = hd_log.level
    hd_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = previous
        hd_log.setLevel(hd_level)


def _quietly(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with quiet_validation():
            return func(*args, **kwargs)
    return wrapper


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


# --- the pieces of a header -------------------------------------------------------------------------------
def _lps(affine: np.ndarray) -> np.ndarray:
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:2] *= -1.0
    return out


def _ds_text(v: float) -> str:
    """A decimal string (DS: at most 16 characters) holding `v` as exactly as it allows."""
    for digits in range(12, 3, -1):
        text = f"{v:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{v:.4g}"


def plane_geometry(grid: Grid) -> tuple[list[str], list[list[str]], list[str], float]:
    """ImageOrientationPatient, ImagePositionPatient per slice, PixelSpacing (LPS) of `grid`'s slices, and
    the slice step (mm)."""
    lps = _lps(grid.affine)
    dx, dy, dz = (float(v) for v in grid.spacing)
    orientation = np.concatenate([lps[:3, 0] / dx, lps[:3, 1] / dy])
    positions = [lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3] for k in range(grid.shape[0])]
    return ([_ds_text(float(v)) for v in orientation], [[_ds_text(float(v)) for v in p] for p in positions],
            [_ds_text(dy), _ds_text(dx)], dz)


def _file_meta(sop_class: str, sop_uid: str, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    return meta


def _base(ctx: DicomContext, sop_class: str, sop_uid: str, syntax: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid, syntax)
    ds.SpecificCharacterSet = ctx.attributes.get("SpecificCharacterSet") or "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, keyword, "")  # type 2: present, possibly empty
    for keyword in PATIENT_STUDY_KEYWORDS:
        _copy(ds, keyword, ctx.attributes.get(keyword))
    ds.StudyInstanceUID = ctx.study_uid
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    return ds


def _copy(ds: Dataset, keyword: str, value: Any) -> None:
    """Set an element from the input's text, leaving out values its VR does not allow (e.g. the date
    '20120000' of an anonymised study)."""
    if value is None or value == "":
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            setattr(ds, keyword, value)
            elem = ds[keyword]
            if elem.VR in ("DA", "TM", "DT", "DS", "IS"):
                for text in value if isinstance(value, list) else [value]:
                    pydicom.valuerep.validate_value(elem.VR, str(text), pydicom.config.RAISE)
                if elem.VR == "DA" and not _real_date(str(value)):
                    raise ValueError(value)
    except Exception:  # noqa: BLE001 - an invalid value is dropped, the element stays empty if required
        if keyword in ds:
            del ds[keyword]
        if keyword in ("PatientBirthDate", "StudyDate", "StudyTime", "PatientSex"):
            setattr(ds, keyword, "")


def _real_date(text: str) -> bool:
    try:
        datetime.strptime(text.strip(), "%Y%m%d")
    except ValueError:
        return False
    return True


def _scale(image: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) mapping unsigned 16-bit values onto the image's range."""
    lo, hi = float(np.min(image)), float(np.max(image))
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    return slope, lo


def _window(image: np.ndarray) -> tuple[float, float]:
    """Window centre and width from the 1st and 99.5th percentiles (on a subsample)."""
    sample = image[:, ::3, ::4, ::4]
    lo, hi = (float(v) for v in np.percentile(sample, [1.0, 99.5]))
    return (lo + hi) / 2.0, max(hi - lo, 1e-3)


# --- the SR series ------------------------------------------------------------------------------------------
@_quietly
def write_sr_series(
    folder: str | Path,
    image: np.ndarray,
    grid: Grid,
    phases: Sequence[int],
    phase_times_ms: Sequence[float] | None,
    ctx: DicomContext,
    compression: str = "jpeg-ls",
    source_grid: Grid | None = None,
    source_uids: list[list[str]] | None = None,
    cancel: Cancel | None = None,
    atomic: bool = True,
    source_frames: list[list[int]] | None = None,
    source_class: str = "",
) -> list[list[Dataset]]:
    """Write the SR cine `image` (T', Z, Y, X) on `grid` as `MR_pPP_sSSS.dcm` files in `folder` (PP the
    study phase, SSS the slice); returns their headers [row][slice] without pixel data (the sources of the
    SR segmentation). `source_grid`/`source_uids` ([phase][slice] of the study) name each instance's
    nearest acquired image (`source_class` its SOP class, MR Image Storage by default; `source_frames` its
    frame numbers when the acquired images are frames of multi-frame files). `atomic`: each file through a
    temporary name (False: straight, for a staging folder that is published whole)."""
    if compression not in COMPRESSIONS:
        raise GeminiError(f"unknown DICOM compression {compression!r} (choose {' or '.join(COMPRESSIONS)})")
    syntax = COMPRESSIONS[compression]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nt, nz, ny, nx = image.shape
    orientation, positions, spacing, step = plane_geometry(grid)
    normal = grid.normal * np.array([-1.0, -1.0, 1.0])
    slope, intercept = _scale(image)
    centre, width = _window(image)
    now = datetime.now()
    series_uid = ctx.series_uid("sr_image")
    nearest = None
    if source_grid is not None and source_uids is not None:
        k = np.rint(source_grid.world_to_index(grid.slice_centres())[:, 2]).astype(int)
        nearest = np.clip(k, 0, source_grid.shape[0] - 1)
    template = _base(ctx, MRImageStorage, "", syntax)  # what every instance shares
    template.Modality = "MR"
    template.SeriesInstanceUID = series_uid
    template.SeriesNumber = ctx.series_number + SERIES_NUMBER_OFFSETS["sr_image"]
    template.SeriesDescription = _description("SR", ctx)
    template.SeriesDate = template.ContentDate = now.strftime("%Y%m%d")
    template.SeriesTime = template.ContentTime = now.strftime("%H%M%S")
    template.Manufacturer = MANUFACTURER
    template.ManufacturerModelName = ctx.model_name[:64]
    template.SoftwareVersions = ctx.software_version
    template.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    template.DerivationDescription = (f"super-resolved and resampled to {spacing[1]} x {spacing[0]} x "
                                      f"{_ds_text(step)} mm by Gemini CMR, model {ctx.model_name} "
                                      f"(sha256 {ctx.model_id[:16]})")[:1024]
    for keyword in MR_KEYWORDS:
        _copy(template, keyword, ctx.attributes.get(keyword))
    if "ScanningSequence" not in template:
        template.ScanningSequence = "RM"  # research mode: nothing known of the acquisition
        template.SequenceVariant = "NONE"
    for keyword in ("ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength"):
        if keyword not in template:
            setattr(template, keyword, None)
    template.ImageOrientationPatient = orientation
    template.PixelSpacing = spacing
    template.SliceThickness = _ds_text(step)
    template.SpacingBetweenSlices = _ds_text(step)
    template.NumberOfTemporalPositions = nt
    template.CardiacNumberOfImages = nt
    template.SamplesPerPixel = 1
    template.PhotometricInterpretation = "MONOCHROME2"
    template.Rows, template.Columns = ny, nx
    template.BitsAllocated = 16
    template.BitsStored = 16
    template.HighBit = 15
    template.PixelRepresentation = 0
    template.RescaleSlope = _ds_text(slope)
    template.RescaleIntercept = _ds_text(intercept)
    template.RescaleType = "US"
    template.WindowCenter = _ds_text(centre)
    template.WindowWidth = _ds_text(width)
    del template.SOPInstanceUID
    locations = [_ds_text(float(np.dot([float(v) for v in pos], normal))) for pos in positions]
    writer = InstanceWriter(template, MRImageStorage, syntax)
    position_bytes = [writer.element(0x00200032, "DS", pos) for pos in positions]
    location_bytes = [writer.element(0x00201041, "DS", loc) for loc in locations]
    position_elems = [pydicom.DataElement(0x00200032, "DS", pos) for pos in positions]
    location_elems = [pydicom.DataElement(0x00201041, "DS", loc) for loc in locations]
    out: list[list[Dataset]] = []
    compress = syntax == JPEGLSLossless
    save = atomic_write_bytes if atomic else write_bytes

    def stored_frames(row: int) -> np.ndarray | list[bytes]:
        stored = _stored(image[row], slope, intercept)
        return encode_jpegls_frames(stored) if compress else stored

    # JPEG-LS: the next phases are encoded on worker threads (CharLS called without the GIL) while this
    # phase's files are written; without the GIL-free encoder, one phase after the other here.
    workers = thread_workers() if compress and _charls_encoder() is not None else 0
    ahead: dict[int, Future] = {}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers)) if workers else None
        stack.callback(lambda: [f.cancel() for f in ahead.values()])  # on the way out of an error
        for row, phase in enumerate(phases):
            if cancel is not None and cancel():
                raise Cancelled("writing DICOM outputs cancelled")
            if pool is None:
                frames = stored_frames(row)
            else:
                for r in range(row, min(len(phases), row + workers + 1)):
                    if r not in ahead:
                        ahead[r] = pool.submit(stored_frames, r)
                frames = ahead.pop(row).result()
            trigger = None if phase_times_ms is None else _ds_text(float(phase_times_ms[phase]))
            common = {0x00200100: writer.element(0x00200100, "IS", row + 1)}
            row_elems = {0x00200100: pydicom.DataElement(0x00200100, "IS", row + 1)}
            if trigger is not None:
                common[0x00181060] = writer.element(0x00181060, "DS", trigger)
                row_elems[0x00181060] = pydicom.DataElement(0x00181060, "DS", trigger)
            headers = []
            for k in range(nz):
                uid = generate_uid()
                number = k * nt + row + 1
                own = dict(common)
                own[0x00080018] = _ui_bytes(0x00080018, uid)
                own[0x00200013] = _text_bytes(0x00200013, "IS", str(number))
                own[0x00200032] = position_bytes[k]
                own[0x00201041] = location_bytes[k]
                reference = None
                if nearest is not None:
                    src = int(nearest[k])
                    item = (_ui_bytes(0x00081150, source_class or MRImageStorage)
                            + _ui_bytes(0x00081155, source_uids[phase][src]))
                    if source_frames is not None:
                        item += _text_bytes(0x00081160, "IS", str(source_frames[phase][src]))
                    reference = own[0x00082112] = _sequence_bytes(0x00082112, [item])
                own[0x7FE00010] = _pixel_data_parts(frames[k])
                save(folder / f"MR_p{phase:02d}_s{k:03d}.dcm", writer.file_parts(uid, own))
                elements = {**row_elems, 0x00080018: pydicom.DataElement(0x00080018, "UI", uid),
                            0x00200013: pydicom.DataElement(0x00200013, "IS", number),
                            0x00200032: position_elems[k], 0x00201041: location_elems[k]}
                if reference is not None:  # read from its bytes when asked for
                    elements[0x00082112] = pydicom.dataelem.RawDataElement(
                        pydicom.tag.Tag(0x00082112), "SQ", len(reference) - 12, reference[12:], 0, False, True)
                headers.append(_derived(template, elements))
            out.append(headers)
    return out


def _derived(template: Dataset, elements: dict) -> Dataset:
    """A dataset holding `template`'s elements (shared, not copied) and `elements` (tag -> DataElement), without
    the per-element checks of `Dataset(dict)`: those elements were checked when they were made."""
    ds = Dataset()
    ds._dict = {**template._dict, **{pydicom.tag.Tag(tag): elem for tag, elem in elements.items()}}
    return ds


# --- Explicit VR Little Endian, element by element ----------------------------------------------------------
_LONG_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"))
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _element_bytes(tag: int, vr: str, value: bytes) -> bytes:
    """One element (value already padded to even length) as pydicom writes it in Explicit VR Little Endian."""
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _ui_bytes(tag: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    return _element_bytes(tag, "UI", value + b"\x00" if len(value) % 2 else value)


def _text_bytes(tag: int, vr: str, text: str) -> bytes:
    value = text.encode("ascii")
    return _element_bytes(tag, vr, value + b" " if len(value) % 2 else value)


def _sequence_bytes(tag: int, items: Sequence[bytes]) -> bytes:
    """A sequence of defined length whose items (their elements' bytes) have defined lengths."""
    value = b"".join(_ITEM + struct.pack("<I", len(item)) + item for item in items)
    return _element_bytes(tag, "SQ", value)


def _pixel_data_parts(frame: np.ndarray | bytes) -> tuple:
    """Pixel Data of one unsigned 16-bit frame (OW; the frame's own memory, not copied), or of an
    encapsulated frame (OB of undefined length), in parts."""
    if isinstance(frame, bytes):
        return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF), frame, _SEQUENCE_DELIMITER
    data = memoryview(np.ascontiguousarray(frame, dtype="<u2")).cast("B")
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(data)), data


class InstanceWriter:
    """Whole files of instances that share a template dataset, as `Dataset.save_as(path,
    enforce_file_format=True)` writes them, byte for byte: the template's elements and the file meta
    elements are encoded once (by pydicom), each instance adds only its own elements, already encoded
    (`file_parts`)."""

    def __init__(self, template: Dataset, sop_class: str, syntax: str):
        self._encodings = template.get("SpecificCharacterSet", pydicom.charset.default_encoding)
        self._shared: list[tuple[int, bytes]] = []
        for tag in sorted(template.keys()):
            if tag.element == 0 and tag.group > 6:
                continue
            self._shared.append((int(tag), self._encode(template, template.get_item(tag))))
        self._layout: tuple[tuple[int, ...], list[bytes]] | None = None
        meta = _file_meta(sop_class, "1.2", syntax)
        pydicom.filewriter.validate_file_meta(meta, True)
        before, after = [], []
        for tag in sorted(meta.keys()):
            if tag in (0x00020000, 0x00020003):
                continue
            (before if tag < 0x00020003 else after).append(self._encode(meta, meta[tag], meta=True))
        self._meta_before, self._meta_after = b"".join(before), b"".join(after)
        self._cache: dict[tuple, bytes] = {}

    def _encode(self, ds: Dataset, elem, meta: bool = False) -> bytes:
        """pydicom's bytes of `elem` of `ds` (file meta elements: without a character set)."""
        if not elem.is_raw and elem.VR and " or " in elem.VR:
            elem = pydicom.filewriter.correct_ambiguous_vr_element(elem, ds, True)
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        if meta:
            pydicom.filewriter.write_data_element(fp, elem)
        else:
            pydicom.filewriter.write_data_element(fp, elem, self._encodings)
        return fp.getvalue()

    def element(self, tag: int, vr: str, value: Any) -> bytes:
        """The bytes pydicom writes for an element of this value (cached)."""
        key = (tag, vr, repr(value))
        data = self._cache.get(key)
        if data is None:
            data = self._cache[key] = self._encode(Dataset(), pydicom.DataElement(tag, vr, value))
        return data

    def file_parts(self, sop_uid: str, own: dict[int, bytes | tuple]) -> list:
        """The file of the instance `sop_uid` in parts (bytes-like, to be written one after the other); its
        own elements are `own` (tag -> bytes, or a tuple of parts); every instance of one writer must hold
        the same tags."""
        tags = tuple(sorted(own))
        if self._layout is None or self._layout[0] != tags:
            chunks, i = [], 0
            for tag in tags:
                j = i
                while j < len(self._shared) and self._shared[j][0] < tag:
                    j += 1
                if j < len(self._shared) and self._shared[j][0] == tag:
                    raise ValueError(f"element {tag:08X} is both shared and the instance's own")
                chunks.append(b"".join(data for _, data in self._shared[i:j]))
                i = j
            chunks.append(b"".join(data for _, data in self._shared[i:]))
            self._layout = (tags, chunks)
        chunks = self._layout[1]
        body = self._meta_before + _ui_bytes(0x00020003, sop_uid) + self._meta_after
        parts = [b"\x00" * 128 + b"DICM\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(body)) + body]
        for chunk, tag in zip(chunks, tags):
            value = own[tag]
            parts.append(chunk)
            parts += value if isinstance(value, tuple) else (value,)
        parts.append(chunks[-1])
        return parts

    def file_bytes(self, sop_uid: str, own: dict[int, bytes | tuple]) -> bytes:
        return b"".join(self.file_parts(sop_uid, own))


def _stored(image: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """`image` as the unsigned 16-bit values stored with RescaleSlope `slope`, RescaleIntercept `intercept`."""
    scaled = np.empty(image.shape, dtype=np.result_type(image.dtype, np.float32))
    np.subtract(image, intercept, out=scaled)
    np.divide(scaled, slope, out=scaled)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 65535, out=scaled)
    return scaled.astype("<u2")


class _JlsParameters(ctypes.Structure):
    """CharLS's `JlsParameters` (charls/public_types.h, the legacy C API): a lossless monochrome encode sets
    the six leading fields; everything after them stays zero (with room to spare beyond the struct)."""

    _fields_ = [("width", ctypes.c_int32), ("height", ctypes.c_int32), ("bitsPerSample", ctypes.c_int32),
                ("stride", ctypes.c_int32), ("components", ctypes.c_int32), ("allowedLossyError", ctypes.c_int32),
                ("interleaveMode", ctypes.c_int32), ("colorTransformation", ctypes.c_int32),
                ("outputBgr", ctypes.c_char), ("custom", ctypes.c_int32 * 5), ("jfif", ctypes.c_int32 * 6),
                ("thumbnail", ctypes.c_void_p), ("_spare", ctypes.c_byte * 256)]


def _jpegls_reference(frame: np.ndarray) -> bytes:
    """One (Y, X) unsigned 16-bit frame as pyjpegls encodes it: a lossless CharLS codestream."""
    from jpeg_ls import encode_pixel_data

    ny, nx = frame.shape
    return bytes(encode_pixel_data(np.ascontiguousarray(frame, dtype="<u2").tobytes(), 0, rows=ny, columns=nx,
                                   samples_per_pixel=1, bits_stored=16))


@functools.lru_cache(maxsize=1)
def _charls_encoder() -> Callable[[np.ndarray], bytes] | None:
    """CharLS's `JpegLsEncode`, from pyjpegls's own extension module, called through ctypes, which releases
    the GIL for the call (pyjpegls's wrapper holds it), so that threads encode frames in parallel. None
    (then pyjpegls encodes, one frame at a time) where the symbol is missing or where its codestream of a
    check frame is not byte for byte pyjpegls's; GEMINI_CMR_CHARLS_CTYPES=0 turns it off."""
    if os.environ.get("GEMINI_CMR_CHARLS_CTYPES", "1") == "0":
        return None
    try:
        import _CharLS

        encode = ctypes.CDLL(_CharLS.__file__).JpegLsEncode
    except (ImportError, OSError, AttributeError) as exc:
        log.debug("JPEG-LS through pyjpegls only (%s)", exc)
        return None
    encode.restype = ctypes.c_int
    encode.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p,
                       ctypes.c_size_t, ctypes.POINTER(_JlsParameters), ctypes.c_char_p]

    def encode_frame(frame: np.ndarray) -> bytes:
        frame = np.ascontiguousarray(frame, dtype="<u2")
        ny, nx = frame.shape
        params = _JlsParameters(width=nx, height=ny, bitsPerSample=16, stride=2 * nx, components=1)
        dst = ctypes.create_string_buffer(2 * frame.nbytes + 1024)
        written = ctypes.c_size_t(0)
        message = ctypes.create_string_buffer(256)
        err = encode(dst, len(dst), ctypes.byref(written), frame.ctypes.data, frame.nbytes, ctypes.byref(params),
                     message)
        if err != 0:
            raise RuntimeError(f"JPEG-LS encoding failed: {message.value.decode('ascii', 'replace')}")
        return dst.raw[:written.value]

    check = (np.arange(23 * 37, dtype=np.uint32).reshape(23, 37) * 2654435761 % 65521).astype("<u2")
    check[5:15, 9:30] = 1200  # a flat patch (run mode) among noise (regular mode)
    try:
        same = encode_frame(check) == _jpegls_reference(check)
    except (RuntimeError, OSError, ValueError) as exc:
        same = False
        log.debug("JPEG-LS through ctypes failed its check: %s", exc)
    if not same:
        log.debug("JPEG-LS through pyjpegls only: the ctypes call's codestream differs")
        return None
    return encode_frame


def encode_jpegls_frames(stored: np.ndarray) -> list[bytes]:
    """Each (Y, X) unsigned 16-bit frame of `stored` (Z, Y, X) as the encapsulated Pixel Data that
    `Dataset.compress(JPEGLSLossless, encoding_plugin="pyjpegls")` stores: one CharLS lossless codestream
    in a basic-offset-table encapsulation (without pydicom's per-call checks). Through `_charls_encoder`
    (the GIL released) where it passed its check, else through pyjpegls."""
    from pydicom.encaps import encapsulate

    encode = _charls_encoder() or _jpegls_reference
    return [encapsulate([encode(frame)]) for frame in stored]


@_quietly
def write_quality_capture(path: Path, rgb: np.ndarray, ctx: DicomContext, atomic: bool = True) -> Path:
    """The run's review image (`core.qc.snapshot`, (H, W, 3) uint8) as a Secondary Capture in the study, a
    series of its own ("Gemini CMR quality check"), so a PACS viewer shows the labels' outlines on the ED and ES
    slices and the quality checks' verdict beside the results."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"an RGB image is needed, not shape {rgb.shape}")
    ds = _base(ctx, SECONDARY_CAPTURE, generate_uid(), ExplicitVRLittleEndian)
    del ds.FrameOfReferenceUID, ds.PositionReferenceIndicator  # a picture, not a place in the patient
    now = datetime.now()
    ds.Modality = "OT"
    ds.ConversionType = "WSD"  # made by a workstation
    ds.SeriesInstanceUID = ctx.series_uid("qc")
    ds.SeriesNumber = ctx.series_number + SERIES_NUMBER_OFFSETS["qc"]
    ds.SeriesDescription = _description("quality check", ctx)
    ds.InstanceNumber = 1
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = ctx.model_name[:64]
    ds.SoftwareVersions = ctx.software_version
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "YES"  # the study's name and the verdict are drawn in
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    (atomic_write_bytes if atomic else write_bytes)(path, data)
    return path


def _description(what: str, ctx: DicomContext) -> str:
    base = f" of {ctx.series_description}" if ctx.series_description else ""
    return f"Gemini CMR {what}{base}"[:64]


class CachingEncoder:
    """Encodes whole datasets as `Dataset.save_as(path, enforce_file_format=True)` does in Explicit VR
    Little Endian, byte for byte, with each element value encoded once: sequences are laid out here as
    pydicom lays them out (defined-length items, the sequence's own length), and every other element's
    bytes come from pydicom's `write_data_element`, cached by (tag, VR, value, character set). Built for
    the segmentations, whose per-frame functional groups repeat the same few values (source UIDs,
    positions, codes) in thousands of small items; one encoder serves a series of them."""

    _SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    _ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"

    def __init__(self):
        self._cache: dict[tuple, bytes] = {}
        self._meta_cache: dict[tuple, bytes] = {}  # (tag, VR, value) -> the file meta element's bytes

    @staticmethod
    def _key(value: Any):
        if isinstance(value, (str, int, float)) or value is None:
            return type(value).__name__, str(value)
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            keys = tuple(CachingEncoder._key(v) for v in value)
            return None if any(k is None for k in keys) else ("seq", keys)
        if isinstance(value, pydicom.valuerep.PersonName):
            return "PN", str(value)
        return None  # bytes and anything else: not cached

    def _leaf(self, ds: Dataset, elem, encodings) -> bytes:
        key = None
        if not elem.is_raw:
            value_key = self._key(elem.value)
            if value_key is not None:
                enc = tuple(encodings) if isinstance(encodings, (list, tuple)) else encodings
                key = (int(elem.tag), elem.VR, elem.is_undefined_length, value_key, enc)
                hit = self._cache.get(key)
                if hit is not None:
                    return hit
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        pydicom.filewriter.write_data_element(fp, elem, encodings)
        data = fp.getvalue()
        if key is not None:
            self._cache[key] = data
        return data

    def dataset_bytes(self, ds: Dataset, parent_encoding=pydicom.charset.default_encoding,
                      encoded: dict[int, bytes] | None = None) -> bytes:
        """`ds`'s elements, and the elements `encoded` already (tag -> bytes) in their places."""
        encodings = ds.get("SpecificCharacterSet", parent_encoding)
        parts = []
        encoded = encoded or {}
        for tag in sorted([*ds.keys(), *(pydicom.tag.Tag(t) for t in encoded)]):
            if tag.element == 0 and tag.group > 6:
                continue
            if tag in encoded:
                parts.append(encoded[tag])
                continue
            elem = ds.get_item(tag)
            if not elem.is_raw and elem.VR and " or " in elem.VR:
                elem = pydicom.filewriter.correct_ambiguous_vr_element(elem, ds, True)
            if elem.is_raw or elem.VR != "SQ":
                parts.append(self._leaf(ds, elem, encodings))
                continue
            item_encodings = pydicom.charset.convert_encodings(encodings or [pydicom.charset.default_encoding])
            items = []
            for item in elem.value or ():
                body = self.dataset_bytes(item, item_encodings)
                if getattr(item, "is_undefined_length_sequence_item", False):
                    items.append(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + body + self._ITEM_DELIMITER)
                else:
                    items.append(b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body)
            value = b"".join(items)
            head = struct.pack("<HH", tag.group, tag.element) + b"SQ\x00\x00"
            if elem.is_undefined_length:
                parts.append(head + b"\xff\xff\xff\xff" + value + self._SEQUENCE_DELIMITER)
            else:
                parts.append(head + struct.pack("<I", len(value)) + value)
        return b"".join(parts)

    def file_bytes(self, ds: Dataset, encoded: dict[int, bytes] | None = None) -> bytes:
        """The whole file (`ds.file_meta` must name Explicit VR Little Endian); `encoded`: elements given as
        their bytes (tag -> bytes), which `ds` must not hold."""
        preamble = getattr(ds, "preamble", None) or b"\x00" * 128
        return preamble + b"DICM" + self.meta_bytes(ds.file_meta) + self.dataset_bytes(ds, encoded=encoded)

    def meta_bytes(self, file_meta: FileMetaDataset) -> bytes:
        """`pydicom.filewriter.write_file_meta_info(enforce_standard=True)`'s bytes, each element value
        encoded once."""
        pydicom.filewriter.validate_file_meta(file_meta, True)
        parts = []
        for tag in sorted(file_meta.keys()):
            if tag == 0x00020000:
                continue
            elem = file_meta[tag]
            key = (int(tag), elem.VR, elem.value if isinstance(elem.value, (str, bytes)) else repr(elem.value))
            data = self._meta_cache.get(key)
            if data is None:
                fp = DicomBytesIO()
                fp.is_little_endian, fp.is_implicit_VR = True, False
                pydicom.filewriter.write_data_element(fp, elem)
                data = self._meta_cache[key] = fp.getvalue()
            parts.append(data)
        body = b"".join(parts)
        file_meta.FileMetaInformationGroupLength = len(body)
        return b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(body)) + body


def save_dataset(ds: Dataset, path: Path, encoder: CachingEncoder | None = None) -> None:
    """`ds.save_as(path, enforce_file_format=True)`, through `encoder` when the dataset is Explicit VR Little
    Endian."""
    if encoder is not None and ds.file_meta.get("TransferSyntaxUID") == ExplicitVRLittleEndian:
        path.write_bytes(encoder.file_bytes(ds))
    else:
        ds.save_as(path, enforce_file_format=True)


# --- the acquired images, as headers ------------------------------------------------------------------------
@_quietly
def source_images(study: Study, phases: Sequence[int], ctx: DicomContext) -> list[list[Dataset]] | None:
    """Headers of the acquired images of `phases` ([row][slice]) as highdicom needs them for a
    segmentation that references them: UIDs from `StudyMeta.dicom`, geometry of the study's grid. None
    when the study was not read from DICOM, or its images are frames of multi-frame (enhanced) files."""
    ident = study.meta.dicom
    if ident is None or ctx.new_study or ident.frame_numbers is not None:
        return None  # frames of multi-frame images: highdicom would need the whole source instances
    orientation, positions, spacing, step = plane_geometry(study.grid)
    _, nz, ny, nx = study.image.shape
    base = _base(ctx, ident.sop_class_uid or MRImageStorage, "", ExplicitVRLittleEndian)
    del base.SOPInstanceUID
    base.Modality = str(ctx.attributes.get("Modality") or "MR")
    base.Rows, base.Columns = ny, nx
    base.ImageOrientationPatient = orientation
    base.PixelSpacing = spacing
    base.SliceThickness = _ds_text(study.meta.slice_thickness_mm or step)
    series = [pydicom.DataElement(0x0020000E, "UI", uid) for uid in ident.series_uids[:nz]]
    places = [pydicom.DataElement(0x00200032, "DS", pos) for pos in positions]
    out = []
    for phase in phases:
        row = []
        for k in range(nz):
            uid = ident.sop_instance_uids[phase][k]
            ds = _derived(base, {0x00080018: pydicom.DataElement(0x00080018, "UI", uid), 0x0020000E: series[k],
                                 0x00200032: places[k]})
            ds.file_meta = _file_meta(base.SOPClassUID, uid, ExplicitVRLittleEndian)
            row.append(ds)
        out.append(row)
    return out


# --- segmentations ------------------------------------------------------------------------------------------
def segment_descriptions(ctx: DicomContext) -> list:
    """The three segments, coded (SNOMED CT), coloured and attributed to the model."""
    import highdicom as hd
    from highdicom.sr.coding import CodedConcept
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"Gemini CMR {ctx.model_name}"[:64], family=codes.cid7162.ArtificialIntelligence,
        version=ctx.model_id[:64] or "unknown", source=MANUFACTURER,
        parameters={"model_sha256": ctx.model_id or "unknown"})
    category = CodedConcept(STRUCTURE_CATEGORY_CODE[0], "SCT", STRUCTURE_CATEGORY_CODE[1])
    heart = CodedConcept("80891009", "SCT", "Heart")
    out = []
    for key, name in STRUCTURE_NAMES.items():
        label = LABEL_OF[key]
        code, meaning = STRUCTURE_CODES[key]
        out.append(hd.seg.SegmentDescription(
            segment_number=label, segment_label=name, segmented_property_category=category,
            segmented_property_type=CodedConcept(code, "SCT", meaning), algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm, tracking_id=key, tracking_uid=generate_uid(),
            anatomic_regions=[heart], display_color=hd.color.CIELabColor.from_rgb(*LABEL_COLOURS[label])))
    return out


def write_segmentations(
    folder: str | Path,
    labels: np.ndarray,
    sources: list[list[Dataset]],
    phases: Sequence[int],
    ctx: DicomContext,
    role: str,
    cancel: Cancel | None = None,
) -> list[Path]:
    """One BINARY segmentation per phase (`SEG_pPP.dcm` in `folder`) of `labels` (T', Z, Y, X), frame k of
    phase row t referencing `sources[t][k]`. `role` is "sr_labels" (on the SR series) or "lr_labels" (on
    the acquired images). A stack made of one series per slice (UK Biobank) gets one segmentation per phase
    and series (`SEG_pPP_sSSS.dcm`, SSS its first slice): a segmentation references one series."""
    jobs = segmentation_jobs(folder, labels, sources, phases, ctx, role)
    writer = SegmentationWriter()
    for job in jobs:
        if cancel is not None and cancel():
            raise Cancelled("writing DICOM outputs cancelled")
        write_segmentation_job(job, writer)
    return [job.path for job in jobs]


@dataclass
class SegmentationJob:
    """One segmentation file to write (`write_segmentation_job`)."""

    path: Path
    sources: list[Dataset]
    labels: np.ndarray
    descriptions: list
    ctx: DicomContext
    role: str
    series_uid: str
    number: int
    phase: int
    grid_name: str


def segmentation_jobs(folder: str | Path, labels: np.ndarray, sources: list[list[Dataset]], phases: Sequence[int],
                      ctx: DicomContext, role: str) -> list[SegmentationJob]:
    """The segmentations `write_segmentations` writes, as jobs (the folder is made now)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_validation():
        descriptions = segment_descriptions(ctx)
    series_uid = ctx.series_uid(role)
    grid_name = "SR grid" if role == "sr_labels" else "acquired slices"
    groups: dict[str, list[int]] = {}
    for k, ds in enumerate(sources[0]):
        groups.setdefault(str(ds.SeriesInstanceUID), []).append(k)
    jobs = []
    for row, phase in enumerate(phases):
        for slices in groups.values():
            name = f"SEG_p{phase:02d}.dcm" if len(groups) == 1 else f"SEG_p{phase:02d}_s{slices[0]:03d}.dcm"
            jobs.append(SegmentationJob(folder / name, [sources[row][k] for k in slices], labels[row][slices],
                                        descriptions, ctx, role, series_uid, len(jobs) + 1, phase, grid_name))
    return jobs


@_quietly
def write_segmentation_job(job: SegmentationJob, writer: SegmentationWriter | None = None) -> Path:
    """Build and write one segmentation atomically; `writer` (`SegmentationWriter`) is shared by the jobs of
    one series."""
    atomic_write_bytes(job.path, (writer or SegmentationWriter()).file_bytes(job))
    return job.path


class SegmentationWriter:
    """The file of a segmentation job, as highdicom builds it (`_segmentation`) and pydicom writes it, without
    highdicom's per-frame and per-source work: per series of jobs (the same source geometry, segments and
    context), highdicom builds one segmentation of the first source plane, whose elements are the template;
    each job then gets its own UIDs, content label and dates, and its source references, per-frame functional
    groups and bit-packed frames are made here the way highdicom makes them (frames in segment order, then by
    position along the slice normal; planes without any label left out, unless all are empty; frames without
    the segment left out). Used under `quiet_validation`."""

    def __init__(self):
        self.encoder = CachingEncoder()
        self._series: dict[tuple, _SegmentationSeries | None] = {}

    def file_bytes(self, job: SegmentationJob) -> bytes:
        sources = job.sources
        first = sources[0]
        positions = tuple(tuple(str(v) for v in ds.ImagePositionPatient) for ds in sources)
        key = (id(job.descriptions), id(job.ctx), job.role, job.series_uid, job.grid_name, positions,
               tuple(str(v) for v in first.ImageOrientationPatient), int(first.Rows), int(first.Columns))
        if key not in self._series:
            self._series[key] = _SegmentationSeries.build(job, self.encoder)
        series = self._series[key]
        if series is None:  # a layout this writer does not know: highdicom builds it all
            seg = _segmentation(job.sources, job.labels, job.descriptions, job.ctx, job.role, job.series_uid,
                                job.number, job.phase, job.grid_name)
            return self.encoder.file_bytes(seg)
        return series.file_bytes(job, self.encoder)


@dataclass
class _SegmentationSeries:
    """What the segmentations of one series share (`SegmentationWriter`)."""

    keep: tuple  # objects whose ids key the series: kept alive
    base: Dataset  # the top-level elements but the per-instance ones
    creator: Dataset  # the contributing equipment item of highdicom (its date and time per instance)
    segment_numbers: np.ndarray
    sort_index: np.ndarray  # planes in highdicom's frame order
    positions: list[bytes]  # per plane: its PlanePositionSequence
    source_tail: bytes  # the source image item's elements after the two UIDs
    derivation_code: bytes  # DerivationCodeSequence
    _contents: dict[tuple[int, int], bytes] = field(default_factory=dict)  # FrameContentSequence by index values

    _DROP = ("PerFrameFunctionalGroupsSequence", "PixelData", "NumberOfFrames", "SourceImageSequence",
             "ReferencedSeriesSequence")

    @classmethod
    def build(cls, job: SegmentationJob, encoder: CachingEncoder) -> _SegmentationSeries | None:
        import highdicom as hd
        from highdicom.spatial import VOLUME_INDEX_CONVENTION, get_normal_vector, get_volume_positions

        seg = _segmentation(job.sources[:1], job.labels[:1], job.descriptions, job.ctx, job.role, job.series_uid,
                            job.number, job.phase, job.grid_name)
        frame = seg.PerFrameFunctionalGroupsSequence[0]
        if (set(frame.dir()) != {"DerivationImageSequence", "FrameContentSequence", "PlanePositionSequence",
                                 "SegmentIdentificationSequence"}
                or len(frame.DerivationImageSequence) != 1
                or set(frame.DerivationImageSequence[0].dir()) != {"SourceImageSequence", "DerivationCodeSequence"}
                or len(frame.DerivationImageSequence[0].SourceImageSequence) != 1
                or "DimensionOrganizationType" in seg or len(job.descriptions) < 2
                or len(seg.get("ContributingEquipmentSequence", [])) == 0
                or len(seg.get("DimensionOrganizationSequence", [])) != 1):
            return None
        derivation = frame.DerivationImageSequence[0]
        tail = Dataset(dict(derivation.SourceImageSequence[0]))
        del tail.ReferencedSOPClassUID, tail.ReferencedSOPInstanceUID
        code = Dataset()
        code.DerivationCodeSequence = derivation.DerivationCodeSequence
        base = Dataset(dict(seg))
        base.file_meta = seg.file_meta
        for keyword in cls._DROP:
            delattr(base, keyword)
        orientation = [float(v) for v in job.sources[0].ImageOrientationPatient]
        values = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in job.sources])
        measures = base.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        if "SpacingBetweenSlices" not in job.sources[0]:  # highdicom derives it from all the planes
            shared = _copy_sequence_item(base, "SharedFunctionalGroupsSequence")
            measures = _copy_sequence_item(shared, "PixelMeasuresSequence")
            spacing, _ = get_volume_positions(image_positions=values, image_orientation=orientation)
            if spacing is not None:
                measures.SpacingBetweenSlices = pydicom.valuerep.format_number_as_ds(spacing)
            elif "SpacingBetweenSlices" in measures:
                del measures.SpacingBetweenSlices
        normal = get_normal_vector(orientation, index_convention=VOLUME_INDEX_CONVENTION)
        _, sort_index = np.unique(normal[None] @ values.T, return_index=True)
        positions = []
        for ds in job.sources:
            item = Dataset()
            item.PlanePositionSequence = hd.PlanePositionSequence(
                coordinate_system=hd.CoordinateSystemNames.PATIENT, image_position=ds.ImagePositionPatient)
            positions.append(encoder.dataset_bytes(item))
        return cls(keep=(job.descriptions, job.ctx), base=base, creator=seg.ContributingEquipmentSequence[-1],
                   segment_numbers=np.array([int(d.SegmentNumber) for d in job.descriptions]),
                   sort_index=np.asarray(sort_index), positions=positions,
                   source_tail=encoder.dataset_bytes(tail), derivation_code=encoder.dataset_bytes(code))

    def file_bytes(self, job: SegmentationJob, encoder: CachingEncoder) -> bytes:
        import highdicom as hd
        from pydicom.valuerep import DA, DT, TM

        labels = np.ascontiguousarray(job.labels, dtype=np.uint8)
        if labels.max(initial=0) > self.segment_numbers.max():
            raise ValueError("Pixel array contains segments that lack descriptions.")
        n = labels.shape[0]
        nonempty = labels.reshape(n, -1).any(axis=1)
        omit = bool(nonempty.any())
        planes = self.sort_index[nonempty[self.sort_index]] if omit else self.sort_index
        pixels, present = _binary_frames(labels[planes], self.segment_numbers, omit)

        references = [_ui_bytes(0x00081150, str(ds.SOPClassUID)) + _ui_bytes(0x00081155, str(ds.SOPInstanceUID))
                      for ds in job.sources]
        derivations = [_sequence_bytes(0x00089124, [_sequence_bytes(0x00082112, [ref + self.source_tail])
                                                    + self.derivation_code]) for ref in references]
        items = []
        for si, segment in enumerate(self.segment_numbers):
            identification = _sequence_bytes(0x0062000A, [_element_bytes(0x0062000B, "US",
                                                                         struct.pack("<H", segment))])
            for dim, plane in enumerate(planes, 1):
                if present[si, dim - 1]:
                    content = self._contents.get((si, dim))
                    if content is None:
                        content = self._contents[si, dim] = _sequence_bytes(
                            0x00209111, [_element_bytes(0x00209157, "UL", struct.pack("<2I", si + 1, dim))])
                    items.append(derivations[plane] + content + self.positions[plane] + identification)
        series: dict[str, list[bytes]] = {}
        for ds, ref in zip(job.sources, references):
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ref)

        ds = Dataset(dict(self.base))
        uid = generate_uid()
        ds.file_meta = FileMetaDataset(self.base.file_meta)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = job.number
        label, description = _content(job.phase, job.grid_name)
        ds.ContentLabel = label
        ds.ContentDescription = description
        now = datetime.now()
        ds.InstanceCreationDate = ds.ContentDate = DA(now.date())
        ds.InstanceCreationTime = ds.ContentTime = TM(now.time())
        creator = Dataset(dict(self.creator))
        creator.ContributionDateTime = DT(datetime.now())
        ds.ContributingEquipmentSequence = [*self.base.ContributingEquipmentSequence[:-1], creator]
        organisation = hd.UID()
        item = Dataset()
        item.DimensionOrganizationUID = organisation
        ds.DimensionOrganizationSequence = [item]
        indices = []
        for index in self.base.DimensionIndexSequence:
            index = Dataset(dict(index))
            index.DimensionOrganizationUID = organisation
            indices.append(index)
        ds.DimensionIndexSequence = indices
        ds.NumberOfFrames = len(items)
        encoded = {
            0x00081115: _sequence_bytes(0x00081115, [_sequence_bytes(0x0008114A, refs) + _ui_bytes(0x0020000E, s)
                                                     for s, refs in series.items()]),
            0x00082112: _sequence_bytes(0x00082112, references),
            0x52009230: _sequence_bytes(0x52009230, items),
            0x7FE00010: _element_bytes(0x7FE00010, "OB", pixels),
        }
        return encoder.file_bytes(ds, encoded)


def _binary_frames(labels: np.ndarray, segments: np.ndarray, omit: bool) -> tuple[bytes, np.ndarray]:
    """The BINARY frames of `labels` (planes, Y, X), segment by segment, then plane by plane, bit-packed as
    highdicom packs them (little bit order, the frames one bit stream, an odd length padded with b"0"), and
    which (segment, plane) frames they are: those holding the segment, or all when `omit` is False."""
    n, ny, nx = labels.shape
    if omit:
        rows = np.flatnonzero(labels.any(axis=(0, 2)))
        cols = np.flatnonzero(labels.any(axis=(0, 1)))
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        x0, x1 = int(cols[0]) // 8 * 8, min(-(-(int(cols[-1]) + 1) // 8) * 8, nx)
    else:
        y0, y1, x0, x1 = 0, ny, 0, nx
    box = labels[:, y0:y1, x0:x1]
    masks = box[None] == segments[:, None, None, None]  # (segment, plane, rows, columns) of the box
    present = masks.reshape(*masks.shape[:2], -1).any(axis=2) if omit else np.ones(masks.shape[:2], bool)
    if nx % 8 == 0 and (x1 - x0) % 8 == 0:  # whole bytes per row: pack the box only, zeros around it
        frames = np.zeros((int(present.sum()), ny, nx // 8), np.uint8)
        frames[:, y0:y1, x0 // 8:x1 // 8] = np.packbits(masks[present], axis=2, bitorder="little")
        pixels = frames.tobytes()
    else:
        full = np.zeros((int(present.sum()), ny, nx), bool)
        full[:, y0:y1, x0:x1] = masks[present]
        pixels = np.packbits(full.reshape(-1), bitorder="little").tobytes()
    if len(pixels) % 2:
        pixels += b"0"  # highdicom's padding
    return pixels, present


def _copy_sequence_item(ds: Dataset, keyword: str) -> Dataset:
    """Replace `ds`'s one-item sequence `keyword` by a shallow copy of its item; returns the copy."""
    item = Dataset(dict(getattr(ds, keyword)[0]))
    setattr(ds, keyword, [item])
    return item


def _content(phase: int, grid_name: str) -> tuple[str, str]:
    """A segmentation's ContentLabel and ContentDescription."""
    return (f"PHASE{phase:02d}"[:16],
            f"LV cavity, LV myocardium, RV cavity, phase {phase}, {grid_name}"[:64])


def _segmentation(sources: list[Dataset], labels: np.ndarray, descriptions: list, ctx: DicomContext, role: str,
                  series_uid: str, number: int, phase: int, grid_name: str):
    import highdicom as hd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom's notes on person names and the like
        return hd.seg.Segmentation(
            source_images=sources,
            pixel_array=np.ascontiguousarray(labels, dtype=np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=ctx.series_number + SERIES_NUMBER_OFFSETS[role],
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=ctx.model_name[:64] or "Gemini CMR",
            software_versions=ctx.software_version,
            device_serial_number="0",
            content_label=_content(phase, grid_name)[0],
            content_description=_content(phase, grid_name)[1],
            series_description=_description(f"labels ({grid_name})", ctx),
        )


def file_bytes(paths: Sequence[Path]) -> int:
    return sum(os.path.getsize(p) for p in paths)


__all__ = ["COMPRESSIONS", "CachingEncoder", "DicomContext", "InstanceWriter", "SegmentationJob", "SegmentationWriter",
           "dicom_context",
           "encode_jpegls_frames", "file_bytes", "plane_geometry", "save_dataset", "segment_descriptions",
           "segmentation_jobs", "source_images", "write_quality_capture", "write_segmentation_job",
           "write_segmentations", "write_sr_series"]
