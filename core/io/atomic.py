"""Atomic writes: write to a temporary file in the same folder, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target`, on error it is removed.

    The temporary name keeps the target's suffixes (e.g. `.nii.gz`) so writers that dispatch on the
    extension behave the same.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the result the permissions a normal open() would (0666 & ~umask).
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: str | Path, data: bytes | Sequence[bytes | memoryview]) -> None:
    """`data` (or its parts, one after the other) into `target` atomically, as `atomic_path` does, with the
    fewest system calls (the file is created with mode 0666 less the umask, as `open` would)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    for _ in range(100):
        tmp = target.parent / f".{target.stem}.{os.urandom(4).hex()}.tmp{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"no free temporary name beside {target}")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_parts(f, data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(target: str | Path, data: bytes | Sequence[bytes | memoryview]) -> None:
    """`data` (or its parts) into `target`, not atomically: for files inside a private staging folder that
    is published whole (`core.outputs.write_outputs`), where a temporary name and a rename per file only
    cost time."""
    with open(target, "wb") as f:
        _write_parts(f, data)


def _write_parts(f, data: bytes | Sequence[bytes | memoryview]) -> None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        f.write(data)
    else:
        f.writelines(data)
