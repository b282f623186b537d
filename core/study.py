"""The core data model: a cine `Study` and the `Grid` it lives on.

Conventions (see docs/conventions in the README and the project spec):
- arrays are (T, Z, Y, X) = (phase, slice, row, column); one phase is (Z, Y, X);
- `affine` maps voxel index (i, j, k) = (column, row, slice) to world RAS+ millimetres, so the voxel
  `array[k, j, i]` sits at `affine @ (i, j, k, 1)`;
- labels: 0 background, 1 LV cavity, 2 LV myocardium, 3 RV cavity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.errors import StudyError

# The structures, declared once: label value -> key, and per key the display name, short name and colour
# (the paper's figures: LV cavity green, LV myocardium yellow, RV cavity blue). The app, the outputs and
# the evaluations import these.
LABELS = {0: "background", 1: "lv_cavity", 2: "lv_myocardium", 3: "rv_cavity"}
STRUCTURES = {1: "lv_cavity", 2: "lv_myocardium", 3: "rv_cavity"}
LABEL_OF = {name: label for label, name in STRUCTURES.items()}
STRUCTURE_NAMES = {"lv_cavity": "LV cavity", "lv_myocardium": "LV myocardium", "rv_cavity": "RV cavity"}
STRUCTURE_SHORT = {"lv_cavity": "LV", "lv_myocardium": "Myo", "rv_cavity": "RV"}
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {1: (40, 205, 80), 2: (250, 215, 30), 3: (50, 130, 255)}
# SNOMED CT (coding scheme "SCT") codes of the structures, as DICOM segmentations and Slicer's terminology
# carry them: category "Anatomical structure" (DICOM CID 7150); types from CID 7152 (cardiac structure
# segmentation: left and right ventricle; the segment labels say "cavity") and CID 12305 (left ventricle
# myocardium).
STRUCTURE_CATEGORY_CODE = ("91723000", "Anatomical Structure")
STRUCTURE_CODES = {"lv_cavity": ("87878005", "Left ventricle"),
                   "lv_myocardium": ("49848007", "Left ventricle myocardium"),
                   "rv_cavity": ("53085002", "Right ventricle")}
N_CLASSES = 4


@dataclass(frozen=True)
class Grid:
    """A regular 3D voxel grid: `shape` (Z, Y, X) and a 4x4 voxel (i, j, k) -> world RAS+ mm affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self):
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {aff.shape}")
        if not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            raise ValueError("affine is singular or not finite")
        object.__setattr__(self, "affine", aff)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    # --- geometry -------------------------------------------------------------------------------
    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (x, y, z) = (column, row, slice) in mm: norms of the affine columns."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit world directions of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (cross product of the in-plane axes), oriented along +k."""
        d = self.directions
        n = np.cross(d[:, 0], d[:, 1])
        n /= np.linalg.norm(n)
        return n if np.dot(n, d[:, 2]) >= 0 else -n

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()

    @property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.affine)

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(..., 3) voxel indices (i, j, k) -> (..., 3) world mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 3) continuous voxel indices (i, j, k)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inv = self.inverse
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def voxel_centres(self) -> np.ndarray:
        """World coordinates of every voxel centre, shape (Z, Y, X, 3)."""
        z, y, x = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        return self.index_to_world(np.stack([x, y, z], axis=-1))

    def slice_centres(self) -> np.ndarray:
        """World coordinates of the centre of each slice, shape (Z, 3)."""
        nz, ny, nx = self.shape
        k = np.arange(nz, dtype=np.float64)
        ijk = np.stack([np.full(nz, (nx - 1) / 2), np.full(nz, (ny - 1) / 2), k], axis=-1)
        return self.index_to_world(ijk)

    def centre(self) -> np.ndarray:
        nz, ny, nx = self.shape
        return self.index_to_world(np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]))

    def corners(self) -> np.ndarray:
        """World coordinates of the 8 outer corners (voxel edges, not centres), shape (8, 3)."""
        nz, ny, nx = self.shape
        c = np.array([[i, j, k] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5) for k in (-0.5, nz - 0.5)])
        return self.index_to_world(c)

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def __eq__(self, other):
        return (
            isinstance(other, Grid)
            and self.shape == other.shape
            and np.allclose(self.affine, other.affine, atol=1e-6)
        )

    def __hash__(self):
        return hash((self.shape, tuple(np.round(self.affine, 6).ravel())))


@dataclass
class DicomIdentity:
    """The DICOM identity of a study read from DICOM: what derived objects (the SR series, the
    segmentations) need to join the same study and frame of reference and to point at the source images.

    `sop_instance_uids` is [phase][slice] of the loaded cine (as `meta.extra["instance_numbers"]`),
    `series_uids` the series of each slice (one value repeated for a multi-position series), and
    `attributes` the patient and study modules and a few series facts of the first image (keyword ->
    value as text, or a list of texts for multi-valued elements). `frame_numbers` ([phase][slice], 1-based)
    when the images are frames of multi-frame (enhanced) files, whose references need the frame number;
    None for single-frame images.
    """

    study_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: list[list[str]]
    series_uids: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)
    frame_numbers: list[list[int]] | None = None


@dataclass
class StudyMeta:
    """What we know about where a study came from."""

    source_path: str = ""
    format: str = ""
    patient_id: str = ""
    vendor: str = ""
    series_description: str = ""
    series_uid: str = ""
    slice_thickness_mm: float | None = None
    ed_phase: int | None = None  # 0-based, None if unknown
    es_phase: int | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    group: str = ""
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    dicom: DicomIdentity | None = None  # DICOM input only
    label_source: str = ""  # where `Study.labels` came from when not obvious (e.g. "DICOM SEG: 2 files")
    #: DICOM input: the other cine series read with the stack that have one slice position and lie at an angle to
    #: its slices (`core.io.dicom_series.Candidate`s: headers and undecoded pixels), the long-axis cines that
    #: `core.longaxis.long_axis_in_study` builds without reading the files again.
    long_axis_series: list[Any] = field(default_factory=list, repr=False, compare=False)


@dataclass
class Study:
    """A cine study: float32 image (T, Z, Y, X), affine, phase times, optional labels, metadata.

    `labels` has the same shape as `image` (uint8); only the phases in `labelled_phases` carry
    annotations (for ACDC only ED and ES), the others are zero.
    """

    image: np.ndarray
    affine: np.ndarray
    phase_times_ms: np.ndarray | None = None
    labels: np.ndarray | None = None
    labelled_phases: list[int] = field(default_factory=list)
    meta: StudyMeta = field(default_factory=StudyMeta)

    def __post_init__(self):
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim == 3:
            self.image = self.image[None]
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.uint8)
            if self.labels.ndim == 3:
                self.labels = self.labels[None]
            if self.labels.shape != self.image.shape:
                raise StudyError(
                    f"labels shape {self.labels.shape} does not match image shape {self.image.shape}",
                    self.meta.source_path or None,
                )
            if not self.labelled_phases:
                self.labelled_phases = [t for t in range(self.labels.shape[0]) if self.labels[t].any()]
        if self.phase_times_ms is not None:
            self.phase_times_ms = np.asarray(self.phase_times_ms, dtype=np.float64)

    # --- shape and geometry ---------------------------------------------------------------------
    @property
    def n_phases(self) -> int:
        return int(self.image.shape[0])

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[1])

    @property
    def grid(self) -> Grid:
        return Grid(self.image.shape[1:], self.affine)

    @property
    def spacing(self) -> np.ndarray:
        return self.grid.spacing

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and len(self.labelled_phases) > 0

    @property
    def name(self) -> str:
        return self.meta.patient_id or Path(self.meta.source_path).name or "study"

    def validate(self) -> Study:
        """Raise `StudyError` for data that later stages cannot use; returns self."""
        where = self.meta.source_path or None
        if self.image.ndim != 4:
            raise StudyError(f"expected a 4D cine (T, Z, Y, X), got shape {self.image.shape}", where)
        t, z, y, x = self.image.shape
        if min(y, x) < 16:
            raise StudyError(f"in-plane size {x}x{y} is too small for a cine image", where)
        if z < 2:
            raise StudyError("only one slice: a short-axis stack needs at least 2 slices", where)
        if not np.all(np.isfinite(self.image)):
            bad = int(np.count_nonzero(~np.isfinite(self.image)))
            raise StudyError(f"{bad} NaN/Inf pixel values", where)
        try:
            _ = self.grid
        except ValueError as exc:
            raise StudyError(f"invalid geometry: {exc}", where) from None
        return self

    def phase(self, t: int) -> np.ndarray:
        return self.image[t]

    def intensity_summary(self) -> dict[str, float]:
        """Minimum, maximum, mean and sum of the image (float64 sums): scaling and decoding at a glance, and
        a checksum of the decoded pixels for comparing two encodings of one study."""
        img = np.asarray(self.image)
        return {"min": float(img.min()), "max": float(img.max()), "mean": float(img.mean(dtype=np.float64)),
                "sum": float(img.sum(dtype=np.float64))}

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (used by `gemini-cmr info --json` and the app's study panel)."""
        label_values = sorted(int(v) for v in np.unique(self.labels)) if self.labels is not None else []
        m = self.meta
        return {
            "path": m.source_path,
            "format": m.format,
            "patient_id": m.patient_id,
            "vendor": m.vendor,
            "series_description": m.series_description,
            "shape": list(self.image.shape),
            "spacing_mm": [float(s) for s in self.spacing],
            "slice_thickness_mm": None if m.slice_thickness_mm is None else float(m.slice_thickness_mm),
            "affine": [[float(v) for v in row] for row in self.affine],
            "phases": self.n_phases,
            "phase_times_ms": None if self.phase_times_ms is None else [float(v) for v in self.phase_times_ms],
            "ed_phase": m.ed_phase,
            "es_phase": m.es_phase,
            "has_labels": self.has_labels,
            "label_source": m.label_source or None,
            "labelled_phases": list(self.labelled_phases),
            "label_values": label_values,
            "intensity": self.intensity_summary(),
            "height_cm": m.height_cm,
            "weight_kg": m.weight_kg,
            "warnings": list(m.warnings),
        }
