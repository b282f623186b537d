"""DICOM files -> `DicomFrame`s: each file parsed once, pixels decoded on demand with rescaling applied.

Why: a study folder may hold thousands of files, so a file is opened once and its header and raw pixel
bytes kept together; only the frames of the chosen series are decoded later (`frame_pixels`), with a
`np.frombuffer` fast path for plain little-endian integers. Non-DICOM files are recognised cheaply (no
'DICM' magic and no DICOM extension) and skipped; a DICOM file that cannot be parsed is a `StudyError`
naming the file. Absurd header values (huge matrices, non-orthonormal orientations) are refused here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import limits

#: Largest single image matrix accepted (rows or columns); more is a corrupt or hostile header.
MAX_MATRIX = 4096
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
#: Native (not encapsulated) pixel data: its length must match Rows x Columns x samples x bits.
_NATIVE = _UNCOMPRESSED | {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def _gdcm_only_where_needed() -> None:
    """GDCM (`python-gdcm`) decodes JPEG Lossless (process 14), which no other pydicom plugin reads; for the
    syntaxes other plugins decode it is taken out of pydicom's list, because on a corrupt JPEG 2000 frame its
    OpenJPEG prints to the process's stderr, around Python, before failing (the one-line error rule)."""
    from pydicom.pixels import decoders

    for name in ("JPEG2000Decoder", "JPEG2000LosslessDecoder", "JPEGBaseline8BitDecoder", "JPEGLSLosslessDecoder",
                 "JPEGLSNearLosslessDecoder", "RLELosslessDecoder", "HTJ2KDecoder", "HTJ2KLosslessDecoder",
                 "HTJ2KLosslessRPCLDecoder"):
        decoder = getattr(decoders, name, None)
        if decoder is not None and "gdcm" in getattr(decoder, "_available", {}) and len(decoder._available) > 1:
            decoder.remove_plugin("gdcm")


with contextlib.suppress(Exception):  # a pydicom without these hooks keeps its own choice
    _gdcm_only_where_needed()

#: Transfer syntaxes decoded by GDCM (JPEG Lossless process 14 with and without selection value 1; 12-bit
#: JPEG when Pillow cannot): its C++ decoders print to fd 2 on corrupt data ("Bogus marker length").
_GDCM_SYNTAXES = {"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.51"}
_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def _c_stderr_captured() -> Iterator[list[str]]:
    """What C libraries write to the process's stderr (fd 2) during the block goes to a temporary file
    instead; the list yielded receives that text when the block ends (for the one-line error)."""
    captured: list[str] = []
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        fd = 2
    with _FD2_LOCK, tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(fd)
        os.dup2(tmp.fileno(), fd)
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace").strip())

#: A source of one file: its display name (for messages) and a callable opening it for binary reading.
DicomSource = tuple[str, Callable[[], BinaryIO]]


@dataclass
class DicomFrame:
    """One 2D image with the header fields the stack builder needs, and its dataset for the pixels."""

    name: str
    dataset: Dataset
    series_uid: str
    sop_uid: str
    series_description: str
    image_type: tuple[str, ...]
    has_pixels: bool
    n_frames: int
    rows: int
    cols: int
    orientation: np.ndarray | None  # (6,) row direction then column direction, LPS
    position: np.ndarray | None  # (3,) centre of the first voxel, LPS mm
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    trigger_time: float | None
    temporal_position: float | None
    acquisition_time: float | None
    instance: float | None
    nbytes: int = 0  # size of the file (or zip member) it was read from
    # One frame of a multi-frame (enhanced) image (`expand_enhanced`): its 1-based number in the file, the
    # stack it belongs to (FrameContentSequence StackID), its own rescaling and slice thickness (from the
    # functional groups). None for a single-frame file.
    frame_number: int | None = None
    stack_id: str | None = None
    rescale: tuple[float | None, float | None] | None = None
    slice_thickness: float | None = None

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.orientation[:3], self.orientation[3:])
        return n / np.linalg.norm(n)

    def missing_geometry(self) -> str | None:
        for attr, tag in (
            ("orientation", "ImageOrientationPatient"),
            ("position", "ImagePositionPatient"),
            ("pixel_spacing", "PixelSpacing"),
        ):
            if getattr(self, attr) is None:
                return tag
        return None


@dataclass
class Scan:
    """What `scan_sources` found: the DICOM frames, and how many files were read and skipped."""

    frames: list[DicomFrame] = field(default_factory=list)
    n_files: int = 0
    n_skipped: int = 0


# --- reading files -----------------------------------------------------------------------------------
def as_float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _floats(ds: Dataset, keyword: str, count: int, name: str) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise StudyError(f"unreadable {keyword} {value!r}", name) from None
    if arr.shape != (count,) or not np.all(np.isfinite(arr)):
        raise StudyError(f"{keyword} must hold {count} finite numbers, got {value!r}", name)
    return arr


def _dicom_time(value) -> float | None:
    """DICOM TM 'HHMMSS.frac' -> seconds since midnight."""
    text = str(value or "").strip().replace(":", "")
    if len(text) < 2 or not text[:2].isdigit():
        return None
    try:
        hours = int(text[:2])
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def frame_from_dataset(ds: Dataset, name: str) -> DicomFrame:
    """Extract the stack-relevant header fields of one dataset (raises `StudyError` on absurd values)."""
    has_pixels = "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
    rows = int(ds.get("Rows", 0) or 0)
    cols = int(ds.get("Columns", 0) or 0)
    if has_pixels and not (0 < rows <= MAX_MATRIX and 0 < cols <= MAX_MATRIX):
        raise StudyError(f"implausible image size {cols}x{rows} (Columns x Rows)", name)
    orientation = _orientation(_floats(ds, "ImageOrientationPatient", 6, name), name)
    spacing = _spacing(_floats(ds, "PixelSpacing", 2, name), name)
    n_frames = int(as_float(ds.get("NumberOfFrames", 1)) or 1)
    if has_pixels:
        _check_pixel_length(ds, rows, cols, max(1, n_frames), name)
    return DicomFrame(
        name=name,
        dataset=ds,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or "").strip(),
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
        has_pixels=has_pixels,
        n_frames=n_frames,
        rows=rows,
        cols=cols,
        orientation=orientation,
        position=_floats(ds, "ImagePositionPatient", 3, name),
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        trigger_time=as_float(ds.get("TriggerTime")),
        temporal_position=as_float(ds.get("TemporalPositionIdentifier")),
        acquisition_time=_dicom_time(ds.get("AcquisitionTime")),
        instance=as_float(ds.get("InstanceNumber")),
    )


def _orientation(orientation: np.ndarray | None, name: str) -> np.ndarray | None:
    """ImageOrientationPatient checked to be two orthonormal vectors (then normalised)."""
    if orientation is None:
        return None
    r, c = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-2 or abs(np.linalg.norm(c) - 1) > 1e-2 or abs(np.dot(r, c)) > 1e-2:
        raise StudyError(f"ImageOrientationPatient {[float(v) for v in orientation]} is not two orthonormal vectors", name)
    return np.concatenate([r / np.linalg.norm(r), c / np.linalg.norm(c)])


def _spacing(spacing: np.ndarray | None, name: str) -> np.ndarray | None:
    if spacing is not None and not np.all((spacing > 1e-3) & (spacing < 100)):
        raise StudyError(f"implausible PixelSpacing {[float(v) for v in spacing]}", name)
    return spacing


# --- multi-frame (enhanced) images --------------------------------------------------------------------
#: Frames of a complex-valued acquisition other than the magnitude (MRImageFrameTypeSequence).
_NOT_MAGNITUDE = ("PHASE", "REAL", "IMAGINARY")


def _group_value(items: tuple[Dataset, Dataset], sequence: str, keyword: str):
    """`keyword` of the first item of functional group `sequence`, per-frame before shared."""
    for item in items:
        seq = item.get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value is not None and value != "":
                return value
    return None


def _group_floats(items: tuple[Dataset, Dataset], sequence: str, keyword: str, count: int, name: str
                  ) -> np.ndarray | None:
    for item in items:
        seq = item.get(sequence)
        if seq and seq[0].get(keyword) not in (None, ""):
            return _floats(seq[0], keyword, count, name)
    return None


def _datetime_seconds(value) -> float | None:
    """DICOM DT 'YYYYMMDDHHMMSS.frac' -> seconds since midnight (the time part)."""
    text = str(value or "").strip()
    return _dicom_time(text[8:].split("+")[0].split("-")[0]) if len(text) > 8 else None


def expand_enhanced(f: DicomFrame) -> list[DicomFrame]:
    """The frames of a multi-frame image as single frames, each with the position, orientation, pixel
    spacing, slice thickness, cardiac trigger delay, temporal position, acquisition time and rescaling of its
    functional groups (per-frame before shared); the stack builder then treats them as the single-frame
    files of a classic series. Frames of a complex acquisition other than the magnitude (phase, real,
    imaginary) are left out when magnitude frames are present. A single-frame file is returned as it is.
    A multi-frame image without per-frame functional groups (no geometry per frame) -> `StudyError`."""
    if f.n_frames <= 1 or not f.has_pixels or f.frame_number is not None:
        return [f]
    ds = f.dataset
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if not per:
        raise StudyError(f"multi-frame DICOM image ({f.n_frames} frames) without per-frame functional groups: "
                         "the frames' positions and times are unknown (export the series as single-frame "
                         "images)", f.name)
    if len(per) != f.n_frames:
        raise StudyError(f"NumberOfFrames is {f.n_frames} but the per-frame functional groups describe "
                         f"{len(per)} frames", f.name)
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    top_type = f.image_type
    out: list[DicomFrame] = []
    components: list[str] = []
    for i, item in enumerate(per):
        items = (item, shared)
        name = f"{f.name} (frame {i + 1})"
        frame_type = _group_value(items, "MRImageFrameTypeSequence", "FrameType")
        image_type = tuple(str(v).upper() for v in frame_type) if frame_type else top_type
        components.append(str(_group_value(items, "MRImageFrameTypeSequence", "ComplexImageComponent") or "").upper())
        spacing = _spacing(_group_floats(items, "PixelMeasuresSequence", "PixelSpacing", 2, name), name)
        orientation = _orientation(_group_floats(items, "PlaneOrientationSequence", "ImageOrientationPatient", 6,
                                                 name), name)
        slope = _group_value(items, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(items, "PixelValueTransformationSequence", "RescaleIntercept")
        stack = _group_value(items, "FrameContentSequence", "StackID")
        out.append(DicomFrame(
            name=name, dataset=ds, series_uid=f.series_uid, sop_uid=f.sop_uid,
            series_description=f.series_description, image_type=image_type, has_pixels=True, n_frames=1,
            rows=f.rows, cols=f.cols, orientation=orientation if orientation is not None else f.orientation,
            position=_group_floats(items, "PlanePositionSequence", "ImagePositionPatient", 3, name),
            pixel_spacing=f.pixel_spacing if spacing is None else (float(spacing[0]), float(spacing[1])),
            trigger_time=as_float(_group_value(items, "CardiacSynchronizationSequence",
                                               "NominalCardiacTriggerDelayTime")),
            temporal_position=as_float(_group_value(items, "FrameContentSequence", "TemporalPositionIndex")),
            acquisition_time=_datetime_seconds(_group_value(items, "FrameContentSequence",
                                                            "FrameAcquisitionDateTime")),
            instance=float(i + 1), nbytes=f.nbytes if i == 0 else 0, frame_number=i + 1,
            stack_id=None if stack is None else str(stack),
            rescale=(as_float(slope), as_float(intercept)) if slope is not None or intercept is not None else None,
            slice_thickness=as_float(_group_value(items, "PixelMeasuresSequence", "SliceThickness"))))
    if "MAGNITUDE" in components and any(c in _NOT_MAGNITUDE for c in components):
        out = [fr for fr, c in zip(out, components) if c not in _NOT_MAGNITUDE]
    return out


def _check_pixel_length(ds: Dataset, rows: int, cols: int, n_frames: int, name: str) -> None:
    """Native pixel data must hold what Rows x Columns x samples x bits claim (checked before any study
    array is allocated from those claims)."""
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = str(file_meta.get("TransferSyntaxUID", "")) if file_meta is not None else ""
    if tsyntax not in _NATIVE or "PixelData" not in ds:
        return
    bits = int(as_float(ds.get("BitsAllocated")) or 0)
    samples = int(as_float(ds.get("SamplesPerPixel", 1)) or 1)
    if bits not in (8, 16, 32, 64):
        return
    need = rows * cols * samples * (bits // 8) * n_frames
    have = len(ds.PixelData)
    if have < need:
        raise StudyError(f"truncated pixel data: {have} bytes, Rows x Columns ({rows}x{cols}) and "
                         f"BitsAllocated {bits} need {need}", name)


def looks_dicom(name: str, head: bytes) -> bool:
    """A file counts as DICOM when it has the 'DICM' magic at byte 128, or a .dcm/.ima/.dicom name
    (some exporters drop the preamble)."""
    return head[128:132] == b"DICM" or name.lower().endswith((".dcm", ".ima", ".dicom"))


def _size(fh) -> int | None:
    """Bytes in an open file (regular file or in-memory member), without reading it."""
    try:
        return os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        here = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(here)
        return int(end)
    except (AttributeError, OSError, ValueError):
        return None


def read_frame(name: str, open_file: Callable[[], BinaryIO]) -> DicomFrame | None:
    """Parse one file; None when it is not DICOM. A DICOM file that cannot be parsed -> `StudyError`.

    A file counts as DICOM when it has the 'DICM' magic at byte 128, or a .dcm/.ima name (some
    exporters drop the preamble). A DICOM file larger than `GEMINI_CMR_MAX_FILE_BYTES` is refused
    before it is read (pydicom reads a file whole).
    """
    with open_file() as fh:
        head = fh.read(132)
        if not looks_dicom(name, head):
            return None
        nbytes = _size(fh)
        if nbytes is not None:
            limits.check_count(nbytes, "max_file_bytes", "file too large for a DICOM image", name)
        fh.seek(0)
        try:
            ds = pydicom.dcmread(fh, force=head[128:132] != b"DICM")
        except InvalidDicomError:
            return None
        except Exception as exc:  # pydicom raises many types on truncated/corrupt input
            raise StudyError(f"truncated or corrupt DICOM file ({type(exc).__name__}: {exc})", name) from None
    # pydicom decodes elements lazily: a corrupt element (e.g. an unknown VR) raises on first access, so
    # every element read later (here, by the stack builder and the pixel decoder) is decoded now.
    try:
        if "SOPClassUID" not in ds and "PixelData" not in ds and "SeriesInstanceUID" not in ds:
            if _is_image_class(ds):
                raise StudyError("truncated DICOM file: the header stops before the image attributes", name)
            return None  # forced read of something that is not really DICOM
        if _is_image_class(ds) and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise StudyError("truncated DICOM file: an image object without pixel data", name)
        for keyword in _READ_LATER:
            ds.get(keyword)
        file_meta = getattr(ds, "file_meta", None)
        if file_meta is not None:
            file_meta.get("TransferSyntaxUID")
        frame = frame_from_dataset(ds, name)
        frame.nbytes = int(nbytes or 0)
        return frame
    except StudyError:
        raise
    except Exception as exc:
        raise StudyError(f"unreadable DICOM header ({type(exc).__name__}: {exc})", name) from None


#: Elements read after `read_frame` (stack builder, metadata, pixel decoding).
_READ_LATER = ("PatientID", "Manufacturer", "SliceThickness", "PatientSize", "PatientWeight", "SeriesNumber",
               "FrameOfReferenceUID", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
               "RescaleSlope", "RescaleIntercept", "PixelData", "PhotometricInterpretation", "SpacingBetweenSlices")


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation while reading (e.g. Sunnybrook's non-conformant UIDs).

    pydicom reports each odd value through both `warnings` and its logger, once per element access,
    which would bury real messages; values are still read as they are. Its pixel decoders log a full
    traceback (ERROR) when a frame cannot be decoded (e.g. a corrupt JPEG 2000 frame) before raising:
    the logger is silenced too, the exception becomes the one-line `StudyError`.
    """
    settings = pydicom.config.settings
    previous = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE
    logger = logging.getLogger("pydicom")  # its modules' loggers inherit this level
    previous_level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        settings.reading_validation_mode = previous
        logger.setLevel(previous_level)


def _is_image_class(ds: Dataset) -> bool:
    """Whether the file declares an image storage class (so it must carry pixel data)."""
    file_meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (file_meta.get("MediaStorageSOPClassUID") if file_meta is not None else None)
    name = getattr(uid, "name", "") if uid else ""
    return "Image Storage" in name and "Presentation" not in name


def scan_sources(sources: Iterable[DicomSource], where: str | None = None) -> Scan:
    """Read every source once; non-DICOM files are counted and skipped. The DICOM files read together
    (all kept in memory) may not exceed `GEMINI_CMR_MAX_TOTAL_BYTES`."""
    scan = Scan()
    total = 0
    for name, open_file in sources:
        scan.n_files += 1
        frame = read_frame(name, open_file)
        if frame is None:
            scan.n_skipped += 1
        else:
            total += frame.nbytes
            limits.check_count(total, "max_total_bytes", f"the DICOM files read so far (up to {name}) hold "
                               "too much data together", where)
            scan.frames.append(frame)
    return scan


def frame_pixels(f: DicomFrame) -> np.ndarray:
    """Decode one frame to float32 with RescaleSlope/Intercept applied (a frame of a multi-frame file:
    only that frame is decoded, with its functional groups' rescaling)."""
    ds = f.dataset
    arr = _fast_pixels(ds, f)
    if arr is None:
        file_meta = getattr(ds, "file_meta", None)
        tsyntax = str(file_meta.get("TransferSyntaxUID", "")) if file_meta is not None else ""
        quiet = _c_stderr_captured() if tsyntax in _GDCM_SYNTAXES else contextlib.nullcontext([])
        try:
            with quiet as printed:
                if f.frame_number is None:
                    arr = ds.pixel_array
                else:
                    from pydicom.pixels import pixel_array

                    arr = pixel_array(ds, index=f.frame_number - 1)
        except Exception as exc:
            said = "; ".join(line.strip() for text in printed for line in text.splitlines() if line.strip())
            raise StudyError(f"cannot decode pixel data ({type(exc).__name__}: {exc})"
                             + (f" (decoder: {said[:200]})" if said else ""), f.name) from None
    if arr.shape != (f.rows, f.cols):
        raise StudyError(f"pixel data shape {arr.shape} does not match Rows x Columns {f.rows}x{f.cols}", f.name)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise StudyError(f"{int(np.count_nonzero(~np.isfinite(arr)))} NaN/Inf pixel values", f.name)
    if f.rescale is not None:
        slope, intercept = f.rescale
    else:
        slope = as_float(ds.get("RescaleSlope"))
        intercept = as_float(ds.get("RescaleIntercept"))
    if arr.size:
        # Rescaled values must stay in float32's range (a RescaleSlope of 1e38 would give Inf, and numpy
        # a RuntimeWarning on stderr): bound them from the stored extremes first.
        with np.errstate(all="ignore"):
            lo, hi = float(np.min(arr)), float(np.max(arr))
        s = 1.0 if slope is None else slope
        big = max(abs(lo * s), abs(hi * s)) + abs(intercept or 0.0)
        if not big <= _FLOAT32_MAX:
            raise StudyError(f"RescaleSlope {s:g} / RescaleIntercept {intercept or 0:g} give values beyond the "
                             f"float32 range ({big:.3g})", f.name)
    with np.errstate(all="ignore"):
        out = arr.astype(np.float32)
        if slope is not None and slope != 1.0:
            out *= np.float32(slope)
        if intercept:
            out += np.float32(intercept)
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fast_pixels(ds: Dataset, f: DicomFrame) -> np.ndarray | None:
    """np.frombuffer for plain little-endian integer pixels (10x faster than `pixel_array`); else None."""
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = str(file_meta.get("TransferSyntaxUID", "")) if file_meta is not None else ""
    if tsyntax not in _UNCOMPRESSED or "PixelData" not in ds or int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", bits) or bits)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32) or (signed and stored != bits):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    data = ds.PixelData
    size = f.rows * f.cols * dtype.itemsize
    offset = 0 if f.frame_number is None else (f.frame_number - 1) * size
    if len(data) < offset + size:
        raise StudyError(f"truncated pixel data ({len(data)} of {offset + size} bytes)", f.name)
    arr = np.frombuffer(data, dtype=dtype, count=f.rows * f.cols, offset=offset).reshape(f.rows, f.cols)
    if not signed and stored < bits:
        arr = arr & np.array((1 << stored) - 1, dtype=dtype)
    return arr
