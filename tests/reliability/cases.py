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
