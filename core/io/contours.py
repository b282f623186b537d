"""Sunnybrook manual contours -> label masks on the study's own slices and phases.

Contour files are named by the DICOM InstanceNumber of the image they were drawn on
(`IM-0001-NNNN-icontour-manual.txt`, NNNN = InstanceNumber), and hold one `x y` pair per line in
pixel coordinates (x = column, y = row, sub-pixel). The coordinates are 1-based, MATLAB's convention: the
first pixel's centre is (1, 1), so `CONTOUR_ORIGIN` is subtracted before rasterising onto 0-based arrays.
The files do not say so; measured (docs/real-data.md, "Sunnybrook contours are 1-based";
`scripts/sunnybrook_contour_offset.py`): the ACDC model's labels agree best with the contours moved by -1
pixel in both axes on the three Sunnybrook series, and unmoved on ACDC's own label maps. The loader
may reorder images (slices along the normal, phases by TriggerTime), so masks are placed through the
study's `meta.extra["instance_numbers"]` table, never by recomputing slice/phase from the number.

i-contour (endocardium) -> 1 LV cavity; o-contour (epicardium) minus the endocardium -> 2 LV myocardium.
An epicardium must enclose its endocardium (`ENCLOSED_FRACTION` of the cavity's pixels inside it); one that
does not belongs to another image or study (a copied or misfiled contour file), so that slice keeps its
LV cavity and its myocardium is left unlabelled, with a warning naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.study import Study

_NAME = re.compile(r"IM-\d+-(\d+)-([io])contour", re.IGNORECASE)
ENCLOSED_FRACTION = 0.95
#: Pixel coordinate of the first pixel's centre in the contour files (1: MATLAB's 1-based convention).
CONTOUR_ORIGIN = 1.0


@dataclass
class ContourMasks:
    """Labels (T, Z, Y, X) uint8 in the project convention and where they came from."""

    labels: np.ndarray
    labelled: list[tuple[int, int]]  # (phase, slice) pairs holding at least one contour
    warnings: list[str] = field(default_factory=list)

    @property
    def labelled_phases(self) -> list[int]:
        return sorted({t for t, _ in self.labelled})


def read_contour(path: str | Path) -> np.ndarray:
    """(N, 2) float array of (x = column, y = row) points; `StudyError` for malformed files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise StudyError(f"cannot read contour file ({exc.strerror})", str(path)) from None
    points = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            x, y = float(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            raise StudyError(f"line {number} is not an 'x y' pair: {line.strip()[:40]!r}", str(path)) from None
        points.append((x, y))
    if len(points) < 3:
        raise StudyError(f"a contour needs at least 3 points, got {len(points)}", str(path))
    arr = np.asarray(points, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise StudyError("contour holds non-finite coordinates", str(path))
    return arr


def rasterise(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (rows, cols) mask of the pixels whose centres lie inside `polygon` ((N, 2) x, y).

    Even-odd crossing test per image row, vectorised over polygon edges: exact for sub-pixel vertices.
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo = int(max(0, np.floor(y0.min())))
    hi = int(min(rows - 1, np.ceil(y0.max())))
    xs = np.arange(cols, dtype=np.float64)
    for r in range(lo, hi + 1):
        y = float(r)
        crosses = (y0 <= y) != (y1 <= y)  # edges straddling this row (half-open: no double count)
        if not np.any(crosses):
            continue
        xa, ya, xb, yb = x0[crosses], y0[crosses], x1[crosses], y1[crosses]
        x_cross = np.sort(xa + (y - ya) * (xb - xa) / (yb - ya))
        inside = np.searchsorted(x_cross, xs, side="right") % 2 == 1
        mask[r] = inside
    return mask


def contour_files(folder: str | Path) -> dict[int, dict[str, Path]]:
    """InstanceNumber -> {'i': path, 'o': path} for the contour files under `folder` (recursive)."""
    out: dict[int, dict[str, Path]] = {}
    for p in sorted(Path(folder).rglob("*.txt")):
        m = _NAME.search(p.name)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2).lower()] = p
    return out


def rasterise_contours(study: Study, folder: str | Path, origin: float = CONTOUR_ORIGIN) -> ContourMasks:
    """Masks for every contour file in `folder`, placed on the study slice/phase of its InstanceNumber;
    `origin`: the files' coordinate of the first pixel's centre (`CONTOUR_ORIGIN`; 0 for 0-based files)."""
    folder = Path(folder)
    files = contour_files(folder)
    if not files:
        raise StudyError("no Sunnybrook contour files (IM-...-icontour/ocontour-...txt)", str(folder))
    table = study.meta.extra.get("instance_numbers")
    if table is None:
        raise StudyError("the study has no DICOM InstanceNumbers to place contours on", study.meta.source_path)
    where = {int(n): (t, k) for t, row in enumerate(table) for k, n in enumerate(row) if int(n) >= 0}
    _, _, ny, nx = study.image.shape
    labels = np.zeros(study.image.shape, dtype=np.uint8)
    labelled: list[tuple[int, int]] = []
    warnings: list[str] = []
    for instance, kinds in sorted(files.items()):
        if instance not in where:
            warnings.append(f"contours for InstanceNumber {instance} match no loaded image; ignored")
            continue
        t, k = where[instance]
        if "i" not in kinds:
            warnings.append(f"{kinds['o'].name}: epicardium without endocardium; myocardium cannot be "
                            "separated, ignored")
            continue
        endo = rasterise(read_contour(kinds["i"]) - origin, (ny, nx))
        plane = labels[t, k]
        if "o" in kinds:
            epi = rasterise(read_contour(kinds["o"]) - origin, (ny, nx))
            inside = float((endo & epi).sum()) / max(1, int(endo.sum()))
            if inside >= ENCLOSED_FRACTION:
                plane[epi & ~endo] = 2
            else:
                warnings.append(f"{kinds['o'].name}: the epicardium does not enclose the endocardium "
                                f"({100 * (1 - inside):.0f}% of the cavity outside it); myocardium not "
                                "labelled on this slice")
        plane[endo] = 1
        labelled.append((t, k))
    return ContourMasks(labels=labels, labelled=labelled, warnings=warnings)


def attach_contours(study: Study, folder: str | Path, origin: float = CONTOUR_ORIGIN) -> Study:
    """The study with Sunnybrook contours as its labels (labelled phases = phases with any contour);
    `origin` as in `rasterise_contours`."""
    masks = rasterise_contours(study, folder, origin)
    study.labels = masks.labels
    study.labelled_phases = masks.labelled_phases
    study.meta.warnings.extend(masks.warnings)
    study.meta.extra["contour_slices"] = [list(p) for p in masks.labelled]
    return study
