"""Group DICOM frames into candidate cine stacks and choose the one to load.

A study folder usually holds more than the short-axis cine (localizers, long-axis cines, maps), and UK
Biobank stores one series per slice (`CINE_segmented_SAX_b1..bN`). Frames are therefore grouped into
candidate stacks: a multi-position series, or single-position series sharing orientation, matrix and
frame of reference. Unless the caller names a SeriesInstanceUID, the loadable stack with the most
slices x phases wins; the rest are reported as skipped with the reason. Slices are positions along the
slice normal (ImagePositionPatient . normal), never SliceLocation or file order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io.dicom_files import DicomFrame, as_float, expand_enhanced

#: Positions closer than this along the slice normal (mm) are the same slice.
POSITION_TOLERANCE_MM = 0.1
#: Smallest angle (degrees) between a long-axis plane and the short-axis slices (`core.longaxis` uses it too).
LONG_AXIS_MIN_ANGLE_DEG = 30.0

_LOCALIZER_WORDS = ("localizer", "localiser", "scout", "survey", "tri-pilot", "3-plane", "3 plane")
_SLICE_SUFFIX = re.compile(r"^(.*?)[_\- ]?b\d+$", re.IGNORECASE)


@dataclass
class Candidate:
    """A set of frames that may form one cine stack: one series, or several single-slice series."""

    frames: list[DicomFrame]
    series_uids: list[str]
    description: str
    n_positions: int = 0
    n_phases: int = 0
    problem: str | None = None  # why it cannot be loaded (missing tags, mixed orientations, ...)

    @property
    def derived(self) -> bool:
        """ImageType DERIVED (e.g. Siemens inline results beside the acquired cine): never preferred."""
        return self.frames[0].image_type[:1] == ("DERIVED",)

    @property
    def size(self) -> int:
        return self.n_positions * self.n_phases

    @property
    def label(self) -> str:
        uid = self.series_uids[0] if len(self.series_uids) == 1 else f"{len(self.series_uids)} series"
        desc = f"'{self.description}' " if self.description else ""
        return f"{desc}({uid}, {len(self.frames)} images)"


# --- grouping into candidate stacks -------------------------------------------------------------------
def dedupe(frames: list[DicomFrame], warn: list[str]) -> list[DicomFrame]:
    """Drop second copies of the same SOP instance (the same image exported twice)."""
    seen: dict[str, DicomFrame] = {}
    out = []
    dropped = 0
    for f in frames:
        key = (f.sop_uid or f"{f.series_uid}|{f.instance}|{f.trigger_time}|{f.position}") + (
            f"|{f.frame_number}" if f.frame_number is not None else "")
        if key in seen:
            dropped += 1
            continue
        seen[key] = f
        out.append(f)
    if dropped:
        warn.append(f"ignored {dropped} duplicate DICOM instance(s) (same SOPInstanceUID)")
    return out


def _is_localizer(frames: list[DicomFrame]) -> bool:
    f = frames[0]
    if "LOCALIZER" in f.image_type:
        return True
    desc = f.series_description.lower()
    return any(word in desc for word in _LOCALIZER_WORDS)


def _same_orientation(a: np.ndarray, b: np.ndarray, tol: float = 1e-3) -> bool:
    return bool(np.max(np.abs(a - b)) <= tol)


def positions(frames: list[DicomFrame]) -> list[list[DicomFrame]]:
    """Group frames by position along the slice normal (ascending)."""
    normal = frames[0].normal
    dist = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = np.argsort(dist, kind="stable")
    groups: list[list[DicomFrame]] = []
    last = None
    for idx in order:
        if last is None or dist[idx] - last > POSITION_TOLERANCE_MM:
            groups.append([])
        groups[-1].append(frames[idx])
        last = dist[idx]
    return groups


def _series_problem(frames: list[DicomFrame]) -> str | None:
    """Why a series cannot be a stack (or None): names the first offending file."""
    for f in frames:
        missing = f.missing_geometry()
        if missing:
            return f"{f.name}: missing {missing}"
    ref = frames[0]
    for f in frames[1:]:
        if not _same_orientation(f.orientation, ref.orientation):
            return f"{f.name}: mixed orientations in one series (differs from {ref.name})"
        if (f.rows, f.cols) != (ref.rows, ref.cols):
            return f"{f.name}: image size {f.cols}x{f.rows} differs from {ref.cols}x{ref.rows} in {ref.name}"
        if not np.allclose(f.pixel_spacing, ref.pixel_spacing, rtol=1e-3):
            return f"{f.name}: PixelSpacing differs from {ref.name}"
    return None


def one_series_per_position(groups: list[list[DicomFrame]], warn: list[str] | None) -> list[list[DicomFrame]]:
    """A slice acquired again in another series (UK Biobank repeats a failed breath-hold): keep the last.

    The repeat has the higher SeriesNumber; mixing the phases of both would double the phase count.
    """
    out = []
    for k, group in enumerate(groups):
        series = {f.series_uid for f in group}
        if len(series) > 1:
            last = max(group, key=_acquisition_order).series_uid
            group = [f for f in group if f.series_uid == last]
            if warn is not None:
                warn.append(f"slice {k + 1} was acquired in {len(series)} series; used the last one "
                            f"({group[0].series_description or last})")
        out.append(group)
    return out


def _acquisition_order(f: DicomFrame) -> tuple[float, float]:
    return as_float(f.dataset.get("SeriesNumber")) or 0.0, f.acquisition_time or 0.0


def _measure(candidate: Candidate) -> Candidate:
    if candidate.problem is None:
        groups = one_series_per_position(positions(candidate.frames), None)
        candidate.n_positions = len(groups)
        candidate.n_phases = max(len(g) for g in groups)
    return candidate


def find_candidates(frames: list[DicomFrame], warn: list[str]) -> tuple[list[Candidate], list[Candidate]]:
    """Split image frames into candidate stacks; returns (candidates, skipped series with reasons)."""
    by_series: dict[str, list[DicomFrame]] = {}
    for f in frames:
        by_series.setdefault(f.series_uid, []).append(f)
    candidates: list[Candidate] = []
    skipped: list[Candidate] = []
    singles: list[Candidate] = []
    for uid, members in by_series.items():
        images = [f for f in members if f.has_pixels]
        c = Candidate(images or members, [uid], members[0].series_description)
        if not images:
            c.problem = "no image data"
            skipped.append(c)
            continue
        if _is_localizer(images):
            c.problem = "localizer"
            skipped.append(c)
            continue
        try:  # multi-frame (enhanced) files: one frame each, with its functional groups' geometry and time
            images = [x for f in images for x in expand_enhanced(f)]
        except StudyError as exc:
            c.problem = str(exc)
            skipped.append(c)
            continue
        stacks: dict[str | None, list[DicomFrame]] = {}
        for f in images:  # an enhanced series may hold several stacks (FrameContentSequence StackID)
            stacks.setdefault(f.stack_id, []).append(f)
        for frames_of_stack in stacks.values():
            c = Candidate(frames_of_stack, [uid], members[0].series_description)
            c.problem = _series_problem(frames_of_stack)
            _measure(c)
            (singles if c.problem is None and c.n_positions == 1 else candidates).append(c)
    candidates.extend(_merge_single_slice_series(singles))
    return candidates, skipped


def _merge_single_slice_series(singles: list[Candidate]) -> list[Candidate]:
    """UK Biobank style: one series per slice. Merge series with the same orientation, matrix, frame of
    reference and ORIGINAL/DERIVED image type (derived inline results stay apart)."""
    merged: list[Candidate] = []
    for c in sorted(singles, key=lambda c: (c.description, c.series_uids[0])):
        ref = c.frames[0]
        for m in merged:
            other = m.frames[0]
            if (_same_orientation(ref.orientation, other.orientation) and (ref.rows, ref.cols) == (other.rows, other.cols)
                    and np.allclose(ref.pixel_spacing, other.pixel_spacing, rtol=1e-3)
                    and ref.image_type[:1] == other.image_type[:1]
                    and ref.dataset.get("FrameOfReferenceUID") == other.dataset.get("FrameOfReferenceUID")):
                m.frames.extend(c.frames)
                m.series_uids.extend(c.series_uids)
                break
        else:
            merged.append(Candidate(list(c.frames), list(c.series_uids), c.description))
    for m in merged:
        if len(m.series_uids) > 1:
            m.description = _common_prefix([f.series_description for f in m.frames if f.series_description]) \
                or m.description
        _measure(m)
    return merged


def _common_prefix(names: list[str]) -> str:
    """'CINE_segmented_SAX_b1'..'_b12' -> 'CINE_segmented_SAX' (UK Biobank numbers slices b1..bN)."""
    if not names:
        return ""
    stems = {m.group(1) if (m := _SLICE_SUFFIX.match(n)) else n for n in names}
    if len(stems) == 1:
        return stems.pop()
    lo, hi = min(names), max(names)
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    return lo[:n].rstrip("_- ")


def long_axis_candidates(candidates: list[Candidate], chosen: Candidate) -> list[Candidate]:
    """The candidates beside the chosen stack that may be its long-axis cines: acquired (not DERIVED) series with one
    slice position, at least 2 phases, and a plane at least `LONG_AXIS_MIN_ANGLE_DEG` from the stack's slices.
    Study and Frame of Reference are checked by their user (`core.longaxis`), which names the series it ignores."""
    if chosen.frames[0].orientation is None:
        return []
    normal = chosen.frames[0].normal
    limit = float(np.cos(np.radians(LONG_AXIS_MIN_ANGLE_DEG)))
    return [c for c in candidates if c is not chosen and c.problem is None and c.n_positions == 1
            and c.n_phases >= 2 and not c.derived and abs(float(np.dot(c.frames[0].normal, normal))) <= limit]


def choose_candidate(
    candidates: list[Candidate], skipped: list[Candidate], series_uid: str | None, where: str
) -> Candidate:
    """The caller's series (by SeriesInstanceUID), else the loadable stack with most slices x phases."""
    if series_uid:
        for c in candidates + skipped:
            if series_uid in c.series_uids:
                if c.problem:
                    raise StudyError(f"series {series_uid} cannot be loaded: {c.problem}", where)
                return c
        known = ", ".join(uid for c in candidates + skipped for uid in c.series_uids[:1]) or "none"
        raise StudyError(f"no series with SeriesInstanceUID {series_uid} (found: {known})", where)
    usable = [c for c in candidates if c.problem is None]
    cines = [c for c in usable if c.n_positions >= 2 and c.n_phases >= 2]
    if cines:
        return max(cines, key=lambda c: (not c.derived, c.size, c.n_positions, "sax" in c.description.lower()))
    broken = [c for c in candidates if c.problem]
    if broken:
        raise StudyError(broken[0].problem)
    single = [c for c in usable if c.n_phases >= 2]
    if single:
        c = max(single, key=lambda c: c.size)
        raise StudyError(f"2D-only data: series {c.label} has a single slice position; a short-axis stack "
                         "needs at least 2 slices", where)
    if usable:
        c = max(usable, key=lambda c: c.size)
        raise StudyError(f"no cine: series {c.label} has one image per slice position (no phases)", where)
    reasons = "; ".join(f"{c.label}: {c.problem}" for c in skipped[:3])
    raise StudyError(f"no cine image series found{' (skipped ' + reasons + ')' if reasons else ''}", where)
