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
import functools
import logging
import os
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
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
from gemini_cmr.core.io.atomic import atomic_path
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
SERIES_NUMBER_OFFSETS = {"sr_image": 1000, "sr_labels": 2000, "lr_labels": 3000}
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
) -> list[list[Dataset]]:
    """Write the SR cine `image` (T', Z, Y, X) on `grid` as `MR_pPP_sSSS.dcm` files in `folder` (PP the
    study phase, SSS the slice); returns their headers [row][slice] without pixel data (the sources of the
    SR segmentation). `source_grid`/`source_uids` ([phase][slice] of the study) name each instance's
    nearest acquired image."""
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
    encoder = SharedElementWriter(template)
    out: list[list[Dataset]] = []
    for row, phase in enumerate(phases):
        if cancel is not None and cancel():
            raise Cancelled("writing DICOM outputs cancelled")
        stored = np.clip(np.rint((image[row] - intercept) / slope), 0, 65535).astype(np.uint16)
        frames = encode_jpegls_frames(stored) if syntax == JPEGLSLossless else stored
        headers = []
        for k in range(nz):
            # A new element dict sharing the template's elements: only elements the template lacks are set.
            ds = Dataset(dict(template))
            uid = generate_uid()
            ds.file_meta = _file_meta(MRImageStorage, uid, syntax)
            ds.SOPInstanceUID = uid
            ds.InstanceNumber = k * nt + row + 1
            ds.ImagePositionPatient = positions[k]
            ds.SliceLocation = locations[k]
            if phase_times_ms is not None:
                ds.TriggerTime = _ds_text(float(phase_times_ms[phase]))
            ds.TemporalPositionIdentifier = row + 1
            if nearest is not None:
                src = Dataset()
                src.ReferencedSOPClassUID = MRImageStorage
                src.ReferencedSOPInstanceUID = source_uids[phase][int(nearest[k])]
                ds.SourceImageSequence = [src]
            _save(ds, frames[k], folder / f"MR_p{phase:02d}_s{k:03d}.dcm", syntax, encoder)
            headers.append(ds)
        out.append(headers)
    return out


def encode_jpegls_frames(stored: np.ndarray) -> list[bytes]:
    """Each (Y, X) unsigned 16-bit frame of `stored` (Z, Y, X) as the encapsulated Pixel Data that
    `Dataset.compress(JPEGLSLossless, encoding_plugin="pyjpegls")` stores: one CharLS lossless codestream
    in a basic-offset-table encapsulation (without pydicom's per-call checks)."""
    from jpeg_ls import encode_pixel_data
    from pydicom.encaps import encapsulate

    _, ny, nx = stored.shape
    return [encapsulate([bytes(encode_pixel_data(np.ascontiguousarray(frame, dtype="<u2").tobytes(), 0,
                                                 rows=ny, columns=nx, samples_per_pixel=1, bits_stored=16))])
            for frame in stored]


def _description(what: str, ctx: DicomContext) -> str:
    base = f" of {ctx.series_description}" if ctx.series_description else ""
    return f"Gemini CMR {what}{base}"[:64]


class SharedElementWriter:
    """Encodes datasets that share most of their elements with a template (`Dataset(dict(template))`) the
    way `Dataset.save_as(path, enforce_file_format=True)` does, byte for byte (Explicit VR Little Endian
    or an encapsulated syntax), with the template's elements encoded once: only the elements an instance
    holds itself (its UIDs, position, pixel data) are encoded per file. pydicom's writer spends most of a
    single-frame instance's time on the shared elements (about 4x faster per SR instance)."""

    def __init__(self, template: Dataset):
        self.template = template
        self._cache: dict[int, tuple[int, bytes]] = {}  # tag -> (id of the element, its bytes)
        self._encodings = template.get("SpecificCharacterSet", pydicom.charset.default_encoding)
        self._meta_cache: dict[tuple, bytes] = {}  # (tag, VR, value) -> the file meta element's bytes

    def _element_bytes(self, ds: Dataset, tag) -> bytes:
        elem = ds.get_item(tag)
        shared = self.template._dict.get(tag) is elem
        if shared:
            hit = self._cache.get(int(tag))
            if hit is not None and hit[0] == id(elem):
                return hit[1]
        if elem.VR and " or " in elem.VR:
            elem = pydicom.filewriter.correct_ambiguous_vr_element(elem, ds, True)
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        pydicom.filewriter.write_data_element(fp, elem, self._encodings)
        data = fp.getvalue()
        if shared:
            self._cache[int(tag)] = (id(elem), data)
        return data

    def _meta_bytes(self, file_meta: FileMetaDataset) -> bytes:
        """`pydicom.filewriter.write_file_meta_info(enforce_standard=True)`'s bytes, with each element
        value encoded once (the instances differ only in their MediaStorageSOPInstanceUID)."""
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

    def encode(self, ds: Dataset) -> bytes:
        parts = [b"\x00" * 128, b"DICM", self._meta_bytes(ds.file_meta)]
        parts += [self._element_bytes(ds, tag) for tag in sorted(ds.keys())
                  if not (tag.element == 0 and tag.group > 6)]  # no retired group lengths, as pydicom
        return b"".join(parts)


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
        self._meta = SharedElementWriter(Dataset())

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

    def dataset_bytes(self, ds: Dataset, parent_encoding=pydicom.charset.default_encoding) -> bytes:
        encodings = ds.get("SpecificCharacterSet", parent_encoding)
        parts = []
        for tag in sorted(ds.keys()):
            if tag.element == 0 and tag.group > 6:
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

    def file_bytes(self, ds: Dataset) -> bytes:
        """The whole file (`ds.file_meta` must name Explicit VR Little Endian)."""
        preamble = getattr(ds, "preamble", None) or b"\x00" * 128
        return preamble + b"DICM" + self._meta._meta_bytes(ds.file_meta) + self.dataset_bytes(ds)


def save_dataset(ds: Dataset, path: Path, encoder: CachingEncoder | None = None) -> None:
    """`ds.save_as(path, enforce_file_format=True)`, through `encoder` when the dataset is Explicit VR Little
    Endian."""
    if encoder is not None and ds.file_meta.get("TransferSyntaxUID") == ExplicitVRLittleEndian:
        path.write_bytes(encoder.file_bytes(ds))
    else:
        ds.save_as(path, enforce_file_format=True)


def _save(ds: Dataset, pixels: np.ndarray | bytes, path: Path, syntax: str,
          writer: SharedElementWriter | None = None) -> None:
    """Encode `pixels` (or take them encapsulated already), write `ds` atomically (through `writer` when
    given), then drop the pixel data (the header stays for references)."""
    if syntax == ExplicitVRLittleEndian:
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    elif isinstance(pixels, bytes):  # already encapsulated (`encode_jpegls_frames`)
        ds.add_new(0x7FE00010, "OB", pixels)
        ds["PixelData"].is_undefined_length = True
    else:
        ds.compress(syntax, np.ascontiguousarray(pixels), encoding_plugin="pyjpegls", generate_instance_uid=False)
    with atomic_path(path) as tmp:
        if writer is None:
            ds.save_as(tmp, enforce_file_format=True)
        else:
            tmp.write_bytes(writer.encode(ds))
    del ds.PixelData


# --- the acquired images, as headers ------------------------------------------------------------------------
@_quietly
def source_images(study: Study, phases: Sequence[int], ctx: DicomContext) -> list[list[Dataset]] | None:
    """Headers of the acquired images of `phases` ([row][slice]) as highdicom needs them for a
    segmentation that references them: UIDs from `StudyMeta.dicom`, geometry of the study's grid. None
    when the study was not read from DICOM."""
    ident = study.meta.dicom
    if ident is None or ctx.new_study:
        return None
    orientation, positions, spacing, step = plane_geometry(study.grid)
    _, nz, ny, nx = study.image.shape
    out = []
    for phase in phases:
        row = []
        for k in range(nz):
            ds = _base(ctx, ident.sop_class_uid or MRImageStorage, ident.sop_instance_uids[phase][k],
                       ExplicitVRLittleEndian)
            ds.Modality = str(ctx.attributes.get("Modality") or "MR")
            ds.SeriesInstanceUID = ident.series_uids[k]
            ds.Rows, ds.Columns = ny, nx
            ds.ImageOrientationPatient = orientation
            ds.ImagePositionPatient = positions[k]
            ds.PixelSpacing = spacing
            ds.SliceThickness = _ds_text(study.meta.slice_thickness_mm or step)
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
    encoder = CachingEncoder()
    for job in jobs:
        if cancel is not None and cancel():
            raise Cancelled("writing DICOM outputs cancelled")
        write_segmentation_job(job, encoder)
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
def write_segmentation_job(job: SegmentationJob, encoder: CachingEncoder | None = None) -> Path:
    """Build and write one segmentation atomically; `encoder` (`CachingEncoder`) is shared by the jobs of
    one series."""
    seg = _segmentation(job.sources, job.labels, job.descriptions, job.ctx, job.role, job.series_uid,
                        job.number, job.phase, job.grid_name)
    with atomic_path(job.path) as tmp:
        save_dataset(seg, tmp, encoder or CachingEncoder())
    return job.path


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
            content_label=f"PHASE{phase:02d}"[:16],
            content_description=f"LV cavity, LV myocardium, RV cavity, phase {phase}, {grid_name}"[:64],
            series_description=_description(f"labels ({grid_name})", ctx),
        )


def file_bytes(paths: Sequence[Path]) -> int:
    return sum(os.path.getsize(p) for p in paths)


__all__ = ["COMPRESSIONS", "CachingEncoder", "DicomContext", "SegmentationJob", "dicom_context",
           "encode_jpegls_frames", "file_bytes", "plane_geometry", "save_dataset", "segment_descriptions",
           "segmentation_jobs", "source_images", "write_segmentation_job", "write_segmentations",
           "write_sr_series"]
