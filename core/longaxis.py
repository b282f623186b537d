"""Long-axis (LA) cines beside a short-axis (SA) stack: reading, geometry against the stack, checks.

A long-axis cine is one thick slice (2-, 3- or 4-chamber view) imaged over the cardiac cycle. It lives on
a single-slice `Grid` (shape (1, Y, X)) whose affine maps (column, row, 0) to world RAS+ mm like any other
grid, so everything here works in world coordinates through both affines.

```python
from gemini_cmr.core.longaxis import load_long_axis, find_long_axis_files, check_long_axis
las = load_long_axis("sub/la_4ch.nii.gz")          # [LongAxisCine]; a DICOM folder may hold several views
found = find_long_axis_files("sub/sa.nii.gz")      # UK Biobank la_2ch/3ch/4ch, M&Ms-2 <id>_LA_CINE/ED/ES
in_study = long_axis_in_study(load_study("dicom_study_folder"))   # the study's own long-axis series
notes = check_long_axis(las[0], sa_study)          # DataError (one line naming the file) when unusable
lines = intersection_lines(la.grid, sa_study.grid) # where each SA slice crosses the LA plane
cut, inside = cut_volume(sr_labels, sr_grid, la.grid, order=0)   # a 3D volume on the LA plane
```

Readers:
- NIfTI: UK Biobank `la_2ch.nii.gz`, `la_3ch.nii.gz`, `la_4ch.nii.gz` with `label_la_<view>` or `seg_la_<view>`
  (labels 1 LV cavity, 2 LV myocardium, 3 RV cavity, 4 left atrium, 5 right atrium: atria -> background);
  M&Ms-2 `<id>_LA_CINE.nii.gz` (or the `<id>_LA_ED`/`_LA_ES` frames) with `<id>_LA_ED_gt`/`_LA_ES_gt` (labels
  1 LV, 2 myo, 3 RV; the labelled frames are found in the cine by their pixels); any other NIfTI with a
  single slice (labels paired by `_gt`/`_labels`/`_seg`, project convention).
- DICOM (a folder, a zip, or one file of the series): every single-position cine series (one slice
  position, several phases) among the files, built by the short-axis stack builder (`core.io.dicom`); its
  Frame of Reference, patient and study identity are kept for `check_long_axis`. A DICOM study loaded by
  `load_study` keeps the single-position cines read with it: `long_axis_in_study(study)` builds them.

The view ("2ch", "3ch", "4ch", or "la" when it cannot be told) comes from the file or series name.
"""

from __future__ import annotations

import logging
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from scipy import ndimage

from gemini_cmr.core.errors import DataError, GeminiError
from gemini_cmr.core.io.dicom_series import LONG_AXIS_MIN_ANGLE_DEG
from gemini_cmr.core.study import Grid, Study

log = logging.getLogger(__name__)

VIEWS = ("2ch", "3ch", "4ch")
#: Long-axis label values of each source -> project labels (atria and other structures -> background).
LA_LABEL_MAPS: dict[str, dict[int, int]] = {
    "ukbb": {0: 0, 1: 1, 2: 2, 3: 3, 4: 0, 5: 0},
    "mnms2": {0: 0, 1: 1, 2: 2, 3: 3},
    "project": {0: 0, 1: 1, 2: 2, 3: 3},
}
#: Smallest angle (degrees) between a long-axis plane and the short-axis slices.
MIN_PLANE_ANGLE_DEG = LONG_AXIS_MIN_ANGLE_DEG
#: Fewest long-axis pixels inside the short-axis slab for the plane to count as intersecting it.
MIN_INSIDE_PIXELS = 50

_NIFTI = (".nii.gz", ".nii")
_UKBB_LA = re.compile(r"^la_(2ch|3ch|4ch)$", re.IGNORECASE)
_MNMS2_LA = re.compile(r"^(?P<id>.+)_LA_(?P<kind>CINE|ED|ES)$")
_VIEW_WORDS = (
    ("2ch", re.compile(r"2[\s_\-]?ch|two[\s_\-]?chamber|vla", re.IGNORECASE)),
    ("3ch", re.compile(r"3[\s_\-]?ch|three[\s_\-]?chamber|lvot", re.IGNORECASE)),
    ("4ch", re.compile(r"4[\s_\-]?ch|four[\s_\-]?chamber|hla", re.IGNORECASE)),
)


# --- the type ---------------------------------------------------------------------------------------------
@dataclass
class LongAxisCine:
    """One long-axis cine: image (T, Y, X) float32 on the single-slice grid `grid` (shape (1, Y, X)).

    `labels` (T, Y, X) uint8 in the project convention (only `labelled_phases` carry annotations);
    `ed_phase`/`es_phase` when the source says; `frame_of_reference_uid`, `patient_id`, `study_uid` for DICOM.
    """

    view: str
    image: np.ndarray
    affine: np.ndarray
    labels: np.ndarray | None = None
    labelled_phases: list[int] = field(default_factory=list)
    phase_times_ms: np.ndarray | None = None
    source_path: str = ""
    labels_path: str = ""
    ed_phase: int | None = None
    es_phase: int | None = None
    frame_of_reference_uid: str = ""
    patient_id: str = ""
    study_uid: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        img = np.asarray(self.image, dtype=np.float32)
        if img.ndim == 4:
            if img.shape[1] != 1:
                raise DataError(f"a long-axis cine has one slice, this image has {img.shape[1]}", self.where)
            img = img[:, 0]
        if img.ndim == 2:
            img = img[None]
        if img.ndim != 3:
            raise DataError(f"expected a long-axis cine (T, Y, X), got shape {img.shape}", self.where)
        self.image = img
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.labels is not None:
            lab = np.asarray(self.labels, dtype=np.uint8)
            lab = lab[:, 0] if lab.ndim == 4 else (lab[None] if lab.ndim == 2 else lab)
            if lab.shape != img.shape:
                raise DataError(f"label shape {lab.shape} does not match image shape {img.shape}",
                                self.labels_path or self.where)
            self.labels = lab
            if not self.labelled_phases:
                self.labelled_phases = [t for t in range(lab.shape[0]) if lab[t].any()]
        try:
            _ = self.grid
        except ValueError as exc:
            raise DataError(f"invalid long-axis geometry: {exc}", self.where) from None

    @property
    def where(self) -> str | None:
        return self.source_path or None

    @property
    def grid(self) -> Grid:
        return Grid((1, *self.image.shape[1:]), self.affine)

    @property
    def n_phases(self) -> int:
        return int(self.image.shape[0])

    @property
    def name(self) -> str:
        return f"la_{self.view}"

    @property
    def normal(self) -> np.ndarray:
        return self.grid.normal

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and len(self.labelled_phases) > 0

    def summary(self) -> dict[str, Any]:
        return {"view": self.view, "path": self.source_path, "labels_path": self.labels_path or None,
                "shape": list(self.image.shape), "spacing_mm": [float(v) for v in self.grid.spacing[:2]],
                "labelled_phases": list(self.labelled_phases), "frame_of_reference_uid": self.frame_of_reference_uid
                or None, "warnings": list(self.warnings)}


def view_from_name(name: str) -> str:
    """'2ch', '3ch', '4ch' from a file or series name; M&Ms-2's `_LA_` files are 4-chamber; else 'la'."""
    stem = _stem(PurePosixPath(name).name) if name else ""
    if m := _UKBB_LA.match(stem):
        return m.group(1).lower()
    if _MNMS2_LA.match(stem):
        return "4ch"
    for view, rx in _VIEW_WORDS:
        if rx.search(name):
            return view
    return "la"


def _stem(name: str) -> str:
    for suffix in _NIFTI:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- NIfTI -----------------------------------------------------------------------------------------------
def _read(path: Path):
    from gemini_cmr.core.io.nifti import load_nifti_volume

    arr, affine, header, warn = load_nifti_volume(path)
    if arr.ndim == 3:
        arr = arr[None]  # (1, Z, Y, X): one phase
    if arr.shape[1] != 1:
        raise DataError(f"not a long-axis cine: {arr.shape[1]} slices (a long-axis view has one)", path)
    return arr[:, 0], affine, header, warn


def _remap(labels: np.ndarray, source: str, path: Path) -> np.ndarray:
    from gemini_cmr.core.io.layouts import remap_labels

    return remap_labels(labels, source, path, LA_LABEL_MAPS[source], DataError, "long-axis labels")


def _first_existing(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for suffix in _NIFTI:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _check_fit(lab: np.ndarray, lab_aff: np.ndarray, img: np.ndarray, img_aff: np.ndarray, path: Path,
               warn: list[str]) -> None:
    if lab.shape[1:] != img.shape[1:]:
        raise DataError(f"label size {lab.shape[1:]} does not match the image's {img.shape[1:]}", path)
    if not np.allclose(lab_aff, img_aff, atol=1e-3):
        warn.append(f"{path}: label affine differs from the image affine; used the image geometry")


def read_long_axis_nifti(path: str | Path, view: str | None = None) -> LongAxisCine:
    """One long-axis NIfTI cine (3D single frame or 4D (x, y, 1, t)) with its labels paired by name."""
    path = Path(path)
    stem = _stem(path.name)
    folder = path.parent
    if m := _MNMS2_LA.match(stem):
        return _read_mnms2(folder, m.group("id"), path)
    image, affine, header, warn = _read(path)
    from gemini_cmr.core.io.nifti import phase_interval_ms

    interval = phase_interval_ms(header)
    times = None if interval is None or image.shape[0] < 2 else np.arange(image.shape[0]) * interval
    if _UKBB_LA.match(stem):
        lab_path, source = _first_existing(folder, [f"label_{stem}", f"seg_{stem}"]), "ukbb"
    else:
        lab_path, source = _first_existing(folder, [f"{stem}_gt", f"{stem}_labels", f"{stem}_seg"]), "project"
    labels = None
    if lab_path is not None:
        raw, lab_aff, _, _ = _read(lab_path)
        if raw.shape[0] != image.shape[0]:
            raise DataError(f"{raw.shape[0]} labelled frames for an image of {image.shape[0]} phases", lab_path)
        _check_fit(raw, lab_aff, image, affine, lab_path, warn)
        labels = _remap(raw, source, lab_path)
    return LongAxisCine(view or view_from_name(path.name), image, affine, labels, phase_times_ms=times,
                        source_path=str(path), labels_path="" if lab_path is None else str(lab_path),
                        ed_phase=0 if _UKBB_LA.match(stem) else None, patient_id=_subject(path), warnings=warn)


def _subject(path: Path) -> str:
    stem = _stem(path.name)
    if _UKBB_LA.match(stem):
        return path.parent.name
    if m := _MNMS2_LA.match(stem):
        return m.group("id")
    return ""


def _read_mnms2(folder: Path, sid: str, given: Path) -> LongAxisCine:
    """M&Ms-2: the cine when present (its labelled ED/ES frames found by their pixels), else the ED and ES
    frames as a two-phase cine."""
    warn: list[str] = []
    cine = _first_existing(folder, [f"{sid}_LA_CINE"])
    frames = {k: _first_existing(folder, [f"{sid}_LA_{k}"]) for k in ("ED", "ES")}
    gts = {k: _first_existing(folder, [f"{sid}_LA_{k}_gt"]) for k in ("ED", "ES")}
    if cine is not None:
        image, affine, header, w = _read(cine)
        warn += w
        from gemini_cmr.core.io.nifti import phase_interval_ms

        interval = phase_interval_ms(header)
        times = None if interval is None or image.shape[0] < 2 else np.arange(image.shape[0]) * interval
        source = cine
    else:
        have = [k for k in ("ED", "ES") if frames[k] is not None]
        if not have:
            raise DataError("no M&Ms-2 long-axis image (<id>_LA_CINE, _LA_ED or _LA_ES)", given)
        parts = [_read(frames[k]) for k in have]
        image = np.concatenate([p[0][:1] for p in parts])
        affine = parts[0][1]
        times = None
        source = frames[have[0]]
        warn.append(f"{source}: no {sid}_LA_CINE: the long-axis cine holds only the {'/'.join(have)} frames")
    labels = np.zeros(image.shape, np.uint8)
    labelled: list[int] = []
    phase_of: dict[str, int] = {}
    for k in ("ED", "ES"):
        if cine is None:
            if frames[k] is not None:
                phase_of[k] = [kk for kk in ("ED", "ES") if frames[kk] is not None].index(k)
        elif frames[k] is not None:
            frame = _read(frames[k])[0][0]
            err = np.abs(image - frame[None]).reshape(len(image), -1).mean(axis=1)
            phase_of[k] = int(np.argmin(err))
        elif k == "ED":
            phase_of[k] = 0
        if gts[k] is None or k not in phase_of:
            continue
        raw, lab_aff, _, _ = _read(gts[k])
        _check_fit(raw[:1], lab_aff, image, affine, gts[k], warn)
        labels[phase_of[k]] = _remap(raw[0], "mnms2", gts[k])
        labelled.append(phase_of[k])
    lab_paths = ", ".join(str(gts[k]) for k in ("ED", "ES") if gts[k] is not None)
    return LongAxisCine("4ch", image, affine, labels if labelled else None, sorted(set(labelled)), times,
                        source_path=str(source), labels_path=lab_paths, ed_phase=phase_of.get("ED"),
                        es_phase=phase_of.get("ES"), patient_id=sid, warnings=warn)


# --- DICOM -----------------------------------------------------------------------------------------------
def _dicom_sources(path: Path):
    """(sources, where, series UID of a single given file or None, the zip to close or None)."""
    from gemini_cmr.core.io import loader

    if path.is_dir():
        return loader._folder_sources(path)[0], str(path), None, None
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = loader.safe_members(archive, str(path))
        sources = [(f"{path}:{m.filename}", loader._member_opener(archive, m, str(path)))
                   for m in sorted(members, key=lambda m: m.filename)
                   if not PurePosixPath(m.filename).name.startswith(".")]
        return sources, str(path), None, archive
    frame = loader._require_dicom_file(path)
    return loader._folder_sources(path.parent)[0], str(path.parent), frame.series_uid, None


def read_long_axis_dicom(path: str | Path) -> list[LongAxisCine]:
    """Every long-axis cine (a series with one slice position and several phases) in a DICOM folder or zip,
    or the series of one DICOM file. `DataError` when there is none."""
    from gemini_cmr.core.io.dicom import build_study
    from gemini_cmr.core.io.dicom_files import quiet_pydicom, scan_sources
    from gemini_cmr.core.io.dicom_series import dedupe, find_candidates
    from gemini_cmr.core.io.seg import is_segmentation

    path = Path(path)
    sources, where, only_uid, archive = _dicom_sources(path)
    try:
        with quiet_pydicom():
            scan = scan_sources(sources, where)
            warn: list[str] = []
            frames = [f for f in dedupe(scan.frames, warn) if not is_segmentation(f.dataset)]
            if not frames:
                raise DataError("no DICOM images", path)
            candidates, _ = find_candidates(frames, warn)
            chosen = [c for c in candidates if c.problem is None and c.n_positions == 1 and c.n_phases >= 2
                      and (only_uid is None or only_uid in c.series_uids)]
            if not chosen:
                raise DataError("no long-axis cine here (a DICOM series with one slice position and several "
                                "phases)", path)
            out = []
            for c in chosen:
                w: list[str] = []
                s = build_study(c, where, warn=w)
                out.append(_from_study(s, c.description, w))
            return out
    finally:
        if archive is not None:
            archive.close()


def _from_study(s: Study, description: str, warn: list[str], name: str | None = None) -> LongAxisCine:
    ident = s.meta.dicom
    return LongAxisCine(view_from_name(description), s.image, s.affine, phase_times_ms=s.phase_times_ms,
                        source_path=name or (f"{s.meta.source_path} (series '{description}')" if description
                                             else s.meta.source_path),
                        frame_of_reference_uid="" if ident is None else ident.frame_of_reference_uid,
                        patient_id=s.meta.patient_id, study_uid="" if ident is None else ident.study_uid,
                        warnings=warn)


def _series_name(where: str, candidate, shared: bool) -> str:
    """How a DICOM long-axis series is named in messages: its folder, zip or PACS address and its
    SeriesDescription (with the SeriesInstanceUID when the description is missing or shared)."""
    uid = candidate.series_uids[0]
    if not candidate.description:
        return f"{where} (series {uid})"
    return f"{where} (series '{candidate.description}'{f', {uid}' if shared else ''})"


def long_axis_in_study(study: Study) -> list[LongAxisCine | LongAxisInput]:
    """The long-axis cines read with a DICOM study (`StudyMeta.long_axis_series`: the single-position cine series
    of its folder, zip or PACS retrieve at an angle to its slices), built from the frames already read. A series
    of another study (StudyInstanceUID) or one that cannot be built is returned as an ignored `LongAxisInput`
    with the reason (one line naming it); the Frame of Reference and the plane are checked later
    (`validate_long_axis`). View: from the SeriesDescription (2ch/3ch/4ch, LVOT, "2 chamber", ...), else "la"."""
    from gemini_cmr.core.io.dicom import build_study
    from gemini_cmr.core.io.dicom_files import quiet_pydicom

    series = list(study.meta.long_axis_series or [])
    where = study.meta.source_path
    sa_uid = "" if study.meta.dicom is None else study.meta.dicom.study_uid
    descriptions = [c.description for c in series]
    out: list[LongAxisCine | LongAxisInput] = []
    for c in series:
        name = _series_name(where, c, descriptions.count(c.description) > 1)
        uid = str(c.frames[0].dataset.get("StudyInstanceUID", "") or "")
        if uid and sa_uid and uid != sa_uid:
            out.append(LongAxisInput(name, reason=str(DataError(
                f"another study: StudyInstanceUID {uid} differs from the short-axis stack's {sa_uid}", name))))
            continue
        warn: list[str] = []
        try:
            with quiet_pydicom():
                s = build_study(c, where, warn=warn)
        except GeminiError as exc:
            out.append(LongAxisInput(name, reason=str(DataError(f"cannot be read: {exc}", name))))
            continue
        out.append(_from_study(s, c.description, warn, name))
    return out


def load_long_axis(path: str | Path) -> list[LongAxisCine]:
    """The long-axis cine(s) at `path`: a NIfTI file (one cine) or DICOM (folder, zip or file: every
    single-position cine series). `DataError` naming the path when it cannot be read."""
    from gemini_cmr.core.io.layouts import is_nifti

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("long-axis input: no such file or folder", path)
    try:
        if path.is_file() and is_nifti(path):
            return [read_long_axis_nifti(path)]
        return read_long_axis_dicom(path)
    except DataError:
        raise
    except GeminiError as exc:  # StudyError from the shared readers: same message, the long-axis kind
        raise DataError(str(exc)) from None


def find_long_axis_files(sa_path: str | Path) -> list[Path]:
    """Long-axis NIfTI cines beside a short-axis input in the UK Biobank (`la_2ch/3ch/4ch`) and M&Ms-2
    (`<id>_LA_CINE`, else `<id>_LA_ED`) layouts: the SA file's folder, or the SA folder itself."""
    p = Path(sa_path).expanduser()
    folder = p if p.is_dir() else p.parent
    if not folder.is_dir():
        return []
    found: list[Path] = []
    for view in VIEWS:
        f = _first_existing(folder, [f"la_{view}"])
        if f is not None:
            found.append(f)
    ids = sorted({m.group("id") for q in folder.iterdir() if (m := _MNMS2_LA.match(_stem(q.name)))})
    for sid in ids:
        f = _first_existing(folder, [f"{sid}_LA_CINE", f"{sid}_LA_ED", f"{sid}_LA_ES"])
        if f is not None:
            found.append(f)
    return found


# --- geometry ---------------------------------------------------------------------------------------------
def pixel_world(la: Grid) -> np.ndarray:
    """World coordinates (Y, X, 3) of the pixel centres of a single-slice grid."""
    _, ny, nx = la.shape
    jj, ii = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    return la.index_to_world(np.stack([ii, jj, np.zeros_like(ii)], axis=-1))


def plane_angle_deg(a: Grid, b: Grid) -> float:
    """Angle (degrees, 0-90) between the slice planes of two grids."""
    c = abs(float(np.dot(a.normal, b.normal)))
    return math.degrees(math.acos(min(1.0, c)))


@dataclass
class IntersectionLine:
    """Where short-axis slice `slice` crosses a long-axis plane: the segment point + t * direction (world mm),
    t in `t_range`, inside both images; its end points in long-axis pixels (i, j) and in the short-axis
    slice's pixels (i, j)."""

    slice: int
    point: np.ndarray
    direction: np.ndarray
    t_range: tuple[float, float]
    la_ij: np.ndarray  # (2, 2): start and end (i, j) on the long-axis image
    sa_ij: np.ndarray  # (2, 2): start and end (i, j) on short-axis slice `slice`

    @property
    def length_mm(self) -> float:
        return float(self.t_range[1] - self.t_range[0])

    def world(self, t: np.ndarray) -> np.ndarray:
        return self.point + np.asarray(t, np.float64)[..., None] * self.direction


def _interval(grid: Grid, p: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """Parameter range of p + t d inside the in-plane rectangle (pixel edges) of a grid's slice plane."""
    inv = grid.inverse
    a = inv[:3, :3] @ p + inv[:3, 3]
    b = inv[:3, :3] @ d
    lo, hi = -np.inf, np.inf
    _, ny, nx = grid.shape
    for ax, n in ((0, nx), (1, ny)):
        if abs(b[ax]) < 1e-12:
            if not -0.5 <= a[ax] <= n - 0.5:
                return 1.0, 0.0
            continue
        t0, t1 = (-0.5 - a[ax]) / b[ax], (n - 0.5 - a[ax]) / b[ax]
        lo, hi = max(lo, min(t0, t1)), min(hi, max(t0, t1))
    return float(lo), float(hi)


def intersection_line(la: Grid, sa: Grid, k: float) -> IntersectionLine | None:
    """The intersection segment of the long-axis plane with the short-axis plane at slice index `k` (an
    acquired slice's centre plane for an integer `k`, any position in between otherwise), clipped to both
    images; None when the planes are parallel or the line misses either image. `slice` is `k` rounded."""
    n1 = la.normal
    n2 = sa.normal
    d = np.cross(n1, n2)
    if np.linalg.norm(d) < 1e-6:
        return None
    d /= np.linalg.norm(d)
    c1 = la.index_to_world(np.array([(la.shape[2] - 1) / 2, (la.shape[1] - 1) / 2, 0.0]))
    c2 = sa.index_to_world(np.array([0.0, 0.0, float(k)]))
    A = np.stack([n1, n2, d])
    p = np.linalg.solve(A, np.array([n1 @ c1, n2 @ c2, d @ c1]))
    lo1, hi1 = _interval(la, p, d)
    sa_k = Grid((1, sa.shape[1], sa.shape[2]), _slice_affine(sa, k))
    lo2, hi2 = _interval(sa_k, p, d)
    lo, hi = max(lo1, lo2), min(hi1, hi2)
    if hi <= lo:
        return None
    ends = p + np.outer([lo, hi], d)
    la_ij = la.world_to_index(ends)[:, :2]
    sa_ij = sa.world_to_index(ends)[:, :2]
    return IntersectionLine(int(round(float(k))), p, d, (lo, hi), la_ij, sa_ij)


def intersection_lines(la: Grid, sa: Grid) -> list[IntersectionLine]:
    """The intersection segment of the long-axis plane with each short-axis slice plane (slice centre plane),
    clipped to both images; slices whose line misses either image are left out. Parallel planes: []."""
    lines = (intersection_line(la, sa, k) for k in range(sa.shape[0]))
    return [ln for ln in lines if ln is not None]


def _slice_affine(grid: Grid, k: float) -> np.ndarray:
    aff = grid.affine.copy()
    aff[:3, 3] = grid.index_to_world(np.array([0.0, 0.0, float(k)]))
    return aff


def sample_world(volume: np.ndarray, grid: Grid, world: np.ndarray, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`volume` ((T,) Z, Y, X on `grid`) at world points (..., 3) -> (values (T, ...) or (...), inside (...)).

    `inside`: the point lies within the grid's voxels (edges included: the slab of the first and last
    slice, the field of view in-plane); values outside are 0. order 0 = nearest voxel (labels: the nearest
    slice), 1 = linear (edge values near the border)."""
    volume = np.asarray(volume)
    single = volume.ndim == 3
    vols = volume[None] if single else volume
    idx = grid.world_to_index(world)  # (..., 3) i, j, k
    nz, ny, nx = grid.shape
    inside = ((idx[..., 0] >= -0.5) & (idx[..., 0] <= nx - 0.5) & (idx[..., 1] >= -0.5) & (idx[..., 1] <= ny - 0.5)
              & (idx[..., 2] >= -0.5) & (idx[..., 2] <= nz - 0.5))
    coords = np.stack([idx[..., 2], idx[..., 1], idx[..., 0]])
    if order == 0:
        coords = np.clip(np.floor(coords + 0.5), 0, np.array([nz - 1, ny - 1, nx - 1]).reshape(3, *([1] * (coords.ndim - 1))))
        ci = coords.astype(np.int64)
        out = vols[:, ci[0], ci[1], ci[2]]
    else:
        out = np.stack([ndimage.map_coordinates(v.astype(np.float32, copy=False), coords, order=order, mode="nearest")
                        for v in vols])
    out = np.where(inside[None], out, 0).astype(out.dtype, copy=False)
    return (out[0] if single else out), inside


def cut_volume(volume: np.ndarray, grid: Grid, la: Grid, order: int = 0,
               shift_mm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume ((T,) Z, Y, X on `grid`) sampled at the pixel centres of the long-axis plane `la`:
    (cut (T,) Y, X, mask (Y, X) of the pixels inside the volume's grid, e.g. the short-axis slab).
    Labels: order 0 (nearest voxel); images: order 1. `shift_mm` (along the long-axis image's i and j, mm)
    samples each pixel p at p - shift: the cut as an acquisition displaced by `shift_mm` would show it."""
    world = pixel_world(la)
    if shift_mm is not None:
        d = la.directions
        world = world - (d[:, 0] * float(shift_mm[0]) + d[:, 1] * float(shift_mm[1]))
    return sample_world(volume, grid, world, order)


def match_phases(la: LongAxisCine, n_phases: int, ed: int | None = None, es: int | None = None) -> np.ndarray:
    """The long-axis phase matched to each of `n_phases` short-axis phases: the same index when the counts
    agree; the nearest fraction of the cycle otherwise (a cine of only ED and ES: ED and ES matched, the
    other phases to the nearer of the two)."""
    n_la = la.n_phases
    if n_la == n_phases:
        return np.arange(n_phases)
    if la.ed_phase is not None and la.es_phase is not None and n_la == 2 and ed is not None and es is not None:
        out = np.full(n_phases, la.ed_phase)
        frac = np.arange(n_phases) / n_phases
        d_es = np.abs(frac - es / n_phases)
        d_ed = np.minimum(np.abs(frac - ed / n_phases), 1 - np.abs(frac - ed / n_phases))
        out[d_es < d_ed] = la.es_phase
        return out
    return np.rint(np.arange(n_phases) * n_la / n_phases).astype(int) % n_la


# --- checks ----------------------------------------------------------------------------------------------
def check_long_axis(la: LongAxisCine, sa: Study) -> list[str]:
    """Whether `la` can be used with the short-axis study `sa`: returns notes for the user (phase count
    matched by trigger fraction); raises `DataError` (one line naming the long-axis file) for a cine of
    another study (DICOM Frame of Reference or patient), a plane (nearly) parallel to the short-axis slices
    or not crossing the stack, and a single-slice short-axis stack."""
    where = la.where
    if sa.n_slices < 2:
        raise DataError(f"the short-axis input is a single slice: a long-axis view needs a stack to cut "
                        f"(short-axis: {sa.meta.source_path or 'input'})", where)
    ident = sa.meta.dicom
    sa_for = "" if ident is None else ident.frame_of_reference_uid
    if la.frame_of_reference_uid and sa_for and la.frame_of_reference_uid != sa_for:
        raise DataError(f"another study: Frame of Reference {la.frame_of_reference_uid} differs from the "
                        f"short-axis stack's {sa_for}", where)
    if (sa.meta.format == "dicom" and la.patient_id and sa.meta.patient_id
            and la.patient_id != sa.meta.patient_id):
        raise DataError(f"another patient: PatientID {la.patient_id!r} differs from the short-axis stack's "
                        f"{sa.meta.patient_id!r}", where)
    angle = plane_angle_deg(la.grid, sa.grid)
    if angle < MIN_PLANE_ANGLE_DEG:
        raise DataError(f"the plane is {angle:.0f} degrees from the short-axis slices (nearly parallel): not a "
                        f"long-axis view of this stack (needs at least {MIN_PLANE_ANGLE_DEG:.0f})", where)
    _, inside = cut_volume(np.zeros(sa.grid.shape, np.uint8), sa.grid, la.grid, order=0)
    if int(inside.sum()) < MIN_INSIDE_PIXELS:
        raise DataError("the long-axis plane does not intersect the short-axis stack", where)
    notes = []
    if la.n_phases != sa.n_phases:
        notes.append(f"{where}: {la.n_phases} phases against the short-axis stack's {sa.n_phases}: phases "
                     "matched by trigger fraction")
    return notes


# --- inputs of a run ------------------------------------------------------------------------------------
@dataclass
class LongAxisInput:
    """One long-axis input of a run and what became of it: `used`, or ignored with the `reason` (one line
    naming the file); `notes` for the user; after the run, the SR labels cut along its plane
    (`sr_labels` (P, Y, X) at study phases `cut_phases`, `inside` the pixels within the SR grid) and the
    long-axis acquisition's own in-plane offset when the motion correction estimated it (`offset_mm`,
    along its i and j axes; the cut is displaced by it, so it overlays the long-axis image)."""

    path: str
    cine: LongAxisCine | None = None
    used: bool = False
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    cut_phases: list[int] = field(default_factory=list)
    sr_labels: np.ndarray | None = None
    inside: np.ndarray | None = None
    offset_mm: np.ndarray | None = None
    output: str = ""  # the file name the outputs gave the cut

    @property
    def view(self) -> str:
        return "" if self.cine is None else self.cine.view

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "view": self.view or None, "used": bool(self.used)}
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["notes"] = list(self.notes)
        if self.cine is not None:
            out["shape"] = list(self.cine.image.shape)
        if self.offset_mm is not None:
            out["offset_mm"] = [round(float(v), 3) for v in self.offset_mm]
        if self.output:
            out["output"] = self.output
            out["output_phases"] = list(self.cut_phases)
        return out


def validate_long_axis(cines: list[LongAxisCine | LongAxisInput], sa: Study) -> list[LongAxisInput]:
    """`check_long_axis` of each input against the short-axis study: used, or ignored with the reason.
    Inputs already ignored (a file that could not be read) pass through."""
    out = []
    for c in cines:
        if isinstance(c, LongAxisInput):
            if c.cine is None or not c.used and c.reason:
                out.append(c)
                continue
            c = c.cine
        item = LongAxisInput(c.source_path, c)
        try:
            item.notes = check_long_axis(c, sa) + list(c.warnings)
            item.used = True
        except DataError as exc:
            item.reason = str(exc)
        out.append(item)
    return out


def cut_result_labels(item: LongAxisInput, sr_labels: np.ndarray, sr: Grid, rows: list[int],
                      phases: list[int]) -> None:
    """Fill `item.sr_labels`/`inside`/`cut_phases`: the SR labels of result rows `rows` (study phases
    `phases`) along the item's plane, displaced by its estimated offset when there is one."""
    cut, inside = cut_volume(np.asarray(sr_labels)[rows], sr, item.cine.grid, order=0, shift_mm=item.offset_mm)
    item.sr_labels, item.inside, item.cut_phases = cut.astype(np.uint8), inside, list(phases)


__all__ = ["LA_LABEL_MAPS", "LongAxisInput", "cut_result_labels", "validate_long_axis", "MIN_PLANE_ANGLE_DEG", "VIEWS", "IntersectionLine", "LongAxisCine", "check_long_axis",
           "cut_volume", "find_long_axis_files", "intersection_line", "long_axis_in_study", "intersection_lines", "load_long_axis", "match_phases",
           "pixel_world", "plane_angle_deg", "read_long_axis_dicom", "read_long_axis_nifti", "sample_world",
           "view_from_name"]
