"""NIfTI read/write in the project's conventions: arrays (T, Z, Y, X) <-> files (x, y, z[, t])."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from core.io.atomic import atomic_path


def to_file_order(array: np.ndarray) -> np.ndarray:
    """(Z, Y, X) -> (x, y, z); (T, Z, Y, X) -> (x, y, z, t)."""
    if array.ndim == 3:
        return np.transpose(array, (2, 1, 0))
    if array.ndim == 4:
        return np.transpose(array, (3, 2, 1, 0))
    raise ValueError(f"expected a 3D or 4D array, got shape {array.shape}")


def from_file_order(data: np.ndarray) -> np.ndarray:
    """(x, y, z) -> (Z, Y, X); (x, y, z, t) -> (T, Z, Y, X)."""
    if data.ndim == 3:
        return np.transpose(data, (2, 1, 0))
    if data.ndim == 4:
        return np.transpose(data, (3, 2, 1, 0))
    raise ValueError(f"expected 3D or 4D NIfTI data, got shape {data.shape}")


def save_nifti(
    path: str | Path,
    array: np.ndarray,
    affine: np.ndarray,
    phase_interval_ms: float | None = None,
    description: str = "gemini-cmr",
) -> Path:
    """Write (Z, Y, X) or (T, Z, Y, X) with an exact affine (sform and qform, code 1 scanner), atomically.

    uint8/int labels keep an integer dtype; images are written as float32.
    """
    path = Path(path)
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        data = to_file_order(array.astype(np.uint8 if array.max(initial=0) < 256 else np.int16))
    else:
        data = to_file_order(array.astype(np.float32))
    img = nib.Nifti1Image(np.ascontiguousarray(data), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm", "msec")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    if array.ndim == 4 and phase_interval_ms:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(phase_interval_ms)
        img.header.set_zooms(zooms)
    img.header["descrip"] = description[:79].encode()
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def read_nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    """Read a NIfTI file written in the project's conventions: ((T,)Z, Y, X) array, affine, header.

    This is the plain reader used for the project's own files (datasets, results). User studies go
    through `core.io.load_study`, which also handles header gotchas (e.g. ACDC) and label remapping.
    """
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    return from_file_order(data), np.asarray(img.affine, dtype=np.float64), img.header
