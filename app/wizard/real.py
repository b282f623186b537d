"""The "Real studies with labels" kind without Qt: the data sources the wizard offers, the subject table
built from a folder convention (a `pairs:` manifest, `core.train.lr_data`), the check with the held-out
split, and the text of the before / after figures (`RUN/finetune.json`)."""

from __future__ import annotations

import math
from pathlib import Path

# (key, label, what the path is): layouts read by core.train.lr_data, and folder conventions / a table
# that become a pairs manifest
SOURCES = (
    ("acdc", "ACDC layout: patientNNN folders (Info.cfg, frames, _gt labels)", "folder"),
    ("mnms", "M&Ms layout: <code>/<code>_sa.nii.gz + <code>_sa_gt.nii.gz", "folder"),
    ("ukbb", "UK Biobank layout: <subject>/sa.nii.gz + label_sa.nii.gz (or seg_sa)", "folder"),
    ("nifti", "Folder of NIfTI pairs: NAME.nii.gz + NAME_gt / _labels / _seg.nii.gz", "folder"),
    ("dicom", "DICOM series + label NIfTI: one folder per subject, labels inside it or beside it "
              "(FOLDER_gt.nii.gz)", "folder"),
    ("table", "Table of subjects (JSON, pairs manifest): NIfTI or DICOM images, label NIfTI or contour "
              "folders, convention and group per subject", "file"),
)
LAYOUTS = ("acdc", "mnms", "ukbb")
CONVENTIONS = (
    ("auto", "detect per subject (LV = the cavity ringed by myocardium)"),
    ("project", "1 LV cavity, 2 myocardium, 3 RV cavity (also M&Ms, UK Biobank)"),
    ("acdc", "ACDC: 1 RV cavity, 2 myocardium, 3 LV cavity"),
    ("ukdhp", "UK Digital Heart: 1 LV cavity, 2 myocardium, 4 RV cavity"),
)
HOLDOUT_FRACTION = 0.2
SUBJECTS_JSON = "subjects.json"  # the table the wizard writes into the run folder when training starts


def _label_beside(stem_path: Path) -> Path | None:
    for suffix in ("_gt", "_labels", "_seg"):
        for ext in (".nii.gz", ".nii"):
            p = stem_path.with_name(stem_path.name + suffix + ext)
            if p.is_file():
                return p
    return None


def pairs_from_folder(kind: str, folder: str | Path, convention: str = "auto") -> tuple[dict, list[dict]]:
    """(pairs manifest with absolute paths, problem rows) of a folder convention: "nifti" (every NIfTI
    image under `folder` with the label file paired by name) or "dicom" (every subfolder a DICOM series,
    its labels a label NIfTI inside it or `FOLDER_gt/_labels/_seg.nii.gz` beside it). Images without
    labels are problem rows (`core.train.lr_data.check_subject`'s keys)."""
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.io.layouts import is_label_file, is_nifti, label_partner, nifti_stem

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("folder not found", folder)
    entries: list[dict] = []
    problems: list[dict] = []
    seen: set[str] = set()

    def sid_of(name: str) -> str:
        sid, i = name, 2
        while sid in seen:
            sid, i = f"{name}-{i}", i + 1
        seen.add(sid)
        return sid

    if kind == "nifti":
        images = sorted(p for p in folder.rglob("*") if p.is_file() and is_nifti(p) and not is_label_file(p))
        for image in images:
            stem = nifti_stem(image)
            sid = sid_of(image.parent.name if stem == "sa" or stem.startswith("sa_") else stem)
            partner = label_partner(image)
            if partner is None:
                problems.append(problem_row(sid, "no label file (NAME_gt, NAME_labels or NAME_seg beside it)"))
                continue
            entries.append({"id": sid, "image": str(image.resolve()), "labels": str(partner[0].resolve()),
                            "convention": convention})
    elif kind == "dicom":
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            sid = sid_of(sub.name)
            inside = sorted(p for p in sub.iterdir() if p.is_file() and is_nifti(p) and is_label_file(p))
            labels = inside[0] if len(inside) == 1 else _label_beside(sub)
            if len(inside) > 1:
                problems.append(problem_row(sid, f"{len(inside)} label files in the folder: keep one"))
                continue
            if labels is None:
                problems.append(problem_row(sid, "no label NIfTI (NAME_gt / _labels / _seg) inside or beside "
                                                 "the folder"))
                continue
            entries.append({"id": sid, "image": str(sub.resolve()), "labels": str(labels.resolve()),
                            "convention": convention})
    else:
        raise DataError(f"unknown folder convention {kind!r}")
    if not entries and not problems:
        what = "NIfTI images" if kind == "nifti" else "subject folders"
        raise DataError(f"no {what} in the folder", folder)
    return {"subjects": entries}, problems


def problem_row(sid: str, problem: str) -> dict:
    return {"id": sid, "group": "", "split": "", "ok": False, "problem": problem, "geometry": "", "convention": "",
            "structures": "", "missing": [], "annotated": {}, "labelled": "", "labelled_slices": 0, "n_phases": 0}


def list_subjects(kind: str, path: str | Path, convention: str = "auto"):
    """(source kind for core.train.lr_data, root, subjects, manifest doc or None, problem rows) of a source
    chosen in the wizard. Nothing is written."""
    from gemini_cmr.core.train.lr_data import lr_subjects, manifest_subjects

    path = Path(path)
    if kind in LAYOUTS:
        return kind, path, lr_subjects(kind, path), None, []
    if kind == "table":
        return "pairs", path, manifest_subjects(path), None, []
    doc, problems = pairs_from_folder(kind, path, convention)
    root = path / SUBJECTS_JSON  # paths in doc are absolute; the file is written only when training starts
    return "pairs", root, (manifest_subjects(root, doc) if doc["subjects"] else []), doc, problems


def split_problem(n_subjects: int, n_holdout: int) -> str:
    """Why a held-out split of `n_holdout` of `n_subjects` cannot be made ('' when it can)."""
    if n_subjects < 2:
        return (f"{n_subjects} subject{'s' * (n_subjects != 1)}: a held-out split needs at least 2 "
                "(1 to train, 1 held out)")
    if not 1 <= n_holdout <= n_subjects - 1:
        return f"{n_holdout} held-out subject(s) of {n_subjects}: choose 1 to {n_subjects - 1}"
    return ""


def default_holdout(n_subjects: int) -> int:
    return max(1, int(round(HOLDOUT_FRACTION * n_subjects)))


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else format(v, spec)


def comparison_rows(figures: dict) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) rows of `RUN/finetune.json`: Dice per annotated structure (mean of
    the labelled phases, then ED and ES), phenotype errors (median |prediction - manual|) where defined."""
    from gemini_cmr.core.evaluation.real import REAL_PHENOTYPES
    from gemini_cmr.core.study import STRUCTURE_NAMES

    before, after = figures["summary"]["before"], figures["summary"]["after"]
    rows: list[tuple[str, str, str, str]] = []

    def add(name, a, b, spec, sign=""):
        change = b - a if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)) else None
        rows.append((name, _fmt(a, spec), _fmt(b, spec), "" if change is None else format(change, "+" + spec) + sign))

    for key, name in STRUCTURE_NAMES.items():
        d = before.get(f"dice_{key}") or {}
        if not d.get("n") and not (after.get(f"dice_{key}") or {}).get("n"):
            continue
        add(f"{name} Dice", d.get("mean"), after[f"dice_{key}"].get("mean"), ".3f")
        for tag, text in (("ed", "ED"), ("es", "ES")):
            a, b = before.get(f"dice_{tag}_{key}") or {}, after.get(f"dice_{tag}_{key}") or {}
            if a.get("n") or b.get("n"):
                add(f"  {name} Dice at {text}", a.get("mean"), b.get("mean"), ".3f")
    for k, name, unit in REAL_PHENOTYPES:
        a, b = before.get(f"err_{k}") or {}, after.get(f"err_{k}") or {}
        if a.get("n") or b.get("n"):
            add(f"{name} error, median |pred - manual| ({unit})", a.get("median_abs"), b.get("median_abs"), ".1f")
    return rows


__all__ = ["CONVENTIONS", "LAYOUTS", "SOURCES", "SUBJECTS_JSON", "comparison_rows", "default_holdout",
           "list_subjects", "pairs_from_folder", "problem_row", "split_problem"]
