"""The two domains of V-AMA training: reading their LR studies and checking that they fit together.

A domain is what `super-resolve` reads, one study or many:
- a folder of studies: each subfolder (a DICOM series, an ACDC patient folder, a subject folder with
  `lr_image.nii.gz` [+ `lr_labels.nii.gz`]), each zip and each NIfTI file (with optional
  `<name>_labels`/`_gt`/`_seg` siblings) is one study; a folder that is itself one DICOM series or one
  subject is one study;
- a paired dataset folder (`manifest.json`; `lr_image` and the optional `lr_labels` of one split);
- a single file or zip `core.io.load_study` reads;
- a cohort layout: `acdc:PATH` (read here), `mnms:PATH`, `ukbb:PATH`, `pairs:MANIFEST.json` (read by the
  `cohort` function the caller passes: `core.train.vama.cohort_studies`). With a split of `train` or
  `val` a cohort gives that split's subjects; any other split gives them all.

Every study is used in its own slice frame (`slice_frame`): the affine becomes the voxel spacing alone, so
stacks of any orientation (oblique DICOM short axes, ACDC NIfTI without patient orientation, flipped or
reordered axes) are accepted without rotation. V-AMA maps the appearance of 2D slices; the landmark
alignment between two hearts is a rigid (or mirrored) transform found in these frames.

`check_domains` enforces the minimum number of 2D slices (slices x phases) per domain and that the two
domains are different; `check_vama_data` runs the same checks as rows for the training wizard.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import DataError, GeminiError
from gemini_cmr.core.io.loader import load_study
from gemini_cmr.core.io.manifest import is_paired_dataset, read_manifest, select_subjects, subject_file
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, intensity_scale
from gemini_cmr.core.study import Grid, Study
from gemini_cmr.core.vama import MIN_SLICES

log = logging.getLogger(__name__)

LABEL_SUFFIXES = ("_labels", "_label", "_gt", "_seg", "-labels", "_lr_labels")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
COHORTS = ("acdc", "mnms", "ukbb", "pairs")
# (kind, root) -> [(subject id, split, loader returning a Study)]
CohortReader = Callable[[str, Path], list[tuple[str, str, Callable[[], Study]]]]


@dataclass
class DomainStudy:
    """One LR study of a domain: image (T, Z, Y, X) float32, grid (its slice frame), labels per labelled
    phase (Z, Y, X)."""

    name: str
    image: np.ndarray
    grid: Grid
    phase_labels: dict[int, np.ndarray]
    ed_phase: int
    es_phase: int | None = None
    scale: float = 1.0
    segmentation: tuple[np.ndarray, Grid] | None = None  # Gemini-GAN SR labels at ED, when unlabelled
    description: str = ""  # vendor / format, for the adapter's record of its source
    reference: dict[int, np.ndarray] | None = None  # the user's labels as read (kept when training
    # replaces `phase_labels` by Gemini-GAN's segmentation): the adapter's measured effect is scored on them

    @property
    def labels(self) -> np.ndarray | None:
        """The landmark labels: the ED phase's, else the first labelled phase's; None if unlabelled."""
        if not self.phase_labels:
            return None
        return self.phase_labels.get(self.ed_phase, self.phase_labels[min(self.phase_labels)])

    @property
    def normalised(self) -> np.ndarray:
        return self.image / self.scale

    @property
    def n_slices(self) -> int:
        """2D slices: slices x phases."""
        return int(self.image.shape[0] * self.image.shape[1])

    @property
    def has_landmark_labels(self) -> bool:
        """Labels with the LV myocardium and the RV cavity (what the alignment landmarks need)."""
        lab = self.labels
        return lab is not None and bool((lab == 2).any()) and bool((lab == 3).any())


def slice_frame(grid: Grid) -> Grid:
    """The stack's own frame: (i, j, k) scaled by the voxel spacing, origin 0 (no world orientation)."""
    return Grid(grid.shape, np.diag([*np.asarray(grid.spacing, dtype=np.float64), 1.0]))


def parse_domain(spec: str | Path) -> tuple[str | None, Path]:
    """"acdc:PATH" etc. -> (kind, PATH); a plain path -> (None, path)."""
    s = str(spec)
    for kind in COHORTS:
        if s.startswith(kind + ":"):
            return kind, Path(s[len(kind) + 1:]).expanduser()
    return None, Path(s).expanduser()


# --- reading the domains --------------------------------------------------------------------------
def _stem(path: Path) -> str:
    name = path.name
    for suf in NIFTI_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def _make(name: str, image: np.ndarray, affine: np.ndarray, labels: np.ndarray | None,
          ed_phase: int | None, where: str, es_phase: int | None = None, description: str = "") -> DomainStudy:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise DataError(f"expected a 3D or 4D LR image, got shape {image.shape}", where)
    if not np.all(np.isfinite(image)):
        raise DataError("image has NaN/Inf values", where)
    if min(image.shape[2:]) < 16:
        raise DataError(f"in-plane size {image.shape[3]}x{image.shape[2]} is too small", where)
    grid = slice_frame(Grid(image.shape[1:], affine))
    n_t = image.shape[0]
    ed = int(ed_phase or 0) % n_t
    es = None if es_phase is None else int(es_phase) % n_t
    phase_labels = {}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 3:
            labels = labels[None]
        if labels.shape[1:] != image.shape[1:] or labels.shape[0] not in (1, n_t):
            raise DataError(f"labels shape {labels.shape} does not match image shape {image.shape}", where)
        if labels.shape[0] == 1 and n_t > 1:  # one labelled volume for a cine: the ED phase
            phase_labels = {ed: labels[0].astype(np.uint8)} if labels[0].any() else {}
        else:
            phase_labels = {t: labels[t].astype(np.uint8) for t in range(n_t) if labels[t].any()}
    return DomainStudy(name, image, grid, phase_labels, ed, es, intensity_scale(image, DEFAULT_PERCENTILE),
                       description=description, reference=dict(phase_labels) or None)


def _describe(study: Study) -> str:
    m = study.meta
    return ", ".join(x for x in (m.vendor, m.format) if x)


def _from_study(name: str, study: Study, where: str) -> DomainStudy:
    labels = None
    if study.labels is not None and study.labelled_phases:
        labels = np.zeros_like(study.labels)
        for t in study.labelled_phases:  # only the phases the study labels
            labels[t] = study.labels[t]
    return _make(name, study.image, study.affine, labels, study.meta.ed_phase, where, study.meta.es_phase,
                 _describe(study))


def _read_manifest(folder: Path, split: str) -> list[DomainStudy]:
    manifest = read_manifest(folder, require=("lr_image",))
    out = []
    for sub in select_subjects(manifest, split):
        sid = str(sub["id"])
        img_path = subject_file(folder, sub, "lr_image")
        img, aff, _ = read_nifti_array(img_path)
        labels = None
        if sub.get("lr_labels"):
            lab_path = subject_file(folder, sub, "lr_labels")
            labels, laff, _ = read_nifti_array(lab_path)
            if not np.allclose(laff, aff, atol=1e-3):
                raise DataError(f"subject {sid}: lr_labels affine differs from lr_image", lab_path)
        out.append(_make(sid, img, aff, labels, sub.get("ed_phase"), str(img_path), sub.get("es_phase"),
                         str(sub.get("domain") or "paired dataset")))
    return out


def _study_of(path: Path, name: str, skipped: list[str]) -> DomainStudy | None:
    """One study read by `load_study`; None (the reason kept in `skipped`) when it is not a readable cine."""
    try:
        return _from_study(name, load_study(path), str(path))
    except GeminiError as exc:
        skipped.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - unreadable file in the user's folder
        skipped.append(f"{path}: {exc.__class__.__name__}: {exc}")
    log.debug("skipping %s: %s", path, skipped[-1])
    return None


def _read_folder(folder: Path, skipped: list[str]) -> list[DomainStudy]:
    entries = sorted(folder.iterdir())
    files = {_stem(p): p for p in entries if p.is_file() and p.name.endswith(NIFTI_SUFFIXES)}
    label_stems = {s for s in files if s.endswith(LABEL_SUFFIXES)}
    out = []
    for stem, path in files.items():
        if stem in label_stems:
            continue
        lab_path = next((files[stem + suf] for suf in LABEL_SUFFIXES if stem + suf in files), None)
        if lab_path is None:
            try:
                out.append(_from_study(stem, load_study(path), str(path)))
                continue
            except Exception as exc:  # noqa: BLE001 - fall back to the plain reader
                log.debug("load_study failed on %s (%s); reading it as plain NIfTI", path, exc)
        img, aff, _ = read_nifti_array(path)
        labels = read_nifti_array(lab_path)[0] if lab_path is not None else None
        out.append(_make(stem, img, aff, labels, None, str(path), description="NIfTI"))
    for p in entries:
        if p.is_file() and p.suffix.lower() == ".zip" and zipfile.is_zipfile(p):
            study = _study_of(p, p.stem, skipped)
            if study is not None:
                out.append(study)
    subfolders = [p for p in entries if p.is_dir()]
    for sub in subfolders:
        img_path = next((sub / n for n in ("lr_image.nii.gz", "lr_image.nii") if (sub / n).is_file()), None)
        if img_path is not None:
            img, aff, _ = read_nifti_array(img_path)
            lab_path = next((sub / n for n in ("lr_labels.nii.gz", "lr_labels.nii") if (sub / n).is_file()),
                            None)
            labels = read_nifti_array(lab_path)[0] if lab_path is not None else None
            out.append(_make(sub.name, img, aff, labels, None, str(img_path), description="NIfTI"))
        else:
            study = _study_of(sub, sub.name, skipped)
            if study is not None:
                out.append(study)
    if not out and not files and any(p.is_file() for p in entries):
        study = _study_of(folder, folder.name, skipped)  # the folder is one DICOM series
        if study is not None:
            out.append(study)
    return out


def _read_cohort(kind: str, root: Path, split: str, cohort: CohortReader | None) -> list[DomainStudy]:
    if cohort is not None:
        subjects = cohort(kind, root)
    elif kind == "acdc":
        from gemini_cmr.core.io.layouts import acdc_subjects, load_acdc

        subjects = [(sid, sp, lambda f=folder: load_acdc(f)) for sid, folder, sp in acdc_subjects(root)]
    else:
        raise DataError(f"{kind}: sources are read by the training code (core.train.vama.cohort_studies)", root)
    chosen = [s for s in subjects if split not in ("train", "val") or s[1] == split]
    out = []
    for sid, _, load in chosen:
        try:
            study = load()
        except GeminiError as exc:
            raise DataError(f"subject {sid}: {exc}", root) from None
        out.append(_from_study(sid, study, f"{root}/{sid}"))
    return out


def read_domain(spec: str | Path, role: str, split: str = "train", cohort: CohortReader | None = None
                ) -> list[DomainStudy]:
    """All LR studies of one domain (see the module docstring). Raises `DataError` naming the folder or
    file when it is missing or holds no readable short-axis cine."""
    kind, path = parse_domain(spec)
    if not path.exists():
        raise DataError(f"{role} {'folder' if kind is None else kind + ' source'} not found", path)
    skipped: list[str] = []
    try:
        if kind is not None:
            studies = _read_cohort(kind, path, split, cohort)
        elif path.is_file():
            one = _study_of(path, _stem(path), skipped)
            studies = [] if one is None else [one]
        elif is_paired_dataset(path):
            studies = _read_manifest(path, split)
        else:
            studies = _read_folder(path, skipped)
    except DataError:
        raise
    except GeminiError as exc:
        raise DataError(f"cannot read the {role} studies: {exc}", path) from None
    except Exception as exc:  # noqa: BLE001 - unreadable file in the user's folder
        raise DataError(f"cannot read the {role} studies ({exc.__class__.__name__}: {exc})", path) from None
    if not studies:
        if kind is None and path.is_dir() and is_paired_dataset(path):
            raise DataError(f"no LR studies found in the {role} folder with split {split!r}", path)
        why = f" (e.g. {skipped[0]})" if skipped else ""
        raise DataError(f"no readable short-axis cine (no LR studies) in the {role} "
                        f"{'file' if path.is_file() else 'folder'}{why}", path)
    if skipped:
        log.warning("%s: %d entr%s skipped (not a readable short-axis cine), e.g. %s", path, len(skipped),
                    "y" if len(skipped) == 1 else "ies", skipped[0])
    return studies


def domain_description(studies: list[DomainStudy], spec: str | Path) -> str:
    """One line: how many studies and 2D slices, what they are, where from."""
    kinds = sorted({s.description for s in studies if s.description})
    what = f" ({'; '.join(kinds)[:120]})" if kinds else ""
    n = sum(s.n_slices for s in studies)
    return f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}, {n} slices{what} from {spec}"


def _same_source(a: str | Path, b: str | Path) -> bool:
    return parse_domain(a)[1].resolve() == parse_domain(b)[1].resolve()


def check_domains(source: list[DomainStudy], target: list[DomainStudy], source_dir: str | Path,
                  target_dir: str | Path, min_slices: int = MIN_SLICES) -> None:
    """The two domains must differ and each hold at least `min_slices` 2D slices (slices x phases).

    Orientation is not compared: every study is used in its own slice frame (`slice_frame`).
    """
    if _same_source(source_dir, target_dir):
        raise DataError("source and target are the same folder", parse_domain(source_dir)[1])
    for role, studies, folder in (("source", source, source_dir), ("target", target, target_dir)):
        n = sum(s.n_slices for s in studies)
        if n < min_slices:
            raise DataError(f"{n} {role} slices (slices x phases of {len(studies)} stud"
                            f"{'y' if len(studies) == 1 else 'ies'}); V-AMA training needs at least {min_slices}",
                            parse_domain(folder)[1])


def check_vama_data(source_dir: str | Path, target_dir: str | Path, split: str = "train",
                    min_slices: int = MIN_SLICES, cohort: CohortReader | None = None
                    ) -> list[tuple[str, bool, str]]:
    """The checks `train_vama` runs before training, as rows (name, ok, problem) for the app's wizard.

    One row per study read ("source/<name>", "target/<name>"); a domain that cannot be read gives one
    failing row naming the study or file at fault (reading stops there); the slice count and same-folder
    checks across both domains give a final "source + target" row.
    """
    rows: list[tuple[str, bool, str]] = []
    domains = {}
    for role, folder in (("source", source_dir), ("target", target_dir)):
        try:
            domains[role] = read_domain(folder, role, split, cohort)
            rows += [(f"{role}/{s.name}", True, "") for s in domains[role]]
        except DataError as exc:
            rows.append((f"{role} folder", False, str(exc)))
    if len(domains) == 2:
        try:
            check_domains(domains["source"], domains["target"], source_dir, target_dir, min_slices)
            rows.append(("source + target", True, ""))
        except DataError as exc:
            rows.append(("source + target", False, str(exc)))
    return rows
