"""The table of bad inputs shared by the reliability tests (CLI `info`, `super-resolve`, `train gemini`,
and the app's open action).

Each case is a builder `make(tmp: Path) -> Path` that writes one bad study into `tmp` and returns the path
to hand to the loader, plus `expect`: a few words the one-line error message must contain (lower case).
Every builder writes small files (a few kB) so the whole table runs in seconds.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.core.io import dicom_factory as dfac

RNG_BYTES = np.random.default_rng(12).integers(0, 256, 4096, dtype=np.uint8).tobytes()


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    expect: tuple[str, ...] = ()
    nifti: bool = False  # the bad input is one NIfTI file (usable as a dataset member for training)
    in_process_only: bool = False  # needs monkeypatching (fault injection), not a subprocess

    def __str__(self) -> str:
        return self.name


# --- valid material ---------------------------------------------------------------------------------------
def cine_array(t: int = 3, z: int = 4, y: int = 20, x: int = 24) -> np.ndarray:
    """(x, y, z, t) float32 in file order: a smooth blob, so it is a plausible image."""
    xx, yy = np.meshgrid(np.arange(x), np.arange(y), indexing="ij")
    blob = np.exp(-((xx - x / 2) ** 2 + (yy - y / 2) ** 2) / 30.0).astype(np.float32)
    return np.stack([np.stack([blob * (1 + 0.1 * k + 0.05 * p) for p in range(t)], -1)
                     for k in range(z)], 2) * 1000


def nifti_bytes(data: np.ndarray, affine: np.ndarray | None = None, gz: bool = True) -> bytes:
    aff = np.diag([1.5, 1.5, 8.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, aff)
    img.header.set_xyzt_units("mm", "msec")
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(nifti_bytes(data, affine, gz=path.name.endswith(".gz")))
    return path


def dicom_cine(folder: Path, **spec) -> list[Path]:
    return dfac.write(folder, dfac.make_cine(dfac.CineSpec(**spec)))


def _edit_dicoms(folder: Path, datasets, edit) -> Path:
    for ds in datasets:
        edit(ds)
    dfac.write(folder, datasets)
    return folder


# --- NIfTI ---------------------------------------------------------------------------------------------------
def nifti_zero_byte(tmp: Path) -> Path:
    p = tmp / "empty.nii.gz"
    p.write_bytes(b"")
    return p


def nifti_truncated_gz(tmp: Path) -> Path:
    full = nifti_bytes(cine_array())
    p = tmp / "cut.nii.gz"
    p.write_bytes(full[: len(full) // 2])
    return p


def nifti_truncated_raw(tmp: Path) -> Path:
    full = nifti_bytes(cine_array(), gz=False)
    p = tmp / "cut.nii"
    p.write_bytes(full[: 352 + 100])  # header intact, data short
    return p


def nifti_header_cut(tmp: Path) -> Path:
    p = tmp / "stub.nii"
    p.write_bytes(nifti_bytes(cine_array(), gz=False)[:200])
    return p


def random_bytes_nii_gz(tmp: Path) -> Path:
    p = tmp / "noise.nii.gz"
    p.write_bytes(RNG_BYTES)
    return p


def random_gzip_nii_gz(tmp: Path) -> Path:
    """Valid gzip, random content: the gzip layer passes, NIfTI parsing must not."""
    p = tmp / "noise2.nii.gz"
    p.write_bytes(gzip.compress(RNG_BYTES))
    return p


def nifti_2d(tmp: Path) -> Path:
    return write_nifti(tmp / "flat.nii.gz", cine_array()[:, :, 0, 0])


def nifti_one_slice(tmp: Path) -> Path:
    return write_nifti(tmp / "oneslice.nii.gz", cine_array(z=1))


def nifti_nan(tmp: Path) -> Path:
    d = cine_array()
    d[3, 4, 1, 0] = np.nan
    return write_nifti(tmp / "nan.nii.gz", d)


def nifti_inf(tmp: Path) -> Path:
    d = cine_array()
    d[5, 5, 2, 1] = -np.inf
    return write_nifti(tmp / "inf.nii.gz", d)


def nifti_singular_affine(tmp: Path) -> Path:
    img = nib.Nifti1Image(cine_array(), np.diag([1.5, 1.5, 8.0, 1.0]))
    aff = np.zeros((4, 4))
    aff[3, 3] = 1
    img.set_sform(aff, code=1)
    img.set_qform(None, code=0)
    p = tmp / "singular.nii.gz"
    p.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    return p


def nifti_tiny_inplane(tmp: Path) -> Path:
    return write_nifti(tmp / "tiny.nii.gz", cine_array(y=4, x=4))


def _claiming(tmp: Path, name: str, shape: tuple[int, ...], gz: bool = True) -> Path:
    """A NIfTI whose header claims `shape` but holds a few bytes of data (NIfTI-2 when a dimension
    exceeds NIfTI-1's int16 limit)."""
    kind = nib.Nifti2Image if max(shape) > 32767 else nib.Nifti1Image
    img = kind(np.zeros((4, 4, 2, 2), np.float32), np.diag([1.5, 1.5, 8.0, 1.0]))
    raw = bytearray(img.to_bytes())
    n = img.header.sizeof_hdr
    hdr = img.header.__class__.from_fileobj(io.BytesIO(bytes(raw[:n])))
    hdr.set_data_shape(shape)
    raw[:n] = hdr.binaryblock
    p = tmp / name
    p.write_bytes(gzip.compress(bytes(raw), mtime=0) if gz else bytes(raw))
    return p


def nifti_absurd_phases(tmp: Path) -> Path:
    """10^5 phases of 128x128x10 float32 claimed (65 GB), 1 kB stored."""
    return _claiming(tmp, "huge.nii.gz", (128, 128, 10, 100_000))


def nifti_large_claim_small_file(tmp: Path) -> Path:
    """Claims 2.6 GB (under the 8 GB cap) in a 1 kB gzip file: must be refused before allocating."""
    return _claiming(tmp, "claims.nii.gz", (256, 256, 10, 1000))


def nifti_large_claim_raw(tmp: Path) -> Path:
    return _claiming(tmp, "claims.nii", (256, 256, 10, 1000), gz=False)


def nifti_complex(tmp: Path) -> Path:
    return write_nifti(tmp / "complex.nii.gz", cine_array().astype(np.complex64))


# --- DICOM ---------------------------------------------------------------------------------------------------
def dicom_zero_byte(tmp: Path) -> Path:
    p = tmp / "empty.dcm"
    p.write_bytes(b"")
    return p


def dicom_zero_byte_in_folder(tmp: Path) -> Path:
    folder = tmp / "dcm"
    files = dicom_cine(folder)
    files[0].write_bytes(b"")
    return folder


def dicom_truncated(tmp: Path) -> Path:
    folder = tmp / "dcm"
    files = dicom_cine(folder)
    data = files[3].read_bytes()
    files[3].write_bytes(data[: len(data) // 3])
    return folder


def dicom_truncated_single(tmp: Path) -> Path:
    folder = tmp / "dcm"
    files = dicom_cine(folder)
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) - 300])  # pixel data cut short
    return files[0]


def random_bytes_dcm(tmp: Path) -> Path:
    p = tmp / "noise.dcm"
    p.write_bytes(RNG_BYTES)
    return p


def random_bytes_dcm_folder(tmp: Path) -> Path:
    folder = tmp / "dcm"
    folder.mkdir()
    for i in range(3):
        (folder / f"IM_{i}.dcm").write_bytes(RNG_BYTES[i * 100:])
    return folder


def dicom_no_pixels(tmp: Path) -> Path:
    def drop(ds):
        del ds.PixelData
    return _edit_dicoms(tmp / "dcm", dfac.make_cine(dfac.CineSpec()), drop)


def dicom_no_position(tmp: Path) -> Path:
    def drop(ds):
        del ds.ImagePositionPatient
    return _edit_dicoms(tmp / "dcm", dfac.make_cine(dfac.CineSpec()), drop)


def dicom_no_orientation(tmp: Path) -> Path:
    def drop(ds):
        del ds.ImageOrientationPatient
        del ds.PixelSpacing
    return _edit_dicoms(tmp / "dcm", dfac.make_cine(dfac.CineSpec()), drop)


def dicom_mixed_orientations(tmp: Path) -> Path:
    datasets = dfac.make_cine(dfac.CineSpec())
    for ds in datasets[: len(datasets) // 2]:
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in dfac.AXIAL]
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_mixed_matrix(tmp: Path) -> Path:
    datasets = dfac.make_cine(dfac.CineSpec())
    dfac._set_pixels(datasets[0], dfac.pixel_code(0, 0, 32, 32))
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_mixed_series_single_slices(tmp: Path) -> Path:
    """Two series, each one slice position in a different orientation: nothing forms a stack."""
    a = dfac.make_cine(dfac.CineSpec(n_slices=1, description="lax_2ch"))
    b = dfac.make_cine(dfac.CineSpec(n_slices=1, description="lax_4ch", orientation=dfac.AXIAL.copy()))
    dfac.write(tmp / "dcm", a + b)
    return tmp / "dcm"


def dicom_one_slice(tmp: Path) -> Path:
    dicom_cine(tmp / "dcm", n_slices=1)
    return tmp / "dcm"


def dicom_uneven_slices(tmp: Path) -> Path:
    datasets = [ds for ds in dfac.make_cine(dfac.CineSpec(n_slices=5)) if ds.InstanceNumber not in range(6, 11)]
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_localizer_only(tmp: Path) -> Path:
    """Non-SAX series only: a localizer."""
    dicom_cine(tmp / "dcm", n_slices=3, n_phases=1, description="localizer",
               image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    return tmp / "dcm"


def dicom_absurd_matrix(tmp: Path) -> Path:
    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=2))
    for ds in datasets:
        ds.Rows = 60000
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_bad_spacing(tmp: Path) -> Path:
    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=2))
    for ds in datasets:
        ds.PixelSpacing = ["0", "0"]
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def _corrupt_vr(tmp: Path, tag: bytes) -> Path:
    """An unknown value representation ('AI') on one element of one file: pydicom reads the file but
    fails when the element is first decoded."""
    folder = tmp / "dcm"
    files = dicom_cine(folder)
    data = files[2].read_bytes()
    i = data.index(tag)
    files[2].write_bytes(data[: i + 4] + b"AI" + data[i + 6:])
    return folder


def dicom_corrupt_vr_sop_class(tmp: Path) -> Path:
    return _corrupt_vr(tmp, b"\x08\x00\x16\x00UI")


def dicom_corrupt_vr_bits(tmp: Path) -> Path:
    return _corrupt_vr(tmp, b"\x28\x00\x00\x01US")


def dicom_incomplete(tmp: Path) -> Path:
    datasets = dfac.make_cine(dfac.CineSpec(n_slices=3, n_phases=4))
    dfac.write(tmp / "dcm", datasets[:-1])
    return tmp / "dcm"


# --- containers and file system ---------------------------------------------------------------------------------
def zip_traversal(tmp: Path) -> Path:
    p = tmp / "evil.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("ok/IM_0001.dcm", b"x")
        z.writestr("../../escaped.dcm", b"x")
    return p


def zip_absolute(tmp: Path) -> Path:
    p = tmp / "abs.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("/tmp/gemini-escaped.nii.gz", b"x")
    return p


def zip_traversal_nifti(tmp: Path) -> Path:
    p = tmp / "evil_nifti.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("sub/../../../escaped.nii.gz", nifti_bytes(cine_array()))
    return p


def zip_truncated(tmp: Path) -> Path:
    src = tmp / "src"
    files = dicom_cine(src)
    p = tmp / "cut.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.name)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def zip_empty(tmp: Path) -> Path:
    p = tmp / "empty.zip"
    with zipfile.ZipFile(p, "w"):
        pass
    return p


def random_bytes_zip(tmp: Path) -> Path:
    p = tmp / "noise.zip"
    p.write_bytes(RNG_BYTES)
    return p


def symlink_loop_folder(tmp: Path) -> Path:
    """A folder whose only entry is a link back to itself (a walk that follows links never ends)."""
    folder = tmp / "loop"
    folder.mkdir()
    os.symlink(folder, folder / "again")
    return folder


def symlink_loop_nested(tmp: Path) -> Path:
    folder = tmp / "study"
    (folder / "a" / "b").mkdir(parents=True)
    os.symlink(folder, folder / "a" / "b" / "up")
    os.symlink(folder / "a", folder / "a" / "b" / "side")
    return folder


def symlink_self(tmp: Path) -> Path:
    """A link to itself (ELOOP on open) among DICOM files."""
    folder = tmp / "dcm"
    dicom_cine(folder)
    os.symlink(folder / "self.dcm", folder / "self.dcm")
    return folder


def empty_folder(tmp: Path) -> Path:
    (tmp / "nothing").mkdir()
    return tmp / "nothing"


def text_file(tmp: Path) -> Path:
    p = tmp / "notes.txt"
    p.write_text("not an image\n")
    return p


def missing_path(tmp: Path) -> Path:
    return tmp / "does-not-exist.nii.gz"


def two_niftis(tmp: Path) -> Path:
    folder = tmp / "two"
    write_nifti(folder / "a.nii.gz", cine_array())
    write_nifti(folder / "b.nii.gz", cine_array())
    return folder


CASES: list[Case] = [
    Case("nifti-zero-byte", nifti_zero_byte, ("empty.nii.gz",), nifti=True),
    Case("nifti-truncated-gz", nifti_truncated_gz, ("cut.nii.gz",), nifti=True),
    Case("nifti-truncated-raw", nifti_truncated_raw, ("cut.nii",), nifti=True),
    Case("nifti-header-cut", nifti_header_cut, ("stub.nii",), nifti=True),
    Case("random-bytes.nii.gz", random_bytes_nii_gz, ("noise.nii.gz",), nifti=True),
    Case("random-gzip.nii.gz", random_gzip_nii_gz, ("noise2.nii.gz",), nifti=True),
    Case("nifti-2d", nifti_2d, ("flat.nii.gz",), nifti=True),
    Case("nifti-one-slice", nifti_one_slice, ("oneslice.nii.gz", "slice"), nifti=True),
    Case("nifti-nan", nifti_nan, ("nan.nii.gz", "nan"), nifti=True),
    Case("nifti-inf", nifti_inf, ("inf.nii.gz", "inf"), nifti=True),
    Case("nifti-singular-affine", nifti_singular_affine, ("singular.nii.gz",), nifti=True),
    Case("nifti-tiny-inplane", nifti_tiny_inplane, ("tiny.nii.gz",), nifti=True),
    Case("nifti-1e5-phases", nifti_absurd_phases, ("huge.nii.gz",), nifti=True),
    Case("nifti-claims-2.6GB-gz", nifti_large_claim_small_file, ("claims.nii.gz",), nifti=True),
    Case("nifti-claims-2.6GB-raw", nifti_large_claim_raw, ("claims.nii",), nifti=True),
    Case("nifti-complex", nifti_complex, ("complex.nii.gz",), nifti=True),
    Case("dicom-zero-byte", dicom_zero_byte, ("empty.dcm",)),
    Case("dicom-zero-byte-in-folder", dicom_zero_byte_in_folder, ("dcm", "incomplete")),
    Case("dicom-truncated-in-folder", dicom_truncated, ("im_",)),
    Case("dicom-truncated-pixels", dicom_truncated_single, ("dcm",)),
    Case("random-bytes.dcm", random_bytes_dcm, ("noise.dcm",)),
    Case("random-bytes-dcm-folder", random_bytes_dcm_folder, ("dcm",)),
    Case("dicom-no-pixel-data", dicom_no_pixels, ("dcm",)),
    Case("dicom-no-position", dicom_no_position, ("imagepositionpatient",)),
    Case("dicom-no-orientation", dicom_no_orientation, ("imageorientationpatient",)),
    Case("dicom-mixed-orientations", dicom_mixed_orientations, ("orientation",)),
    Case("dicom-mixed-matrix", dicom_mixed_matrix, ("size",)),
    Case("dicom-mixed-series-2d", dicom_mixed_series_single_slices, ("dcm",)),
    Case("dicom-one-slice", dicom_one_slice, ("dcm", "slice")),
    Case("dicom-uneven-slices", dicom_uneven_slices, ("dcm", "spacing")),
    Case("dicom-localizer-only", dicom_localizer_only, ("dcm",)),
    Case("dicom-absurd-matrix", dicom_absurd_matrix, ("im_",)),
    Case("dicom-zero-spacing", dicom_bad_spacing, ("im_", "pixelspacing")),
    Case("dicom-incomplete", dicom_incomplete, ("dcm", "incomplete")),
    Case("dicom-corrupt-vr-sopclass", dicom_corrupt_vr_sop_class, ("im_0002.dcm", "value representation")),
    Case("dicom-corrupt-vr-bits", dicom_corrupt_vr_bits, ("im_0002.dcm", "value representation")),
    Case("zip-dotdot", zip_traversal, ("evil.zip", "..")),
    Case("zip-absolute", zip_absolute, ("abs.zip",)),
    Case("zip-dotdot-nifti", zip_traversal_nifti, ("evil_nifti.zip",)),
    Case("zip-truncated", zip_truncated, ("cut.zip",)),
    Case("zip-empty", zip_empty, ("empty.zip",)),
    Case("random-bytes.zip", random_bytes_zip, ("noise.zip",)),
    Case("symlink-loop", symlink_loop_folder, ("loop",)),
    Case("symlink-loop-nested", symlink_loop_nested, ("study",)),
    Case("symlink-self", symlink_self, ("self.dcm",)),
    Case("empty-folder", empty_folder, ("nothing",)),
    Case("text-file", text_file, ("notes.txt",)),
    Case("missing-path", missing_path, ("does-not-exist",)),
    Case("two-niftis", two_niftis, ("two",)),
]


# --- input side: geometry, caps, special files, one-line messages (tests/reliability/test_inputs_*) ---
def _nifti_with_affine(tmp: Path, name: str, affine: np.ndarray, data: np.ndarray | None = None) -> Path:
    """A .nii.gz whose sform (code 1, scanner) is `affine` exactly; the qform is nibabel's orthogonal
    approximation of it, as converters write."""
    img = nib.Nifti1Image(cine_array() if data is None else data, affine)
    img.header.set_xyzt_units("mm", "msec")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
    return p


def skewed_affine(degrees: float, axis: int = 1, spacing=(1.5, 1.5, 8.0)) -> np.ndarray:
    """diag(spacing) with column `axis` (1: rows, 2: slices) turned `degrees` towards column 0, its length kept."""
    a = np.diag([*spacing, 1.0])
    th = np.radians(degrees)
    a[:3, axis] = spacing[axis] * (np.cos(th) * np.eye(3)[axis] + np.sin(th) * np.eye(3)[0])
    return a


def nifti_skewed_inplane(tmp: Path) -> Path:
    """In-plane axes 84 degrees apart (6 degrees from orthogonal): LVEDV 19 mL instead of 111 mL, exit 0."""
    return _nifti_with_affine(tmp, "skew_inplane.nii.gz", skewed_affine(6.0, axis=1))


def nifti_skewed_slices(tmp: Path) -> Path:
    return _nifti_with_affine(tmp, "skew_slices.nii.gz", skewed_affine(6.0, axis=2))


def nifti_nearly_singular(tmp: Path) -> Path:
    """Row axis 1 degree from the column axis: a nearly singular affine (LVEDV 0.2 mL, exit 0)."""
    return _nifti_with_affine(tmp, "near_singular.nii.gz", skewed_affine(89.0, axis=1))


def nifti_tiny_voxels(tmp: Path) -> Path:
    return _nifti_with_affine(tmp, "tiny_voxels.nii.gz", np.diag([1.5, 1.5, 0.001, 1.0]))


def nifti_pixdim_1e9(tmp: Path) -> Path:
    """A normal-size image with 1e9 mm voxels (the memory estimate spent 45 s on it)."""
    return _nifti_with_affine(tmp, "pixdim_1e9.nii.gz", np.diag([1e9, 1e9, 1e9, 1.0]))


def nifti_slab_4m(tmp: Path) -> Path:
    """400 slices 10 mm apart, a 4 m slab (ran 167 s and reported an LVEDV of 6,018 mL)."""
    data = np.zeros((16, 16, 400, 2), np.uint8)
    data[4:12, 4:12] = 100
    return _nifti_with_affine(tmp, "slab_4m.nii.gz", np.diag([1.5, 1.5, 10.0, 1.0]), data)


def nifti_float64_huge(tmp: Path) -> Path:
    d = cine_array().astype(np.float64)
    d[3, 4, 1, 0] = 1e300
    return write_nifti(tmp / "f64_1e300.nii.gz", d)


def nifti_scl_slope_huge(tmp: Path) -> Path:
    img = nib.Nifti1Image(cine_array().astype(np.int16), np.diag([1.5, 1.5, 8.0, 1.0]))
    img.header.set_slope_inter(1e38, 0.0)
    p = tmp / "slope_1e38.nii"
    p.write_bytes(img.to_bytes())
    return p


def nifti_pixdim_zero(tmp: Path) -> Path:
    """pixdim[1..3] = 0 and no sform: nibabel printed its fix twice and the study loaded with 1 mm voxels."""
    img = nib.Nifti1Image(cine_array(), np.diag([1.5, 1.5, 8.0, 1.0]))
    img.header["pixdim"][1:4] = 0
    img.set_sform(None, code=0)
    p = tmp / "pixdim0.nii"
    p.write_bytes(img.to_bytes())
    return p


def vox_offset_bomb_bytes(offset: int = 200 * 1024**2) -> bytes:
    """A .nii.gz whose header declares an extension block up to `offset` and whose gzip stream really holds
    that many bytes (zeros, 1000:1): nibabel reads the whole block into memory while loading the header."""
    import zlib

    img = nib.Nifti1Image(np.zeros((16, 16, 2, 2), np.float32), np.diag([1.5, 1.5, 8.0, 1.0]))
    hdr = img.header.copy()
    hdr["vox_offset"] = offset
    head = bytearray(hdr.binaryblock) + b"\x01\x00\x00\x00"
    head += np.array([offset - 352, 4], "<i4").tobytes()  # one extension: esize, ecode
    co = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = [co.compress(bytes(head))]
    chunk = bytes(1 << 20)
    for _ in range(offset // len(chunk) + 1):
        out.append(co.compress(chunk))
    out.append(co.flush())
    return b"".join(out)


_CACHE: dict[str, bytes] = {}


def nifti_vox_offset_bomb(tmp: Path) -> Path:
    if "vox" not in _CACHE:
        _CACHE["vox"] = vox_offset_bomb_bytes()
    p = tmp / "ext_bomb.nii.gz"
    p.write_bytes(_CACHE["vox"])
    return p


def newline_name(tmp: Path) -> Path:
    """A file name with a newline: the message must stay on one line."""
    p = tmp / "bad\nname.nii.gz"
    p.write_bytes(RNG_BYTES)
    return p


def fifo_only_folder(tmp: Path) -> Path:
    """A FIFO named like a DICOM file: `open` blocked forever."""
    folder = tmp / "pipes"
    folder.mkdir()
    os.mkfifo(folder / "IM_0001.dcm")
    return folder


def fifo_path(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.dcm")
    return tmp / "pipe.dcm"


def fifo_in_acdc_folder(tmp: Path) -> Path:
    """An ACDC patient folder whose frame file is a FIFO (the layout reader opens files by name)."""
    folder = tmp / "patient001"
    folder.mkdir()
    os.mkfifo(folder / "patient001_frame01.nii.gz")
    return folder


def device_links_folder(tmp: Path) -> Path:
    """.dcm links to /dev/zero (spun at 100% CPU) and /dev/urandom (grew 200 MB/s)."""
    folder = tmp / "links"
    folder.mkdir()
    os.symlink("/dev/zero", folder / "IM_0001.dcm")
    os.symlink("/dev/urandom", folder / "IM_0002.dcm")
    return folder


def dev_zero_path(tmp: Path) -> Path:
    os.symlink("/dev/zero", tmp / "zero.dcm")
    return tmp / "zero.dcm"


def nested_folders(tmp: Path, depth: int = 40, name: str = "deep") -> Path:
    """`depth` folders, one inside the other, a file at the bottom (deeper than the default cap of 32)."""
    top = tmp / name
    top.mkdir(parents=True)
    p = top
    for _ in range(depth):  # one level at a time (Path.mkdir(parents=True) recurses once per level)
        p = p / "d"
        p.mkdir()
    (p / "IM_0001.dcm").write_bytes(RNG_BYTES)
    return top


def dicom_matrix_beyond_pixels(tmp: Path) -> Path:
    """Rows x Columns 4096 x 4096 (the largest accepted) over 20 x 24 pixels of data."""
    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=2))
    for ds in datasets:
        ds.Rows = ds.Columns = 4096
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_rescale_slope_huge(tmp: Path) -> Path:
    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=2))
    for ds in datasets:
        ds.RescaleSlope = "1e38"
        ds.RescaleIntercept = "0"
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_corrupt_jpeg2000(tmp: Path) -> Path:
    """JPEG 2000 frames that do not decode: pydicom logged a 20-line traceback before the error."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=2))
    for i, ds in enumerate(datasets):
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + RNG_BYTES[i * 100: i * 100 + 200]])
        ds["PixelData"].VR = "OB"
    dfac.write(tmp / "dcm", datasets)
    return tmp / "dcm"


def dicom_corrupt_jpeg_lossless(tmp: Path) -> Path:
    """JPEG Lossless (process 14, SV1) frames with a damaged body: GDCM printed "Bogus marker length" to the
    process's stderr before the error line."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    datasets = dfac.make_cine(dfac.CineSpec(n_slices=2, n_phases=2))
    paths = dfac.write(tmp / "plain", datasets)
    (tmp / "dcm").mkdir()
    for i, src in enumerate(paths):
        dfac.gdcm_transcode(src, tmp / "encoded.dcm")
        frame = next(generate_frames(pydicom.dcmread(tmp / "encoded.dcm").PixelData, number_of_frames=1))
        ds = pydicom.dcmread(src)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.70"
        ds.PixelData = encapsulate([frame[:40] + RNG_BYTES[i * 100: i * 100 + len(frame) - 60] + frame[-20:]])
        ds["PixelData"].VR = "OB"
        ds.save_as(tmp / "dcm" / src.name)
    return tmp / "dcm"


def zip_dicom_member_bomb_bytes(size: int = 600 * 1024**2, name: str = "IM_0001.dcm") -> bytes:
    """A zip with one 'DICOM' member of `size` bytes (preamble, 'DICM', zeros) deflated ~1000:1."""
    buf = io.BytesIO()
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(info, "w", force_zip64=size > 2**31) as f:
            f.write(bytes(128) + b"DICM")
            chunk = bytes(1 << 20)
            left = size - 132
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return buf.getvalue()


def zip_dicom_bomb(tmp: Path) -> Path:
    """A 0.6 MB zip whose DICOM member decompresses to 600 MB (more than a DICOM image file may be)."""
    if "zip" not in _CACHE:
        _CACHE["zip"] = zip_dicom_member_bomb_bytes()
    p = tmp / "bomb.zip"
    p.write_bytes(_CACHE["zip"])
    return p


def zip_nifti_claims_gigabytes(tmp: Path) -> Path:
    """A zip whose .nii.gz member claims 3 GB uncompressed (its directory entries edited)."""
    p = tmp / "nifti_bomb.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("study/image.nii.gz", nifti_bytes(cine_array()))
    data = bytearray(p.read_bytes())
    claim = (3 * 10**9).to_bytes(4, "little")
    local = data.index(b"PK\x03\x04")
    data[local + 22: local + 26] = claim
    central = data.index(b"PK\x01\x02")
    data[central + 24: central + 28] = claim
    p.write_bytes(bytes(data))
    return p


CASES.extend([
    Case("nifti-skew-inplane-6deg", nifti_skewed_inplane, ("skew_inplane.nii.gz", "orthogonal"), nifti=True),
    Case("nifti-skew-slices-6deg", nifti_skewed_slices, ("skew_slices.nii.gz", "orthogonal"), nifti=True),
    Case("nifti-nearly-singular", nifti_nearly_singular, ("near_singular.nii.gz", "orthogonal"), nifti=True),
    Case("nifti-tiny-voxels", nifti_tiny_voxels, ("tiny_voxels.nii.gz", "voxel size"), nifti=True),
    Case("nifti-pixdim-1e9", nifti_pixdim_1e9, ("pixdim_1e9.nii.gz", "voxel size"), nifti=True),
    Case("nifti-slab-4m", nifti_slab_4m, ("slab_4m.nii.gz", "field of view"), nifti=True),
    Case("nifti-float64-1e300", nifti_float64_huge, ("f64_1e300.nii.gz", "float32"), nifti=True),
    Case("nifti-scl-slope-1e38", nifti_scl_slope_huge, ("slope_1e38.nii", "float32"), nifti=True),
    Case("nifti-pixdim-zero", nifti_pixdim_zero, ("pixdim0.nii", "pixdim"), nifti=True),
    Case("nifti-vox-offset-bomb", nifti_vox_offset_bomb, ("ext_bomb.nii.gz", "vox_offset"), nifti=True),
    Case("newline-in-name", newline_name, ("name.nii.gz",), nifti=True),
    Case("fifo-in-folder", fifo_only_folder, ("pipes", "not a regular file")),
    Case("fifo-path", fifo_path, ("pipe.dcm", "fifo")),
    Case("fifo-in-acdc-folder", fifo_in_acdc_folder, ("patient001_frame01.nii.gz", "fifo")),
    Case("links-to-devices", device_links_folder, ("links", "not regular files")),
    Case("link-to-dev-zero", dev_zero_path, ("zero.dcm", "character device")),
    Case("nested-40-folders", nested_folders, ("deep", "nested")),
    Case("dicom-matrix-beyond-pixels", dicom_matrix_beyond_pixels, ("im_", "pixel data")),
    Case("dicom-rescale-slope-1e38", dicom_rescale_slope_huge, ("im_", "rescaleslope")),
    Case("dicom-corrupt-jpeg2000", dicom_corrupt_jpeg2000, ("im_", "decode")),
    Case("dicom-corrupt-jpeg-lossless", dicom_corrupt_jpeg_lossless, ("im_", "decode")),
    Case("zip-dicom-600MB-member", zip_dicom_bomb, ("bomb.zip", "too large")),
    Case("zip-nifti-claims-3GB", zip_nifti_claims_gigabytes, ("nifti_bomb.zip", "too large")),
])
