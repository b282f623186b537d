"""NIfTI read/write in the project's conventions: arrays (T, Z, Y, X) <-> files (x, y, z[, t])."""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import stat
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import limits
from gemini_cmr.core.io.atomic import atomic_path


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


#: How images (not labels) can be stored by `save_nifti`.
IMAGE_DTYPES = ("float32", "int16")


def save_nifti(
    path: str | Path,
    array: np.ndarray,
    affine: np.ndarray,
    phase_interval_ms: float | None = None,
    description: str = "gemini-cmr",
    image_dtype: str = "float32",
) -> Path:
    """Write (Z, Y, X) or (T, Z, Y, X) with an exact affine (sform and qform, code 1 scanner), atomically.

    uint8/int labels keep an integer dtype; images are written as float32, or with `image_dtype="int16"`
    as 16-bit integers with the NIfTI scale and offset (scl_slope, scl_inter) chosen by nibabel to span
    the image's range: any NIfTI reader gets the values back within half a step (range / 65535).
    """
    if image_dtype not in IMAGE_DTYPES:
        raise ValueError(f"image_dtype must be one of {', '.join(IMAGE_DTYPES)}, not {image_dtype!r}")
    path = Path(path)
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        data = to_file_order(array.astype(np.uint8 if array.max(initial=0) < 256 else np.int16))
    else:
        data = to_file_order(array.astype(np.float32))
    img = nib.Nifti1Image(np.ascontiguousarray(data), np.asarray(affine, dtype=np.float64))
    if data.dtype == np.float32 and image_dtype == "int16":
        img.set_data_dtype(np.int16)  # nibabel's writer scales (slope and intercept) and rounds
    _set_header(img, affine, array.ndim, phase_interval_ms, description)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path



def _set_header(img, affine, ndim: int, phase_interval_ms, description: str) -> None:
    """Units, sform = qform = `affine` (code 1), the phase interval of a 4D cine, the description."""
    img.header.set_xyzt_units("mm", "msec")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    if ndim == 4 and phase_interval_ms:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(phase_interval_ms)
        img.header.set_zooms(zooms)
    img.header["descrip"] = description[:79].encode()

def int16_scaling(array: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) as float32 values (what the header stores) mapping int16 -32767..32767 onto the
    range of `array`: slope = range / 65534, so stored values are exact for that scale."""
    lo, hi = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("an int16 NIfTI image needs finite values")
    slope = np.float32((hi - lo) / 65534.0) if hi > lo else np.float32(1.0)
    inter = np.float32(lo + 32767.0 * float(slope)) if hi > lo else np.float32(lo)
    return float(slope), float(inter)


class ScaledInt16:
    """The int16 data of a float image (T, Z, Y, X) under `int16_scaling`'s (slope, intercept), made on
    demand: `read(b0, b1)` converts only the rows (Y x X planes) holding bytes b0:b1 of the C-order data,
    so a writer that compresses it chunk by chunk never holds the whole int16 copy. `array()` converts it
    all. Each value is round((v - intercept) / slope) clipped to +-32767, the same in both."""

    def __init__(self, array: np.ndarray, slope: float, intercept: float):
        self.shape = array.shape
        self.rows = array.reshape(-1, *array.shape[-2:])
        self.inv, self.off = np.float32(1.0 / slope), np.float32(intercept)
        self.row_bytes = 2 * int(np.prod(array.shape[-2:], dtype=np.int64))
        self.nbytes = self.row_bytes * len(self.rows)

    def convert(self, out: np.ndarray, i0: int, i1: int) -> None:
        """Rows i0:i1 into `out` (i1 - i0, Y, X) int16, row by row: no float temporaries of more rows."""
        tmp = np.empty(self.rows.shape[1:], np.float32)
        for i in range(i0, i1):
            np.subtract(self.rows[i], self.off, out=tmp, dtype=np.float32)
            np.multiply(tmp, self.inv, out=tmp)
            np.rint(tmp, out=tmp)
            np.clip(tmp, -32767, 32767, out=tmp)
            out[i - i0] = tmp

    def read(self, b0: int, b1: int) -> memoryview:
        """Bytes b0:b1 of the data (native int16, as `array()`)."""
        r0, r1 = b0 // self.row_bytes, -(-b1 // self.row_bytes)
        block = np.empty((r1 - r0, *self.rows.shape[1:]), np.int16)
        self.convert(block, r0, r1)
        start = b0 - r0 * self.row_bytes
        return memoryview(block).cast("B")[start:start + (b1 - b0)]

    def array(self) -> np.ndarray:
        data = np.empty(self.shape, np.int16)
        out = data.reshape(self.rows.shape)
        n = len(self.rows)
        workers = max(1, min(os.cpu_count() or 1, n // 8))
        if workers > 1:  # NumPy's ufuncs release the GIL
            edges = np.linspace(0, n, workers + 1).astype(int)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda i0, i1: self.convert(out[i0:i1], i0, i1), edges[:-1], edges[1:]))
        else:
            self.convert(out, 0, n)
        return data


def nifti_file_parts(
    array: np.ndarray,
    affine: np.ndarray,
    phase_interval_ms: float | None = None,
    description: str = "gemini-cmr",
    image_dtype: str = "float32",
    lazy: bool = False,
) -> tuple[bytes, np.ndarray | ScaledInt16]:
    """The bytes `save_nifti` would write, as (header and extension flag: the first 352 bytes, a
    C-contiguous array whose bytes are the data that follows): (T, Z, Y, X) in C order is the file's
    (x, y, z, t) in Fortran order, so float32 and uint8 data are not copied. The header is `save_nifti`'s
    but for int16, whose scale is `int16_scaling` (values read back within half a step, range / 65534).
    `lazy=True`: int16 data as a `ScaledInt16`, converted as it is read, instead of an array."""
    if image_dtype not in IMAGE_DTYPES:
        raise ValueError(f"image_dtype must be one of {', '.join(IMAGE_DTYPES)}, not {image_dtype!r}")
    array = np.asarray(array)
    slope, inter = 1.0, 0.0
    data: np.ndarray | ScaledInt16
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        data = np.ascontiguousarray(array, dtype=np.uint8 if array.max(initial=0) < 256 else np.int16)
    elif image_dtype == "int16":
        slope, inter = int16_scaling(array)
        data = ScaledInt16(array, slope, inter)
        if not lazy:
            data = data.array()
    else:
        data = np.ascontiguousarray(array, dtype=np.float32)
    dtype = np.dtype(np.int16) if isinstance(data, ScaledInt16) else data.dtype
    shape = to_file_order(np.broadcast_to(np.zeros((), dtype), array.shape)).shape
    dummy = np.broadcast_to(np.zeros((), dtype), shape)  # shape and type only
    img = nib.Nifti1Image(dummy, np.asarray(affine, dtype=np.float64))
    _set_header(img, affine, array.ndim, phase_interval_ms, description)
    img.update_header()
    hdr = img.header
    hdr.set_data_offset(352)
    hdr.set_slope_inter(slope, inter)
    return hdr.binaryblock + b"\x00\x00\x00\x00", data


def read_nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    """Read a NIfTI file written in the project's conventions: ((T,)Z, Y, X) array, affine, header.

    This is the plain reader used for the project's own files (datasets, results). User studies go
    through `core.io.load_study`, which also handles header gotchas (e.g. ACDC) and label remapping.
    """
    name = str(path)
    check_header_claims(path, name)
    raw = _raw_header(Path(path))
    with quiet_nibabel():
        img = nib.load(name)
    check_stored_size(img, name)
    if len(img.shape) >= 3:
        _check_pixdim(raw, img.header, name)
        with np.errstate(all="ignore"):
            limits.check_geometry(tuple(img.shape[:3])[::-1], img.affine, name)
    with quiet_nibabel(), np.errstate(all="ignore"):
        data = np.asanyarray(img.dataobj)
    _check_float32_range(data, raw if raw is not None else img.header, name)
    return from_file_order(data), np.asarray(img.affine, dtype=np.float64), img.header


def _check_pixdim(raw, header, name: str) -> bool:
    """False when pixdim[1..3] holds a zero or undefined voxel size (nibabel silently makes it 1 mm) and an
    sform states the geometry; `StudyError` when no sform does."""
    pixdim = np.asarray((raw if raw is not None else header)["pixdim"][1:4], dtype=np.float64)
    if np.all(np.isfinite(pixdim) & (pixdim != 0)):
        return True
    if int(header["sform_code"]) <= 0:
        raise StudyError(f"pixdim gives a zero or undefined voxel size ({_mm(pixdim)}) and no sform states "
                         "the geometry", name)
    return False


#: Largest NIfTI volume (bytes of its stored data) read for a user study; the cap in use is
#: `limits.cap("max_image_bytes")` (GEMINI_CMR_MAX_IMAGE_BYTES), this is only its historical ceiling.
MAX_NIFTI_BYTES = 8 * 1024**3
#: deflate never compresses more than 1032:1, so a .gz file holds at most this many bytes per stored byte.
_GZIP_MAX_RATIO = 1032


@contextlib.contextmanager
def quiet_nibabel(reports: list[str] | None = None) -> Iterator[None]:
    """Keep nibabel's header reports ("pixdim[1,2,3] should be non-zero; setting 0 dims to 1", printed
    twice: by nibabel's own handler and through the root logger) and warnings off stderr while reading;
    the reports are collected in `reports` so the caller can turn them into one warning or an error."""
    logger = logging.getLogger("nibabel.global")
    handlers, propagate = logger.handlers[:], logger.propagate

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if reports is not None:
                reports.append(" ".join(record.getMessage().split()))

    collector = _Collect()
    logger.handlers = [collector]
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.handlers = handlers
        logger.propagate = propagate


def _raw_header(path: Path):
    """The fixed-size header of a NIfTI-1/2 file as stored (nibabel's fixes not applied), or None when it
    cannot be read (nibabel then says why). Reads at most 540 bytes: nothing the header claims is read."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    for klass, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        if len(head) >= size and size in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")):
            try:
                return klass.from_fileobj(io.BytesIO(head[:size]), check=False)
            except Exception:  # a header nibabel cannot parse: nib.load reports it
                return None
    return None


def _claimed(header) -> tuple[tuple[int, ...], int | None]:
    """(shape, bytes per voxel or None when the datatype is unknown) that a header claims."""
    shape = tuple(int(v) for v in header.get_data_shape())
    try:
        itemsize = int(np.dtype(header.get_data_dtype()).itemsize)
    except Exception:  # unknown datatype code: nib.load reports it
        itemsize = None
    return shape, itemsize


def check_header_claims(path: str | Path, name: str) -> None:
    """Refuse a NIfTI header whose claims (voxel count, bytes, vox_offset) exceed the caps in
    `core.io.limits` or what the file can hold, reading only the header: run before `nib.load`, which
    would read a claimed extension block (up to vox_offset) into memory."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None  # missing or unreadable: nib.load reports it by name
    if mode is not None and not stat.S_ISREG(mode):
        raise StudyError("not a regular file (a FIFO, device or socket): not read", name)
    raw = _raw_header(path)
    if raw is None:
        return
    try:
        shape, itemsize = _claimed(raw)
        offset = float(raw["vox_offset"])
    except Exception:  # a header nibabel cannot interpret: nib.load reports it by name
        return
    if np.isfinite(offset):
        limits.check_count(offset, "max_header_bytes", "the header and its extensions claim (vox_offset)", name)
    if shape and min(shape) > 0:
        n = float(np.prod(shape, dtype=np.float64))
        limits.check_count(n, "max_voxels", f"implausible image size {shape} in the header", name)
        if itemsize is not None:
            limits.check_count(n * itemsize, "max_image_bytes", f"implausible image size {shape} in the header",
                               name)
            _check_fits_file(n * itemsize, offset if np.isfinite(offset) else 0.0, path, name)


def _check_fits_file(claimed: float, offset: float, path: Path, name: str) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        return
    lower = str(path).lower()
    if lower.endswith(".gz"):
        if claimed + offset > _GZIP_MAX_RATIO * size + 1024:
            raise StudyError(f"truncated or corrupt: the header claims {int(claimed)} bytes of image data, more "
                             f"than a {size}-byte gzip file can hold", name)
    elif not lower.endswith((".bz2", ".zst")) and claimed + offset > size:
        raise StudyError(f"truncated: the header claims {int(claimed)} bytes of image data after byte "
                         f"{int(offset)}, the file holds {size} bytes", name)


def check_stored_size(img, name: str) -> None:
    """Refuse a header that claims more image data than its file can hold, before anything is allocated.

    nibabel allocates the claimed size up front for compressed files (a 1 kB .nii.gz claiming 2.6 GB
    allocates 2.6 GB before noticing the data is short). Uncompressed data must fit in the file;
    gzip data cannot exceed 1032x the compressed size. Other compressions are not checked.
    """
    try:
        claimed = int(np.prod(img.shape, dtype=np.float64)) * np.dtype(img.header.get_data_dtype()).itemsize
        fname = img.file_map["image"].filename
        offset = int(img.header.get_data_offset())
    except Exception:  # no file (in-memory image) or an odd header: leave it to the reader
        return
    _check_fits_file(float(claimed), float(offset), Path(fname), name)


_TIME_UNIT_MS = {"msec": 1.0, "sec": 1000.0, "usec": 0.001}


def nifti_affine(header: nib.Nifti1Header, affine: np.ndarray, name: str,
                 trust_pixdim: bool = True) -> tuple[np.ndarray, list[str]]:
    """The voxel -> world affine of a user NIfTI file, repaired when its header contradicts itself.

    ACDC (and other converters) write `sform_code = 2` with a unit-scale sform and `qform_code = 0`:
    `img.affine` then claims 1 mm voxels while the true voxel size is only in `pixdim`. When the
    column norms of the affine disagree with `pixdim` and no qform backs the affine, the directions
    are kept and the columns rescaled to `pixdim` (with a warning).
    """
    affine = np.asarray(affine, dtype=np.float64).copy()
    zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    warn: list[str] = []
    disagree = np.any(np.abs(norms - zooms) > 1e-3 * np.maximum(zooms, 1e-6))
    if disagree and trust_pixdim and int(header["qform_code"]) == 0 and np.all(zooms > 0) and np.all(norms > 0):
        affine[:3, :3] = affine[:3, :3] / norms * zooms
        warn.append(
            f"{name}: sform (code {int(header['sform_code'])}) gives {_mm(norms)} voxels but pixdim says "
            f"{_mm(zooms)} and there is no qform; used the pixdim voxel size"
        )
    return affine, warn


def _mm(values: np.ndarray) -> str:
    return "x".join(f"{v:.4g}" for v in values) + " mm"


def phase_interval_ms(header: nib.Nifti1Header) -> float | None:
    """Time between phases from pixdim[4] when the header states a time unit; None otherwise."""
    zooms = header.get_zooms()
    if len(zooms) < 4:
        return None
    try:
        unit = header.get_xyzt_units()[1]
    except (KeyError, ValueError):  # an undefined unit code in xyzt_units: no time unit
        return None
    if unit not in _TIME_UNIT_MS or not zooms[3] > 0:
        return None
    return float(zooms[3]) * _TIME_UNIT_MS[unit]


def load_nifti_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header, list[str]]:
    """Read a user NIfTI file as ((T,)Z, Y, X) with a checked, repaired affine; errors are `StudyError`.

    Returns (array in its stored dtype, affine, header, warnings). Trailing singleton dimensions beyond
    the 4th are dropped; 2D files, absurd header sizes and truncated data are rejected by name. Before
    anything is read past the header: the claimed sizes against `core.io.limits` and the file, the voxel
    type, and the geometry (`limits.check_geometry`: orthogonal axes, voxel size, field of view). nibabel's
    header reports and numpy's overflow warnings never reach stderr; intensities beyond the float32
    range (float64 data, a huge scl_slope) are refused.
    """
    name = str(path)
    check_header_claims(path, name)
    raw = _raw_header(Path(path))
    reports: list[str] = []
    try:
        with quiet_nibabel(reports):
            img = nib.load(name)
    except FileNotFoundError:
        raise StudyError("file not found", name) from None
    except Exception as exc:  # nibabel raises several types for non-NIfTI or corrupt headers
        raise StudyError(f"not a readable NIfTI file ({type(exc).__name__}: {exc})", name) from None
    header = img.header
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3 or len(shape) > 4 or min(shape) < 1:
        raise StudyError(f"expected a 3D or 4D image (x, y, z[, t]), got shape {img.shape}", name)
    dtype = np.dtype(header.get_data_dtype())
    if dtype.fields is not None or dtype.kind == "c":
        raise StudyError(f"unsupported voxel type {dtype}", name)
    n = float(np.prod(shape, dtype=np.float64))
    limits.check_count(n, "max_voxels", f"implausible image size {shape} in the header", name)
    limits.check_count(n * dtype.itemsize, "max_image_bytes", f"implausible image size {shape} in the header", name)
    if n * dtype.itemsize > MAX_NIFTI_BYTES:
        raise StudyError(f"implausible image size {shape} in the header", name)
    check_stored_size(img, name)
    warn: list[str] = []
    trust_pixdim = _check_pixdim(raw, header, name)
    if not trust_pixdim:
        warn.append(f"{name}: pixdim gives a zero or undefined voxel size; used the sform")
    elif reports:
        warn.append(f"{name}: header repaired on reading: {reports[0]}")
    with np.errstate(all="ignore"):  # Inf/NaN in pixdim or the sform: refused by check_geometry, silently
        affine, fixed = nifti_affine(header, img.affine, name, trust_pixdim=trust_pixdim)
        warn += fixed
        warn += [f"{name}: {w}" for w in limits.check_geometry(shape[2::-1], affine, name)]
    try:
        with quiet_nibabel(), np.errstate(all="ignore"):
            data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as exc:  # EOFError, zlib.error, OSError, ValueError for short or corrupt data
        raise StudyError(f"truncated or corrupt image data ({type(exc).__name__}: {exc})", name) from None
    if data.dtype.fields is not None or np.iscomplexobj(data):
        raise StudyError(f"unsupported voxel type {data.dtype}", name)
    _check_float32_range(data, raw if raw is not None else header, name)
    return from_file_order(data), affine, header, warn


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32_range(data: np.ndarray, header, name: str) -> None:
    """Studies are float32: refuse finite values beyond its range (they would become Inf with a numpy
    RuntimeWarning), e.g. float64 data holding 1e300 or integers scaled by scl_slope 1e38."""
    if data.dtype.kind != "f" or data.dtype.itemsize <= 4 or data.size == 0:
        return
    with np.errstate(all="ignore"):
        finite = np.isfinite(data)
        big = float(np.max(np.abs(data), where=finite, initial=0.0))
    if big > _FLOAT32_MAX:
        try:
            slope = float(header["scl_slope"])
        except Exception:
            slope = float("nan")
        why = f"; scl_slope {slope:g}" if np.isfinite(slope) and slope not in (0.0, 1.0) else ""
        raise StudyError(f"intensities beyond the float32 range (largest magnitude {big:.3g}{why})", name)
