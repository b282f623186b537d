"""What a study may claim before anything is read or allocated, and what its geometry must look like.

Readers check a file's claims (voxel count, bytes, file sizes, folder depth) against these caps BEFORE
allocating or reading, and check the voxel -> world geometry of every loaded study against what a
cardiac short-axis cine can be (`check_geometry`): orthogonal voxel axes, a plausible voxel size, a field
of view and slab no scanner exceeds. The defaults are far beyond any real cine (the largest real study
here: 15.7 M voxels, 20 phases x 12 slices x 256 x 256; voxels 0.7-10 mm, 480 mm field of view, 120 mm
slab);
each can be changed with an environment variable, read at every check:

| cap | environment variable | default |
|---|---|---|
| voxels of one image (T x Z x Y x X) | `GEMINI_CMR_MAX_VOXELS` | 268435456 (2^28) |
| bytes of one image's data, decompressed (NIfTI as stored, DICOM as float32) | `GEMINI_CMR_MAX_IMAGE_BYTES` | 2 GiB |
| bytes of one DICOM file or zip member read whole | `GEMINI_CMR_MAX_FILE_BYTES` | 512 MiB |
| bytes of all DICOM files of a folder/zip together, or unpacked from a zip | `GEMINI_CMR_MAX_TOTAL_BYTES` | 4 GiB |
| files under one folder (or members of one zip) | `GEMINI_CMR_MAX_FILES` | 100000 |
| folder nesting below the folder given | `GEMINI_CMR_MAX_DEPTH` | 32 |
| NIfTI header + extensions (vox_offset) | `GEMINI_CMR_MAX_HEADER_BYTES` | 64 MiB |
| voxel size (every axis), mm | `GEMINI_CMR_MIN_VOXEL_MM`, `GEMINI_CMR_MAX_VOXEL_MM` | 0.1, 50 |
| field of view along any axis (in-plane and slab), mm | `GEMINI_CMR_MAX_EXTENT_MM` | 600 |
| deviation of the voxel axes from orthogonal, degrees | `GEMINI_CMR_MAX_SKEW_DEG` | 0.6 |

A slab thicker than `SLAB_WARN_MM` (300 mm, more than any heart) loads with a warning; axes more than
`SKEW_WARN_DEG` (0.006 degrees, ITK's tolerance) from orthogonal load with a warning.
"""

from __future__ import annotations

import math
import os

import numpy as np

from gemini_cmr.core.errors import GeminiError, StudyError

GIB = 1024**3
MIB = 1024**2

#: name -> (environment variable, default, unit shown in messages)
CAPS: dict[str, tuple[str, float, str]] = {
    "max_voxels": ("GEMINI_CMR_MAX_VOXELS", 2**28, "voxels"),
    "max_image_bytes": ("GEMINI_CMR_MAX_IMAGE_BYTES", 2 * GIB, "bytes"),
    "max_file_bytes": ("GEMINI_CMR_MAX_FILE_BYTES", 512 * MIB, "bytes"),
    "max_total_bytes": ("GEMINI_CMR_MAX_TOTAL_BYTES", 4 * GIB, "bytes"),
    "max_files": ("GEMINI_CMR_MAX_FILES", 100_000, "files"),
    "max_depth": ("GEMINI_CMR_MAX_DEPTH", 32, "levels"),
    "max_header_bytes": ("GEMINI_CMR_MAX_HEADER_BYTES", 64 * MIB, "bytes"),
    "min_voxel_mm": ("GEMINI_CMR_MIN_VOXEL_MM", 0.1, "mm"),
    "max_voxel_mm": ("GEMINI_CMR_MAX_VOXEL_MM", 50.0, "mm"),
    "max_extent_mm": ("GEMINI_CMR_MAX_EXTENT_MM", 600.0, "mm"),
    "max_skew_deg": ("GEMINI_CMR_MAX_SKEW_DEG", 0.6, "degrees"),
}
#: A slab thicker than this loads with a warning (a heart is 100-150 mm long).
SLAB_WARN_MM = 300.0
#: Axes further than this from orthogonal load with a warning (ITK's 1e-4 on the direction cosines).
SKEW_WARN_DEG = math.degrees(math.asin(1e-4))


def cap(name: str) -> float:
    """The current value of a cap: its environment variable when set, else the default."""
    env, default, _ = CAPS[name]
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise GeminiError(f"environment variable {env}={text!r} must be a positive number")
    return int(value) if isinstance(default, int) else value


def how_to_raise(name: str) -> str:
    """'GEMINI_CMR_X raises the limit' for messages."""
    return f"set {CAPS[name][0]} to change the limit"


def check_count(n: float, name: str, what: str, where: str | None) -> None:
    """Refuse `n` (a claimed count of voxels, bytes, files) above the cap `name`."""
    limit = cap(name)
    if n > limit:
        unit = CAPS[name][2]
        raise StudyError(f"{what}: {_count(n)} {unit}, more than the limit of {_count(limit)} {unit} "
                         f"({how_to_raise(name)})", where)


def _count(n: float) -> str:
    return f"{int(n):,}" if n < 1e18 else f"{n:.3g}"


def _mm(values) -> str:
    return " x ".join(f"{v:.4g}" for v in values) + " mm"


def check_geometry(shape_zyx: tuple[int, ...], affine: np.ndarray, where: str | None) -> list[str]:
    """Refuse voxel -> world geometry no cardiac cine has; returns warnings for the merely unusual.

    `shape_zyx` is (Z, Y, X) (or (T, Z, Y, X)); `affine` maps (i, j, k) = (column, row, slice) to mm.
    Checked: finite affine; voxel size (column norms) within [min, max]; the axes orthogonal within
    `max_skew_deg` (ITK refuses skewed direction cosines the same way); the field of view along every
    axis within `max_extent_mm`.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise StudyError("invalid geometry: the voxel-to-world affine holds NaN or infinite values", where)
    m = a[:3, :3]
    sizes = np.linalg.norm(m, axis=0)
    lo, hi = cap("min_voxel_mm"), cap("max_voxel_mm")
    if not np.all((sizes >= lo) & (sizes <= hi)):
        env = CAPS["min_voxel_mm"][0] if np.any(sizes < lo) else CAPS["max_voxel_mm"][0]
        raise StudyError(f"implausible voxel size {_mm(sizes)} (a cardiac cine has {lo:g}-{hi:g} mm voxels; "
                         f"set {env} to change the limit)", where)
    d = m / sizes
    warnings: list[str] = []
    worst, pair = 0.0, ""
    for p, q, label in ((0, 1, "the in-plane axes"), (0, 2, "the column and slice axes"),
                        (1, 2, "the row and slice axes")):
        dev = math.degrees(math.asin(min(1.0, abs(float(d[:, p] @ d[:, q])))))
        if dev > worst:
            worst, pair = dev, label
    limit = cap("max_skew_deg")
    if worst > limit:
        raise StudyError(f"non-orthogonal voxel axes: {pair} are {90 - worst:.2f} degrees apart, more than "
                         f"{limit:g} degrees from perpendicular (skewed or nearly singular affine; "
                         f"{how_to_raise('max_skew_deg')})", where)
    if worst > SKEW_WARN_DEG:
        warnings.append(f"{pair} are {worst:.3f} degrees from perpendicular; "
                        "the affine was used as stored")
    nz, ny, nx = (int(s) for s in tuple(shape_zyx)[-3:])
    extent = sizes * np.array([nx, ny, nz], dtype=np.float64)
    limit = cap("max_extent_mm")
    if np.any(extent > limit):
        raise StudyError(f"implausible field of view {_mm(extent)} (columns x rows x slab), more than {limit:g} mm "
                         f"along an axis: no scanner images that much ({how_to_raise('max_extent_mm')})", where)
    if extent[2] > SLAB_WARN_MM:
        warnings.append(f"the slab is {extent[2]:.0f} mm thick ({nz} slices), more "
                        "than a heart: not a short-axis stack? volumes may include other structures")
    return warnings


__all__ = ["CAPS", "SKEW_WARN_DEG", "SLAB_WARN_MM", "cap", "check_count", "check_geometry", "how_to_raise"]
