"""Small synthetic DICOM cine series written by the tests: exact, known geometry and pixel codes.

Every pixel encodes where it came from, `1000 * phase + 100 * slice + (row + column) % 50`, so a test
can check slice order, phase order and row/column orientation from the loaded array alone.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

# An oblique short-axis-like orientation (row direction, column direction), orthonormal, LPS.
_r = np.array([0.6, 0.64, -0.48])
_c = np.cross(np.array([0.0, 0.6, 0.8]), _r)
OBLIQUE = np.concatenate([_r / np.linalg.norm(_r), _c / np.linalg.norm(_c)])
AXIAL = np.array([1.0, 0, 0, 0, 1.0, 0])


def pixel_code(t: int, k: int, rows: int, cols: int) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols]
    return (1000 * t + 100 * k + (r + c) % 50).astype(np.int16)


@dataclass
class CineSpec:
    """Geometry and tags of one synthetic cine stack."""

    n_slices: int = 4
    n_phases: int = 5
    rows: int = 20
    cols: int = 24
    spacing: tuple[float, float] = (1.5, 1.25)  # PixelSpacing: (between rows, between columns)
    gap: float = 8.0  # distance between slice centres
    thickness: float = 6.0
    orientation: np.ndarray = field(default_factory=lambda: OBLIQUE.copy())
    origin: np.ndarray = field(default_factory=lambda: np.array([-40.0, 25.0, 60.0]))
    slope: float = 1.0
    intercept: float = 0.0
    description: str = "cine_sax"
    one_series_per_slice: bool = False
    phase_interval: float = 40.0
    trigger_offset_per_slice: float = 3.0  # TriggerTime differs per slice (separate breath-holds)
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "NONE")
    patient_size_m: float | None = 1.72
    patient_weight_kg: float | None = 70.0

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])

    def position(self, k: int) -> np.ndarray:
        return self.origin + k * self.gap * self.normal

    def lps_of(self, column: float, row: float, k: int) -> np.ndarray:
        """World LPS of voxel (column, row, slice)."""
        dy, dx = self.spacing
        return self.position(k) + column * dx * self.orientation[:3] + row * dy * self.orientation[3:]


def make_cine(spec: CineSpec, study_uid: str | None = None, for_uid: str | None = None) -> list[Dataset]:
    """Datasets for every (slice, phase) of `spec`, InstanceNumber in acquisition order."""
    study_uid = study_uid or generate_uid()
    for_uid = for_uid or generate_uid()
    series = [generate_uid() for _ in range(spec.n_slices if spec.one_series_per_slice else 1)]
    out = []
    for k in range(spec.n_slices):
        for t in range(spec.n_phases):
            ds = _base(study_uid, for_uid)
            s = k if spec.one_series_per_slice else 0
            ds.SeriesInstanceUID = series[s]
            ds.SeriesDescription = f"{spec.description}_b{k + 1}" if spec.one_series_per_slice else spec.description
            ds.SeriesNumber = 10 + s
            ds.InstanceNumber = (t + 1) if spec.one_series_per_slice else k * spec.n_phases + t + 1
            ds.ImageType = list(spec.image_type)
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in spec.orientation]
            ds.ImagePositionPatient = [f"{v:.6f}" for v in spec.position(k)]
            ds.PixelSpacing = [f"{v:.6f}" for v in spec.spacing]
            ds.SliceThickness = f"{spec.thickness:g}"
            ds.SpacingBetweenSlices = f"{spec.gap:g}"
            ds.TriggerTime = f"{t * spec.phase_interval + k * spec.trigger_offset_per_slice:g}"
            ds.AcquisitionTime = f"1200{k:02d}.{t:06d}"
            if spec.slope != 1.0 or spec.intercept != 0.0:
                ds.RescaleSlope = f"{spec.slope:g}"
                ds.RescaleIntercept = f"{spec.intercept:g}"
            if spec.patient_size_m is not None:
                ds.PatientSize = f"{spec.patient_size_m:g}"
            if spec.patient_weight_kg is not None:
                ds.PatientWeight = f"{spec.patient_weight_kg:g}"
            _set_pixels(ds, pixel_code(t, k, spec.rows, spec.cols))
            out.append(ds)
    return out


def _base(study_uid: str, for_uid: str) -> Dataset:
    ds = Dataset()
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study_uid
    ds.FrameOfReferenceUID = for_uid
    ds.Modality = "MR"
    ds.Manufacturer = "SYNTHETIC"
    ds.PatientID = "SYN001"
    return ds


def _set_pixels(ds: Dataset, arr: np.ndarray) -> None:
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = arr.astype("<i2").tobytes()


def write(folder: Path, datasets: list[Dataset], shuffle_seed: int | None = 0, prefix: str = "IM") -> list[Path]:
    """Write datasets as `prefix_NNNN.dcm` in a shuffled order of names (file order must not matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(datasets)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    paths = []
    for name_index, ds_index in enumerate(order):
        p = folder / f"{prefix}_{name_index:04d}.dcm"
        datasets[ds_index].save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def expected_ras_affine(spec: CineSpec) -> np.ndarray:
    """The affine the loader must produce: voxel (column, row, slice) -> RAS+ mm."""
    dy, dx = spec.spacing
    a = np.eye(4)
    a[:3, 0] = spec.orientation[:3] * dx
    a[:3, 1] = spec.orientation[3:] * dy
    a[:3, 2] = spec.normal * spec.gap
    a[:3, 3] = spec.origin
    a[:2] *= -1
    return a


def array_cine(image: np.ndarray, ras_affine: np.ndarray, description: str, study_uid: str, for_uid: str,
               series_number: int = 20, phase_interval: float = 40.0) -> list[Dataset]:
    """Datasets of a float image (T, Z, Y, X) on a RAS+ affine (a `Study` or `LongAxisCine` as the loaders give
    it): one series, 16-bit pixels with a RescaleSlope that keeps the values within 0.1 % of the range."""
    image = np.asarray(image, np.float64)
    if image.ndim == 3:
        image = image[:, None]
    lps = np.asarray(ras_affine, np.float64).copy()
    lps[:2] *= -1
    dx, dy = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    orientation = np.concatenate([lps[:3, 0] / dx, lps[:3, 1] / dy])
    lo, hi = float(image.min()), float(image.max())
    slope = (hi - lo) / 30000.0 or 1.0
    series = generate_uid()
    nt, nz = image.shape[:2]
    out = []
    for k in range(nz):
        for t in range(nt):
            ds = _base(study_uid, for_uid)
            ds.SeriesInstanceUID = series
            ds.SeriesDescription = description
            ds.SeriesNumber = series_number
            ds.InstanceNumber = k * nt + t + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
            ds.ImagePositionPatient = [f"{v:.6f}" for v in lps[:3] @ np.array([0.0, 0.0, k, 1.0])]
            ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
            ds.SliceThickness = f"{np.linalg.norm(lps[:3, 2]):g}"
            ds.TriggerTime = f"{t * phase_interval:g}"
            ds.RescaleSlope = f"{slope:.8g}"
            ds.RescaleIntercept = f"{lo:.8g}"
            _set_pixels(ds, np.round((image[t, k] - lo) / slope))
            out.append(ds)
    return out


def enhanced(datasets: list[Dataset], per_slice: bool = False, order_seed: int | None = 1,
             per_frame_rescale: bool = False, phase_frames: bool = False) -> list[Dataset]:
    """The classic single-frame `datasets` of one cine as Enhanced MR Image Storage objects, as modern
    scanners export them: one multi-frame file for the series (or one per slice, `per_slice`), each frame's
    position, trigger delay, temporal index and acquisition time in its per-frame functional groups,
    orientation and pixel spacing (and the rescaling, unless `per_frame_rescale`) shared. Frames are in a
    shuffled order (`order_seed`). `phase_frames`: every frame followed by a PHASE frame of the same moment
    (a complex acquisition's phase image, which the reader must leave out)."""
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage

    groups: dict[object, list[Dataset]] = {}
    for ds in datasets:
        key = tuple(float(v) for v in ds.ImagePositionPatient) if per_slice else 0
        groups.setdefault(key, []).append(ds)
    rng = np.random.default_rng(order_seed) if order_seed is not None else None
    out = []
    series_uid = generate_uid()
    for number, members in enumerate(groups.values()):
        if per_slice:  # one series per slice file, as some scanners export a stack of slice cines
            series_uid = generate_uid()
        members = list(members)
        if rng is not None:
            members = [members[i] for i in rng.permutation(len(members))]
        first = members[0]
        ds = _base(str(first.StudyInstanceUID), str(first.FrameOfReferenceUID))
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = str(first.SeriesDescription).split("_b")[0]
        ds.SeriesNumber = 10
        ds.InstanceNumber = number + 1
        ds.ImageType = list(first.ImageType)
        for kw in ("PatientSize", "PatientWeight"):
            if kw in first:
                setattr(ds, kw, getattr(first, kw))
        shared = Dataset()
        measures = Dataset()
        measures.PixelSpacing = first.PixelSpacing
        measures.SliceThickness = first.SliceThickness
        shared.PixelMeasuresSequence = Sequence([measures])
        orient = Dataset()
        orient.ImageOrientationPatient = first.ImageOrientationPatient
        shared.PlaneOrientationSequence = Sequence([orient])
        if "RescaleSlope" in first and not per_frame_rescale:
            tr = Dataset()
            tr.RescaleSlope, tr.RescaleIntercept, tr.RescaleType = first.RescaleSlope, first.RescaleIntercept, "US"
            shared.PixelValueTransformationSequence = Sequence([tr])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames, pixels = [], []
        for src in members:
            for component in ("MAGNITUDE", "PHASE") if phase_frames else ("MAGNITUDE",):
                fg = Dataset()
                pos = Dataset()
                pos.ImagePositionPatient = src.ImagePositionPatient
                fg.PlanePositionSequence = Sequence([pos])
                content = Dataset()
                content.TemporalPositionIndex = int(float(src.TriggerTime) // 40) + 1
                content.StackID = "1"
                hh, rest = str(src.AcquisitionTime)[:6], str(src.AcquisitionTime)[6:]
                content.FrameAcquisitionDateTime = f"20260101{hh}{rest}"
                fg.FrameContentSequence = Sequence([content])
                sync = Dataset()
                sync.NominalCardiacTriggerDelayTime = src.TriggerTime
                fg.CardiacSynchronizationSequence = Sequence([sync])
                ftype = Dataset()
                ftype.FrameType = list(src.ImageType)
                ftype.ComplexImageComponent = component
                fg.MRImageFrameTypeSequence = Sequence([ftype])
                if per_frame_rescale and "RescaleSlope" in src:
                    tr = Dataset()
                    tr.RescaleSlope, tr.RescaleIntercept, tr.RescaleType = src.RescaleSlope, src.RescaleIntercept, "US"
                    fg.PixelValueTransformationSequence = Sequence([tr])
                frames.append(fg)
                arr = np.frombuffer(src.PixelData, "<i2").reshape(int(src.Rows), int(src.Columns))
                pixels.append(arr if component == "MAGNITUDE" else -arr)
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.NumberOfFrames = len(frames)
        _set_pixels(ds, pixels[0])
        ds.PixelData = np.stack(pixels).astype("<i2").tobytes()
        out.append(ds)
    return out


@functools.cache
def _smoke_dicom():
    """`packaging/make_smoke_dicom.py`, imported once."""
    from tests.core.train.conftest import load_script

    return load_script(Path(__file__).resolve().parents[3] / "packaging" / "make_smoke_dicom.py")


def gdcm_transcode(src: Path, dst: Path, syntax: str = "JPEGLosslessProcess14_1") -> None:
    """`src` with its pixel data re-encoded by GDCM in `syntax` (a `gdcm.TransferSyntax` name), written to
    `dst`: `packaging/make_smoke_dicom.py`'s `transcode`, the one routine the bundle's smoke test uses too."""
    _smoke_dicom().transcode(src, dst, syntax)
