"""`load_study(path)`: the one front door for user studies (file, folder or zip), whatever the format.

Dispatch, in order:
- a NIfTI file -> that image (3D or 4D), with labels paired by name (ACDC `_gt`, M&Ms `_gt`, UK Biobank
  `label_`/`seg_`); an M&Ms-2 `<id>_SA_CINE` stands for its subject (the labelled ED/ES frames found in it);
- a zip -> DICOM read from memory; a zip of NIfTI files is unpacked (safely) to a temporary folder;
- a folder -> ACDC patient folder (Info.cfg / `_frameXX`), M&Ms, M&Ms-2 (`<id>_SA_CINE` / `_SA_ED` / `_SA_ES`)
  or UK Biobank subject folder, a folder holding one NIfTI image, else DICOM files found recursively;
- a single DICOM file -> its folder is read and the file's series loaded (the whole stack for UK Biobank
  one-series-per-slice; for a segmentation, the series it references, with its labels); any other file
  is an error.
Every result is validated (`Study.validate`), so later stages never see NaNs, 2D data or singular
geometry; every user error is a `StudyError` whose message names the file and the problem.

Only regular files are read (a FIFO would block `open` forever, a link to /dev/zero or /dev/urandom
never ends): a path that is not a regular file or folder is refused, and inside folders such entries are
skipped (symlinks are followed to regular files only; linked folders are not descended into). Folders
are walked iteratively, at most `GEMINI_CMR_MAX_DEPTH` levels deep and `GEMINI_CMR_MAX_FILES` files;
zip members and what they unpack to are capped too (`core.io.limits`).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from gemini_cmr.core.errors import GeminiError, StudyError
from gemini_cmr.core.io import layouts, limits
from gemini_cmr.core.io.dicom import DicomFrame, DicomSource, load_dicom, quiet_pydicom, read_frame
from gemini_cmr.core.io.dicom_files import looks_dicom
from gemini_cmr.core.io.names import needs_escaping, printable
from gemini_cmr.core.io.seg import is_segmentation, referenced_series
from gemini_cmr.core.study import Study

#: Zip members larger than this (uncompressed) are refused: no scanner image is that big. The caps in
#: use are `core.io.limits` (GEMINI_CMR_MAX_FILE_BYTES, _MAX_IMAGE_BYTES, _MAX_TOTAL_BYTES); these are
#: ceilings that no setting raises.
MAX_MEMBER_BYTES = 16 * 1024**3
#: Total uncompressed size of a zip we agree to read.
MAX_ZIP_BYTES = 64 * 1024**3
#: Non-image files unpacked beside NIfTI members of a zip (Info.cfg and the like) are at most this big.
MAX_SIDE_FILE_BYTES = 1024**2

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "an unsupported file type"


def load_study(path: str | os.PathLike, series_uid: str | None = None, allow_incomplete: bool = False) -> Study:
    """Load a cine study from a file, folder or zip as a validated `Study` (T, Z, Y, X).

    `series_uid` picks a DICOM series (SeriesInstanceUID) when a folder holds several; by default the
    short-axis cine with most slices x phases is chosen. `allow_incomplete=True` loads the complete
    slices of an incomplete DICOM series (with a warning) instead of raising. Errors are `StudyError`s
    whose message is one printable line (control characters in file names escaped).
    """
    try:
        return _load_study(path, series_uid, allow_incomplete)
    except GeminiError as exc:
        if not needs_escaping(str(exc)):
            raise
        text, where = str(exc), exc.path
        if where and text.startswith(f"{where}: "):
            escaped = type(exc)(printable(text[len(where) + 2:]), printable(where))
        else:
            escaped = type(exc)(printable(text))
        raise escaped from None


def _load_study(path: str | os.PathLike, series_uid: str | None, allow_incomplete: bool) -> Study:
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if not path.exists():
            raise StudyError("no such file or folder", str(path)) from None
        raise StudyError(f"cannot read ({exc.strerror or exc})", str(path)) from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise StudyError(f"{_kind(mode)}, not a regular file or folder: nothing to read", str(path))
    if stat.S_ISREG(mode):
        try:
            open(path, "rb").close()
        except OSError as exc:
            raise StudyError(f"cannot read ({exc.strerror or exc})", str(path)) from None
    if stat.S_ISDIR(mode):
        study = _load_folder(path, series_uid, allow_incomplete)
    elif layouts.is_nifti(path):
        study = _load_nifti_file(path)
    elif zipfile.is_zipfile(path):
        study = _load_zip(path, series_uid, allow_incomplete)
    elif path.suffix.lower() == ".zip":
        raise StudyError("unreadable zip file (truncated or not a zip)", str(path))
    else:
        frame = _require_dicom_file(path)
        sources, _, _ = _folder_sources(path.parent)
        # A segmentation stands for the series it references (loaded from the same folder, with its labels).
        uid = (referenced_series(frame.dataset)[:1] or [None])[0] if is_segmentation(frame.dataset) \
            else frame.series_uid
        study = load_dicom(sources, str(path.parent), series_uid or uid or None, allow_incomplete)
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
    if layouts.is_mnms2_image(path) and layouts.nifti_stem(path).endswith("_SA_CINE"):
        return layouts.load_mnms2(path)  # the subject's cine, with the labelled ED/ES frames
    return layouts.load_paired_nifti(path)


def _load_folder(folder: Path, series_uid: str | None, allow_incomplete: bool) -> Study:
    """A folder whose only entry is one subfolder stands for that subfolder (followed iteratively, at
    most `GEMINI_CMR_MAX_DEPTH` levels)."""
    top = folder
    for _ in range(int(limits.cap("max_depth")) + 1):
        try:
            entries = list(folder.iterdir())
        except OSError as exc:
            raise StudyError(f"cannot list folder ({exc.strerror})", str(folder)) from None
        if layouts.is_acdc_folder(folder) or layouts.find_layout_image(folder) is not None:
            break
        if any(_is_nifti_image(p) for p in entries):
            break
        subfolders = _subfolders(folder, entries)
        if any(p.is_file() for p in entries) or len(subfolders) != 1:
            break
        folder = subfolders[0]
    else:
        raise StudyError(f"folders nested more than {int(limits.cap('max_depth'))} levels deep "
                         f"({limits.how_to_raise('max_depth')})", str(top))
    return _load_one_folder(folder, entries, series_uid, allow_incomplete)


def _is_nifti_image(p: Path) -> bool:
    return p.is_file() and layouts.is_nifti(p) and not layouts.is_label_file(p)


def _subfolders(folder: Path, entries: list[Path]) -> list[Path]:
    """Subfolders to descend into: a link back to this folder or an ancestor (a loop) is not one."""
    here = folder.resolve()
    return [p for p in entries if p.is_dir() and not (p.is_symlink() and p.resolve() in (here, *here.parents))]


def _load_one_folder(folder: Path, entries: list[Path], series_uid: str | None, allow_incomplete: bool) -> Study:
    if layouts.is_acdc_folder(folder):
        return layouts.load_acdc(folder)
    found = layouts.find_layout_image(folder)
    if found is not None:
        image_path, fmt = found
        if fmt == "mnms2":
            return layouts.load_mnms2(image_path)
        return layouts.load_paired_nifti(image_path, fmt=fmt)
    images = [p for p in entries if _is_nifti_image(p)]
    if len(images) == 1:
        return layouts.load_paired_nifti(images[0])
    if len(images) > 1:
        names = ", ".join(sorted(p.name for p in images)[:4])
        raise StudyError(f"{len(images)} NIfTI images in the folder ({names}...): pass one file", str(folder))
    sources, n_nifti, n_special = _folder_sources(folder)
    hint = f"; {n_nifti} NIfTI file(s) in subfolders: pass one subject folder or file" if n_nifti else ""
    if n_special:
        hint += f"; skipped {_not_regular(n_special)} (FIFOs, devices, sockets)"
    if not sources:
        raise StudyError(f"no cine: the folder holds no DICOM files{hint or ' and no NIfTI files'}", str(folder))
    study = load_dicom(sources, str(folder), series_uid, allow_incomplete, hint=hint)
    if n_special:
        study.meta.warnings.append(f"skipped {_not_regular(n_special)} (FIFOs, devices, sockets, or links to them)")
    return study


def _not_regular(n: int) -> str:
    return "1 entry that is not a regular file" if n == 1 else f"{n} entries that are not regular files"


def _folder_sources(folder: Path) -> tuple[list[DicomSource], int, int]:
    """Every regular file under `folder` (sorted, depth first, as `os.walk`) but hidden and NIfTI files;
    the NIfTI count; and the count of entries skipped because they are not regular files.

    Walked with an explicit stack (1,000 nested folders overflowed `os.walk`'s recursion), at most
    `GEMINI_CMR_MAX_DEPTH` levels and `GEMINI_CMR_MAX_FILES` files; linked folders are not descended
    into; a link is followed only to a regular file (a broken or looping link is kept, so that opening
    it names the file in the error).
    """
    sources: list[DicomSource] = []
    n_nifti = n_special = 0
    max_depth, max_files = int(limits.cap("max_depth")), int(limits.cap("max_files"))
    stack: list[tuple[str, int]] = [(str(folder), 0)]
    while stack:
        root, depth = stack.pop()
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise StudyError(f"cannot list folder ({exc.strerror})", root) from None
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir()  # follows links: a linked folder is listed but not walked (as os.walk)
            except OSError:
                is_dir = False
            if is_dir:
                if not e.is_symlink() and not e.name.startswith("."):
                    subdirs.append(e.path)
                continue
            p = Path(e.path)
            if layouts.is_nifti(p):
                n_nifti += 1
                continue
            if e.name.startswith("."):
                continue
            try:
                mode = os.stat(e.path).st_mode
            except OSError:
                mode = None  # broken or looping link: opening it reports the problem by name
            if mode is not None and not stat.S_ISREG(mode):
                n_special += 1
                continue
            sources.append((e.path, _file_opener(p)))
            if len(sources) > max_files:
                raise StudyError(f"more than {max_files:,} files under the folder "
                                 f"({limits.how_to_raise('max_files')})", str(folder))
        if subdirs and depth + 1 > max_depth:
            raise StudyError(f"folders nested more than {max_depth} levels deep ({limits.how_to_raise('max_depth')})",
                             str(folder))
        stack.extend((d, depth + 1) for d in reversed(subdirs))
    return sources, n_nifti, n_special


def _open_nonblocking(path, flags):
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _file_opener(p: Path):
    def open_file():
        try:
            # O_NONBLOCK: a FIFO swapped in after the walk must not block `open` (no effect on files)
            fh = open(p, "rb", opener=_open_nonblocking)
        except OSError as exc:
            raise StudyError(f"cannot read ({exc.strerror})", str(p)) from None
        try:
            mode = os.fstat(fh.fileno()).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            fh.close()
            raise StudyError(f"{_kind(mode)}, not a regular file", str(p))
        return fh
    return open_file


# --- zip archives -------------------------------------------------------------------------------------------
def safe_members(archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
    """The file members of a zip, refusing path traversal names and absurd sizes."""
    members = []
    total = 0
    infos = archive.infolist()
    limits.check_count(len(infos), "max_files", "too many members in the zip", where)
    for info in infos:
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
    """Opens a member in memory. A member larger than a DICOM file may be (`GEMINI_CMR_MAX_FILE_BYTES`)
    is never decompressed whole: its first bytes tell whether it is DICOM (refused) or not (skipped)."""
    def open_file():
        try:
            if info.file_size > limits.cap("max_file_bytes"):
                with archive.open(info) as member:
                    head = member.read(132)
                if looks_dicom(info.filename, head):
                    limits.check_count(info.file_size, "max_file_bytes",
                                       f"zip member {info.filename!r} is too large for a DICOM image", where)
                return io.BytesIO(head)  # not DICOM: `read_frame` skips it
            return io.BytesIO(archive.read(info))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            raise StudyError(f"corrupt zip member {info.filename!r} ({exc})", where) from None
    return open_file


def _load_extracted(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], path: Path) -> Study:
    """NIfTI inside a zip: unpack to a temporary folder, load that, and name the zip in messages."""
    where = str(path)
    written = 0
    with tempfile.TemporaryDirectory(prefix="gemini-cmr-zip-") as tmp:
        root = Path(tmp)
        for m in members:
            if layouts.is_nifti(Path(m.filename)):
                limits.check_count(m.file_size, "max_image_bytes",
                                   f"zip member {m.filename!r} is too large for a NIfTI image", where)
            elif m.file_size > MAX_SIDE_FILE_BYTES:
                continue  # not a NIfTI file nor a small side file (Info.cfg): not needed, not unpacked
            target = root.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(m) as src, open(target, "wb") as dst:
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        written += len(chunk)  # zipfile stops at the member's stated size
                        limits.check_count(written, "max_total_bytes", "the zip unpacks to too much data", where)
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise StudyError(f"corrupt zip member {m.filename!r} ({exc})", where) from None
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
