"""`load_study(path)`: the one front door for user studies (file, folder or zip), whatever the format.

Dispatch, in order:
- a NIfTI file -> that image (3D or 4D), with labels paired by name (ACDC `_gt`, M&Ms `_gt`, UK Biobank
  `label_`/`seg_`);
- a zip -> DICOM read from memory; a zip of NIfTI files is unpacked (safely) to a temporary folder;
- a folder -> ACDC patient folder (Info.cfg / `_frameXX`), M&Ms or UK Biobank subject folder, a folder
  holding one NIfTI image, else DICOM files found recursively;
- a single DICOM file -> its folder is read and the file's series loaded (the whole stack for UK Biobank
  one-series-per-slice); any other file is an error.
Every result is validated (`Study.validate`), so later stages never see NaNs, 2D data or singular
geometry; every user error is a `StudyError` whose message names the file and the problem.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from gemini_cmr.core.errors import StudyError
from gemini_cmr.core.io import layouts
from gemini_cmr.core.io.dicom import DicomFrame, DicomSource, load_dicom, quiet_pydicom, read_frame
from gemini_cmr.core.study import Study

#: Zip members larger than this (uncompressed) are refused: no scanner image is that big.
MAX_MEMBER_BYTES = 2 * 1024**3
#: Total uncompressed size of a zip we agree to read.
MAX_ZIP_BYTES = 16 * 1024**3


def load_study(path: str | os.PathLike, series_uid: str | None = None, allow_incomplete: bool = False) -> Study:
    """Load a cine study from a file, folder or zip as a validated `Study` (T, Z, Y, X).

    `series_uid` picks a DICOM series (SeriesInstanceUID) when a folder holds several; by default the
    short-axis cine with most slices x phases is chosen. `allow_incomplete=True` loads the complete
    slices of an incomplete DICOM series (with a warning) instead of raising.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise StudyError("no such file or folder", str(path))
    if path.is_file():
        try:
            open(path, "rb").close()
        except OSError as exc:
            raise StudyError(f"cannot read ({exc.strerror or exc})", str(path)) from None
    if path.is_dir():
        study = _load_folder(path, series_uid, allow_incomplete)
    elif layouts.is_nifti(path):
        study = _load_nifti_file(path)
    elif zipfile.is_zipfile(path):
        study = _load_zip(path, series_uid, allow_incomplete)
    elif path.suffix.lower() == ".zip":
        raise StudyError("unreadable zip file (truncated or not a zip)", str(path))
    else:
        frame = _require_dicom_file(path)
        sources, _ = _folder_sources(path.parent)
        study = load_dicom(sources, str(path.parent), series_uid or frame.series_uid or None, allow_incomplete)
    return study.validate()


def _require_dicom_file(path: Path) -> DicomFrame:
    """A single file that is not NIfTI or zip must be DICOM; its folder is then read for its series."""
    with quiet_pydicom():
        frame = read_frame(str(path), _file_opener(path))
    if frame is None:
        raise StudyError("not a DICOM, NIfTI or zip file", str(path))
    return frame


# --- files and folders --------------------------------------------------------------------------------------
def _load_nifti_file(path: Path) -> Study:
    if layouts.is_acdc_folder(path.parent):
        return layouts.load_acdc_file(path)
    return layouts.load_paired_nifti(path)


def _load_folder(folder: Path, series_uid: str | None, allow_incomplete: bool) -> Study:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise StudyError(f"cannot list folder ({exc.strerror})", str(folder)) from None
    if layouts.is_acdc_folder(folder):
        return layouts.load_acdc(folder)
    found = layouts.find_layout_image(folder)
    if found is not None:
        image_path, fmt = found
        return layouts.load_paired_nifti(image_path, fmt=fmt)
    images = [p for p in entries if p.is_file() and layouts.is_nifti(p) and not layouts.is_label_file(p)]
    if len(images) == 1:
        return layouts.load_paired_nifti(images[0])
    if len(images) > 1:
        names = ", ".join(sorted(p.name for p in images)[:4])
        raise StudyError(f"{len(images)} NIfTI images in the folder ({names}...): pass one file", str(folder))
    # A link back to this folder or an ancestor (a symlink loop) is not a subfolder to descend into.
    here = folder.resolve()
    subfolders = [p for p in entries if p.is_dir() and not (p.is_symlink() and p.resolve() in (here, *here.parents))]
    if not any(p.is_file() for p in entries) and len(subfolders) == 1:
        return _load_folder(subfolders[0], series_uid, allow_incomplete)
    sources, n_nifti = _folder_sources(folder)
    hint = f"; {n_nifti} NIfTI file(s) in subfolders: pass one subject folder or file" if n_nifti else ""
    if not sources:
        raise StudyError(f"no cine: the folder holds no DICOM files{hint or ' and no NIfTI files'}", str(folder))
    return load_dicom(sources, str(folder), series_uid, allow_incomplete, hint=hint)


def _folder_sources(folder: Path) -> tuple[list[DicomSource], int]:
    """Every regular file under `folder` (recursive, sorted) but hidden and NIfTI files; and the NIfTI count."""
    sources: list[DicomSource] = []
    n_nifti = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            p = Path(root) / name
            if layouts.is_nifti(p):
                n_nifti += 1
            elif not name.startswith("."):
                sources.append((str(p), _file_opener(p)))
    return sources, n_nifti


def _file_opener(p: Path):
    def open_file():
        try:
            return open(p, "rb")
        except OSError as exc:
            raise StudyError(f"cannot read ({exc.strerror})", str(p)) from None
    return open_file


# --- zip archives -------------------------------------------------------------------------------------------
def safe_members(archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
    """The file members of a zip, refusing path traversal names and absurd sizes."""
    members = []
    total = 0
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise StudyError(f"unsafe member name {name!r} in zip (absolute or '..' path)", where)
        if info.is_dir():
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            raise StudyError(f"zip member {name!r} claims an implausible size of {info.file_size} bytes", where)
        total += info.file_size
        members.append(info)
    if total > MAX_ZIP_BYTES:
        raise StudyError(f"zip content claims an implausible total of {total} bytes", where)
    return members


def _load_zip(path: Path, series_uid: str | None, allow_incomplete: bool) -> Study:
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StudyError(f"unreadable zip file ({exc})", where) from None
    with archive:
        members = safe_members(archive, where)
        if not members:
            raise StudyError("no cine: the zip is empty", where)
        if any(layouts.is_nifti(Path(m.filename)) for m in members):
            return _load_extracted(archive, members, path)
        sources = [
            (f"{where}:{m.filename}", _member_opener(archive, m, where))
            for m in sorted(members, key=lambda m: m.filename)
            if not PurePosixPath(m.filename).name.startswith(".")
        ]
        return load_dicom(sources, where, series_uid, allow_incomplete)


def _member_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    def open_file():
        try:
            return io.BytesIO(archive.read(info))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise StudyError(f"corrupt zip member {info.filename!r} ({exc})", where) from None
    return open_file


def _load_extracted(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], path: Path) -> Study:
    """NIfTI inside a zip: unpack to a temporary folder, load that, and name the zip in messages."""
    with tempfile.TemporaryDirectory(prefix="gemini-cmr-zip-") as tmp:
        root = Path(tmp)
        for m in members:
            target = root.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(m) as src, open(target, "wb") as dst:
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise StudyError(f"corrupt zip member {m.filename!r} ({exc})", str(path)) from None
        with _renamed_errors(str(root), str(path)):
            study = load_study(root)
        study.meta.source_path = str(path)
        study.meta.warnings = [w.replace(str(root), str(path)) for w in study.meta.warnings]
        return study


@contextlib.contextmanager
def _renamed_errors(tmp_prefix: str, zip_path: str) -> Iterator[None]:
    try:
        yield
    except StudyError as exc:
        raise StudyError(str(exc).replace(tmp_prefix, zip_path)) from None
