"""The paired-dataset manifest (`DATA/manifest.json`, written by `gemini-cmr synth`): the one reader.

Layout (docs/DEVELOPING.md): `{"format": "gemini-cmr-paired", "version": 1, "generator": {...},
"subjects": [{"id", "split", "lr_image", "lr_labels", "hr_image", "hr_labels", "ed_phase", "es_phase",
...}]}`, file names relative to the dataset folder; `lr_labels` / `hr_*` may be null for unlabelled data.
Used by Gemini-GAN training, `gemini-cmr evaluate`, V-AMA training and the training wizard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gemini_cmr.core.errors import DataError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "gemini-cmr-paired"
SPLITS = ("train", "val", "test")


def is_paired_dataset(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST_NAME).is_file()


def read_manifest(root: str | Path, require: tuple[str, ...] = ("lr_image", "hr_image"),
                  hint: str = "see `gemini-cmr synth`") -> dict[str, Any]:
    """The manifest of the dataset folder `root`, checked: a `DataError` naming the file (and the subject)
    when the folder or manifest is missing or unreadable, of another format, lists no subjects, or a subject
    lacks an id (or has a duplicate one), has a split other than train/val/test, or lacks a `require`d file
    entry (paired data need both images; V-AMA and the evaluation ask for less)."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise DataError("dataset folder not found", root)
    if not path.is_file():
        raise DataError(f"no {MANIFEST_NAME}: not a paired dataset ({hint})", root)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"unreadable manifest ({exc.__class__.__name__}: {exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"manifest format is not {MANIFEST_FORMAT!r}", path)
    subjects = manifest.get("subjects")
    if not isinstance(subjects, list) or not subjects:
        raise DataError("manifest lists no subjects", path)
    seen: set[str] = set()
    for i, s in enumerate(subjects):
        if not isinstance(s, dict) or not s.get("id"):
            raise DataError(f"subject #{i} has no id", path)
        if s["id"] in seen:
            raise DataError(f"subject {s['id']}: duplicate id", path)
        seen.add(s["id"])
        if s.get("split") not in SPLITS:
            raise DataError(f"subject {s['id']}: split {s.get('split')!r} is not one of {', '.join(SPLITS)}", path)
        missing = [k for k in require if not s.get(k)]
        if missing:
            raise DataError(f"subject {s['id']}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                            "required", path)
    return manifest


def select_subjects(manifest: dict[str, Any], split: str | tuple[str, ...] = "all") -> list[dict[str, Any]]:
    """The subjects of one split (a name, a tuple of names, or "all")."""
    splits = SPLITS if split == "all" else ((split,) if isinstance(split, str) else tuple(split))
    return [s for s in manifest["subjects"] if s["split"] in splits]


def subject_file(root: str | Path, entry: dict[str, Any], key: str, why: str = "") -> Path:
    """The existing file of `entry[key]` under `root`; a `DataError` naming the subject otherwise."""
    sid = entry.get("id", "?")
    rel = entry.get(key)
    if not rel:
        raise DataError(f"subject {sid}: no {key}{f' ({why})' if why else ''}", Path(root) / MANIFEST_NAME)
    path = Path(root) / rel
    if not path.is_file():
        raise DataError(f"subject {sid}: {key} file not found: {rel}", root)
    return path


__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "SPLITS", "is_paired_dataset", "read_manifest", "select_subjects",
           "subject_file"]
