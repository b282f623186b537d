"""The two domains of V-AMA training: reading their LR studies and checking that they fit together.

A domain folder is a paired dataset (`manifest.json`; `lr_image` and the optional `lr_labels` are used,
one split) or a folder of LR studies: NIfTI files (read with `core.io.load_study`, or as plain NIfTI with
optional `<name>_labels`/`_gt`/`_seg` siblings) and subject folders (`lr_image.nii.gz` [+
`lr_labels.nii.gz`], or any study `load_study` reads). `check_domains` enforces the minimum study count and
one stack orientation; `check_vama_data` runs the same checks as rows for the training wizard.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.io.loader import load_study
from gemini_cmr.core.io.manifest import is_paired_dataset, read_manifest, select_subjects, subject_file
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, intensity_scale
from gemini_cmr.core.study import Grid, Study
from gemini_cmr.core.vama import MIN_STUDIES

log = logging.getLogger(__name__)

MAX_NORMAL_ANGLE_DEG = 45.0  # slice normals further than this from the target studies' mean: refused
LABEL_SUFFIXES = ("_labels", "_label", "_gt", "_seg", "-labels", "_lr_labels")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class DomainStudy:
    """One LR study of a domain: image (T, Z, Y, X) float32, grid, labels per labelled phase (Z, Y, X)."""

    name: str
    image: np.ndarray
    grid: Grid
    phase_labels: dict[int, np.ndarray]
    ed_phase: int
    es_phase: int | None = None
    scale: float = 1.0
    segmentation: tuple[np.ndarray, Grid] | None = None  # Gemini-GAN SR labels at ED, when unlabelled

    @property
    def labels(self) -> np.ndarray | None:
        """The landmark labels: the ED phase's, else the first labelled phase's; None if unlabelled."""
        if not self.phase_labels:
            return None
        return self.phase_labels.get(self.ed_phase, self.phase_labels[min(self.phase_labels)])

    @property
    def normalised(self) -> np.ndarray:
        return self.image / self.scale


# --- reading the domains --------------------------------------------------------------------------
def _stem(path: Path) -> str:
    name = path.name
    for suf in NIFTI_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def _make(name: str, image: np.ndarray, affine: np.ndarray, labels: np.ndarray | None,
          ed_phase: int | None, where: str, es_phase: int | None = None) -> DomainStudy:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise DataError(f"expected a 3D or 4D LR image, got shape {image.shape}", where)
    if not np.all(np.isfinite(image)):
        raise DataError("image has NaN/Inf values", where)
    if min(image.shape[2:]) < 16:
        raise DataError(f"in-plane size {image.shape[3]}x{image.shape[2]} is too small", where)
    grid = Grid(image.shape[1:], affine)
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
    return DomainStudy(name, image, grid, phase_labels, ed, es, intensity_scale(image, DEFAULT_PERCENTILE))


def _from_study(name: str, study: Study, where: str) -> DomainStudy:
    labels = None
    if study.labels is not None and study.labelled_phases:
        labels = study.labels
    return _make(name, study.image, study.affine, labels, study.meta.ed_phase, where, study.meta.es_phase)


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
        out.append(_make(sid, img, aff, labels, sub.get("ed_phase"), str(img_path), sub.get("es_phase")))
    return out


def _read_folder(folder: Path) -> list[DomainStudy]:
    files = {_stem(p): p for p in sorted(folder.iterdir())
             if p.is_file() and p.name.endswith(NIFTI_SUFFIXES)}
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
        out.append(_make(stem, img, aff, labels, None, str(path)))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        img_path = next((sub / n for n in ("lr_image.nii.gz", "lr_image.nii") if (sub / n).is_file()), None)
        if img_path is not None:
            img, aff, _ = read_nifti_array(img_path)
            lab_path = next((sub / n for n in ("lr_labels.nii.gz", "lr_labels.nii") if (sub / n).is_file()),
                            None)
            labels = read_nifti_array(lab_path)[0] if lab_path is not None else None
            out.append(_make(sub.name, img, aff, labels, None, str(img_path)))
        else:
            try:
                out.append(_from_study(sub.name, load_study(sub), str(sub)))
            except Exception as exc:  # noqa: BLE001 - not a study folder
                log.debug("skipping %s: %s", sub, exc)
    return out


def read_domain(folder: str | Path, role: str, split: str = "train") -> list[DomainStudy]:
    """All LR studies of one domain. Raises `DataError` naming the folder if it is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{role} folder not found", folder)
    try:
        studies = _read_manifest(folder, split) if is_paired_dataset(folder) else _read_folder(folder)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable file in the user's folder
        raise DataError(f"cannot read the {role} studies ({exc.__class__.__name__}: {exc})", folder) from None
    if not studies:
        what = f" with split {split!r}" if is_paired_dataset(folder) else ""
        raise DataError(f"no LR studies found in the {role} folder{what}", folder)
    return studies


def _axis_aligned(directions: np.ndarray) -> bool:
    """Direction cosines that are a signed permutation of the identity (no patient orientation)."""
    d = np.abs(np.asarray(directions, dtype=np.float64))
    return bool(np.allclose(d.max(axis=0), 1.0, atol=1e-6) and np.allclose(d.sum(axis=0), 1.0, atol=1e-6))


def check_domains(source: list[DomainStudy], target: list[DomainStudy], source_dir: Path,
                  target_dir: Path, min_studies: int = MIN_STUDIES) -> None:
    """Enforce the minimum study count and one stack orientation across both domains.

    Orientation: every stack's slice normal must lie within `MAX_NORMAL_ANGLE_DEG` of the target studies'
    mean normal (short-axis stacks vary by subject, but a long-axis or axial stack does not belong).
    When exactly one domain has only axis-aligned affines (no patient orientation, e.g. ACDC NIfTI), each
    domain is checked against its own mean normal instead, with a warning.
    """
    if source_dir.resolve() == target_dir.resolve():
        raise DataError("source and target are the same folder", source_dir)
    for role, studies, folder in (("source", source, source_dir), ("target", target, target_dir)):
        if len(studies) < min_studies:
            raise DataError(f"{len(studies)} {role} studies; V-AMA training needs at least {min_studies}",
                            folder)
    def mean_normal(studies: list[DomainStudy]) -> np.ndarray:
        normals = np.stack([t.grid.normal for t in studies])
        normals *= np.sign(normals @ normals[0])[:, None]
        reference = normals.mean(0)
        return reference / np.linalg.norm(reference)

    # A domain whose every affine is axis-aligned (ACDC's NIfTI: no patient orientation, slice normal = the
    # voxel z axis) says nothing about how its stacks lie in the patient: compare each domain with itself
    # only, and say so, instead of refusing a correctly oriented (oblique) DICOM domain against it.
    unoriented = [role for role, studies in (("target", target), ("source", source))
                  if all(_axis_aligned(s.grid.directions) for s in studies)]
    if unoriented and len(unoriented) < 2:
        log.warning("the %s studies carry no patient orientation (axis-aligned affines): slice orientation is "
                    "checked within each domain only", unoriented[0])
        references = {"target": mean_normal(target), "source": mean_normal(source)}
    else:
        references = {"target": mean_normal(target), "source": mean_normal(target)}
    odd = []
    for role, studies in (("target", target), ("source", source)):
        for s in studies:
            angle = math.degrees(math.acos(min(1.0, abs(float(s.grid.normal @ references[role])))))
            if angle > MAX_NORMAL_ANGLE_DEG:
                odd.append(f"{role} {s.name} ({angle:.0f} deg)")
    if odd:
        shown = ", ".join(odd[:6]) + (f" and {len(odd) - 6} more" if len(odd) > 6 else "")
        raise DataError(f"studies whose slice orientation differs from the target studies' (slice normal more "
                        f"than {MAX_NORMAL_ANGLE_DEG:.0f} deg from their mean): {shown}")


def check_vama_data(source_dir: str | Path, target_dir: str | Path, split: str = "train",
                    min_studies: int = MIN_STUDIES) -> list[tuple[str, bool, str]]:
    """The checks `train_vama` runs before training, as rows (name, ok, problem) for the app's wizard.

    One row per study read ("source/<name>", "target/<name>"); a domain folder that cannot be read gives one
    failing row naming the study or file at fault (reading stops there); the count and orientation checks
    across both domains give a final "source + target" row.
    """
    rows: list[tuple[str, bool, str]] = []
    domains = {}
    for role, folder in (("source", Path(source_dir)), ("target", Path(target_dir))):
        try:
            domains[role] = read_domain(folder, role, split)
            rows += [(f"{role}/{s.name}", True, "") for s in domains[role]]
        except DataError as exc:
            rows.append((f"{role} folder", False, str(exc)))
    if len(domains) == 2:
        try:
            check_domains(domains["source"], domains["target"], Path(source_dir), Path(target_dir), min_studies)
            rows.append(("source + target", True, ""))
        except DataError as exc:
            rows.append(("source + target", False, str(exc)))
    return rows
