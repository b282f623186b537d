"""LR-labelled cohorts: cine studies with manual labels on the acquired slices only (ACDC).

Data sources (`--data` of `gemini-cmr train gemini`):
- `acdc:PATH`: the ACDC training layout (`PATH/patientNNN/` with `Info.cfg`, `_frameXX` and `_frameXX_gt`),
  read by `core.io.layouts.load_acdc` (labels remapped to the project convention, true voxel sizes from
  pixdim). Split (documented, fixed): patients whose number is a multiple of 5 -> `val` (20 subjects,
  4 of each of the 5 pathology groups), the others -> `train` (80).
- `mnms:PATH`: the M&Ms layout, found anywhere under PATH: `<code>/<code>_sa.nii.gz` (4D cine) +
  `<code>_sa_gt.nii.gz` (labels 1 LV, 2 myo, 3 RV at ED and ES). Split: subjects under a folder named
  `Validation` or `Testing` (the official release) -> `val`, under `Training` -> `train`; without those
  folders every 5th subject in sorted order (0, 5, 10, ...) -> `val`.
- `ukbb:PATH`: UK Biobank subject folders (ukbb_cardiac layout) anywhere under PATH: `sa.nii.gz` (4D cine) +
  `label_sa.nii.gz` or `seg_sa.nii.gz` (1 LV, 2 myo, 3 RV). Split: every 5th subject -> `val`.
- `pairs:MANIFEST.json`: any image + labels: `{"subjects": [{"id": "s01", "image": "s01/cine.nii.gz",
  "labels": "s01/cine_gt.nii.gz", "convention": "acdc" | "mnms" | "ukbb" | "ukdhp" | "project" | "auto",
  "split": "train" | "val", "ed_phase": 0, "es_phase": 9, "group": "DCM"}, ...]}`, paths relative to the
  manifest. `image`: a NIfTI (3D = one phase, or 4D) or a DICOM series (folder, file or zip: anything
  `core.io.loader.load_study` reads); `labels`: a NIfTI label map on the image's grid (4D, or 3D for one
  phase: `"phase": t`), or instead `contours`: a folder of Sunnybrook-style contour files
  (`core.io.contours`: only the contoured slices are labelled). `convention` defaults to "project"
  (0 background, 1 LV cavity, 2 myocardium, 3 RV cavity); "auto" detects it (`detect_convention`).
  `structures` (optional): the structure keys the subject's labels annotate (default: those present);
  `empty_slices`: "background" (default: a labelled phase's slices without any label are background) or
  "unlabelled" (they are not used). `split` defaults to every 5th subject -> `val`, ED/ES phases to the
  labelled phases with the largest / smallest LV cavity.

Partial labels: a subject, phase or slice may annotate only some structures (`annotation`). Unannotated
structures are never taught as background: each acquired slice's label map is coded (`code_labels`) with
the value of the structure where it is annotated, `IGNORE` on slices without labels, and elsewhere a *set
code* (`SET_BASE` + bit mask of the classes the voxel may be: background and every structure the slice does
not annotate). The losses (`core.train.semi`) use the summed probability of the allowed classes
(marginal cross-entropy) and count a voxel in a structure's Dice only where that structure is known.

Per subject and labelled phase (ED and ES) one `LRSample`: the acquired LR slices resampled in-plane onto
the SR grid's in-plane grid (`core.geometry.inplane_resample`, image linear, labels nearest), the map
from SR slices to acquired slices (`nearest_slice_indices`: nearest-slice placement), intensities divided
by the cine's 99.5th percentile (as the predictor does). The network input is rebuilt per item by
gathering the planes (`planes[slice_index]`), so the cache stores each acquired slice once.
Samples are cached as `.npz` (no pickle) keyed by the files' paths, sizes and mtimes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import DataError, GeminiError
from gemini_cmr.core.geometry import inplane_resample, nearest_slice_indices, sr_grid
from gemini_cmr.core.io.atomic import atomic_path
from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, depth_windows, intensity_scale
from gemini_cmr.core.study import LABEL_OF, N_CLASSES, STRUCTURES, Grid
from gemini_cmr.core.synth.appearance import add_rician_normal
from gemini_cmr.core.train.data import labels_centre

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 2: in-plane placement keeps the LR field of view edge; 3: partial-label codes
IGNORE = 255  # label value of voxels without a label (acquired-slice positions without a slice, unlabelled slices)
SET_BASE = 128  # label values SET_BASE + mask (< IGNORE): the voxel is one of the classes in the bit mask


@dataclass
class LRSample:
    subject: str
    phase: int
    planes: np.ndarray  # (Z, H, W) float16: acquired slices on the SR in-plane grid, normalised
    labels: np.ndarray  # (Z, H, W) uint8: their manual labels (project convention)
    slice_index: np.ndarray  # (Dz,) int64: acquired slice of every SR slice
    scale: float
    is_ed: bool = False
    is_es: bool = False
    group: str = ""
    # (Z, H, W) float16: the cine's first phase on the same slices and grid, normalised by the same scale
    # (models with `first_phase_context`); None when not loaded
    context: np.ndarray | None = None

    @property
    def centre(self) -> tuple[float, float]:
        return labels_centre(np.where(self.labels < SET_BASE, self.labels, 0))


SOURCES = ("acdc", "mnms", "ukbb", "pairs")


def parse_source(data: str | Path) -> tuple[str, Path] | None:
    """"acdc:PATH" / "mnms:PATH" / "pairs:MANIFEST" -> (kind, PATH); anything else -> None (a paired
    HR dataset folder)."""
    s = str(data)
    for kind in SOURCES:
        if s.startswith(kind + ":"):
            return kind, Path(s[len(kind) + 1:])
    return None


@dataclass
class LRSubject:
    """One subject of an LR-labelled source: id, split, the files it is read from (cache key), a loader."""

    sid: str
    split: str
    files: list[Path]
    load: object  # () -> Study with labels
    group: str = ""  # known before loading (ACDC Info.cfg, manifest "group"): stratifies the held-out split
    key: str = ""  # what else the samples depend on (convention, structures): part of the cache key


def _ed_es_from_labels(study) -> None:
    """ED / ES = the labelled phases with the largest / smallest LV cavity, where the source gives none."""
    if study.meta.ed_phase is not None and study.meta.es_phase is not None:
        return
    lv = {t: int((study.labels[t] == 1).sum()) for t in study.labelled_phases}
    if lv:
        study.meta.ed_phase = max(lv, key=lv.get) if study.meta.ed_phase is None else study.meta.ed_phase
        study.meta.es_phase = min(lv, key=lv.get) if study.meta.es_phase is None else study.meta.es_phase


def _every_fifth(i: int) -> str:
    return "val" if i % 5 == 0 else "train"


def mnms_subjects(root: str | Path) -> list[LRSubject]:
    """M&Ms subjects under `root` (see the module docstring for the split)."""
    from gemini_cmr.core.io.layouts import study_from_nifti

    root = Path(root)
    if not root.is_dir():
        raise DataError("M&Ms folder not found", root)
    gts = sorted(p for p in root.rglob("*_sa_gt.nii*") if p.name.endswith((".nii", ".nii.gz")))
    if not gts:
        raise DataError("no <code>/<code>_sa_gt.nii.gz label files: not the M&Ms layout", root)
    out = []
    for i, gt in enumerate(gts):
        sid = gt.parent.name
        image = gt.with_name(gt.name.replace("_sa_gt", "_sa"))
        if not image.is_file():
            raise DataError(f"subject {sid}: labels without the image {image.name}", gt)
        parts = {q.lower() for q in gt.relative_to(root).parts[:-1]}
        split = "val" if parts & {"validation", "testing"} else "train" if "training" in parts else _every_fifth(i)

        def load(image=image, gt=gt):
            st = study_from_nifti(image, gt, "mnms")
            _ed_es_from_labels(st)
            return st
        out.append(LRSubject(sid, split, [image, gt], load))
    return out


def ukbb_subjects(root: str | Path) -> list[LRSubject]:
    """UK Biobank subject folders under `root` (`sa.nii.gz` + `label_sa` / `seg_sa`); every 5th -> val."""
    from gemini_cmr.core.io.layouts import label_partner, study_from_nifti

    root = Path(root)
    if not root.is_dir():
        raise DataError("UK Biobank folder not found", root)
    images = sorted(p for p in root.rglob("sa.nii*") if p.name in ("sa.nii", "sa.nii.gz"))
    if not images:
        raise DataError("no <subject>/sa.nii.gz images: not the UK Biobank layout", root)
    out = []
    for i, image in enumerate(images):
        sid = image.parent.name
        partner = label_partner(image)
        if partner is None:
            raise DataError(f"subject {sid}: no label_sa.nii.gz or seg_sa.nii.gz beside the image", image)
        labels = partner[0]

        def load(image=image, labels=labels):
            st = study_from_nifti(image, labels, "ukbb")
            _ed_es_from_labels(st)
            return st
        out.append(LRSubject(sid, _every_fifth(i), [image, labels], load))
    return out


# --- label conventions and grids -------------------------------------------------------------------------
CONVENTIONS = ("auto", "project", "acdc", "mnms", "ukbb", "ukdhp")
EMPTY_SLICES = ("background", "unlabelled")
GRID_TOLERANCE_MM = 0.5  # label and image voxel centres farther apart than this: another grid


def _enclosure(raw: np.ndarray, value: int, ring: int = 2) -> float:
    """Fraction of the in-plane border of label `value` that touches label `ring` (an LV cavity is ringed
    by myocardium; an RV cavity touches it along the septum only)."""
    m = raw == value
    touch = total = 0
    for axis in (-1, -2):
        for shift in (1, -1):
            nb = np.roll(raw, shift, axis)
            edge = m & (nb != value)
            total += int(edge.sum())
            touch += int((edge & (nb == ring)).sum())
    return touch / total if total else 0.0


def detect_convention(raw: np.ndarray) -> tuple[str, str]:
    """(convention, why) of a label map from its values and shapes: 4 for the RV -> "ukdhp"; 1 and 3 told
    apart by which one the myocardium (2) rings (the LV cavity): LV = 1 -> "project" (also M&Ms and UK
    Biobank), LV = 3 -> "acdc". `DataError` when the values fit no convention."""
    values = sorted(int(v) for v in np.unique(raw) if v != 0)
    if not values:
        return "project", "no labels"
    if 4 in values and set(values) <= {1, 2, 4}:
        return "ukdhp", "values 1, 2, 4 (4 = RV cavity)"
    if not set(values) <= {1, 2, 3}:
        raise DataError(f"label values {values} fit no known convention (0-3, or 1, 2, 4)")
    if 2 not in values:
        return "project", "no myocardium (2) to tell LV from RV: assumed 1 = LV cavity"
    ringed = {v: _enclosure(raw, v) for v in (1, 3) if v in values}
    if not ringed:
        return "project", "myocardium only"
    if len(ringed) == 2:
        lv = max(ringed, key=ringed.get)
    else:
        (v, f), = ringed.items()
        lv = v if f >= 0.5 else 4 - v
    return ("project" if lv == 1 else "acdc"), f"label {lv} is the cavity ringed by myocardium (LV)"


def _reorient_labels(raw: np.ndarray, lab_affine: np.ndarray, img_affine: np.ndarray,
                     shape: tuple[int, int, int]) -> np.ndarray | None:
    """`raw` ((T,) Z, Y, X on `lab_affine`) on the image's voxel grid (`img_affine`, (Z, Y, X) `shape`) when
    both grids hold the same voxel centres up to axis order and direction (a NIfTI converted from the
    DICOM series, rows flipped); None when they do not."""
    m = np.linalg.inv(lab_affine) @ img_affine  # image voxel index -> label voxel index
    perm = np.round(m[:3, :3])
    if np.abs(m[:3, :3] - perm).max() > 1e-2 or sorted(np.abs(perm).sum(0)) != [1, 1, 1] \
            or sorted(np.abs(perm).sum(1)) != [1, 1, 1]:
        return None
    n_img = np.array(shape[::-1])  # (i, j, k) extents
    lab3 = raw.shape[-3:][::-1]
    axes, flips = [], []
    for a in range(3):
        b = int(np.argmax(np.abs(perm[:, a])))
        sign = perm[b, a]
        off = m[b, 3]
        if lab3[b] != n_img[a] or abs(off - (0 if sign > 0 else n_img[a] - 1)) > 1e-2:
            return None
        axes.append(b)
        flips.append(sign < 0)
    lead = raw.ndim - 3
    arr = np.moveaxis(raw, range(lead, raw.ndim), range(raw.ndim - 1, lead - 1, -1))  # (..., i, j, k)
    arr = np.moveaxis(arr, [lead + b for b in axes], [lead + a for a in range(3)])
    for a in range(3):
        if flips[a]:
            arr = np.flip(arr, lead + a)
    return np.ascontiguousarray(np.moveaxis(arr, range(lead, raw.ndim), range(raw.ndim - 1, lead - 1, -1)))


def labels_on_image(study, labels_path: Path, convention: str, phase: int | None = None
                    ) -> tuple[np.ndarray, str, str]:
    """(labels (T, Z, Y, X) uint8 in the project convention, convention used, why) of a label NIfTI read
    onto `study`'s grid: the same voxels (axis order and direction may differ), else `DataError`; values
    outside the convention -> `StudyError`; 3D labels of a cine need `phase`."""
    from gemini_cmr.core.io.layouts import remap_labels
    from gemini_cmr.core.io.nifti import load_nifti_volume

    raw, lab_affine, _, _ = load_nifti_volume(labels_path)
    nt, shape = study.image.shape[0], study.image.shape[1:]
    if raw.ndim == 4 and raw.shape[0] == 1 and nt > 1 and phase is not None:
        raw = raw[0]
    if raw.ndim == 3 and nt > 1 and phase is None:
        raise DataError(f"3D labels on a {nt}-phase cine: give the phase they label ('phase')", labels_path)
    if raw.ndim == 4 and raw.shape[0] != nt:
        raise DataError(f"the labels have {raw.shape[0]} phases, the image {nt}", labels_path)
    on = _reorient_labels(raw, lab_affine, study.affine, shape)
    if on is None:
        corners = np.array([[i, j, k, 1.0] for i in (0, shape[2] - 1) for j in (0, shape[1] - 1)
                            for k in (0, shape[0] - 1)]).T
        far = float(np.abs((lab_affine - study.affine) @ corners)[:3].max()) if raw.shape[-3:] == shape else None
        what = (f"shape {tuple(raw.shape)} vs image {tuple(study.image.shape)}" if far is None
                else f"voxel positions up to {far:.1f} mm from the image's")
        raise DataError(f"labels on another grid than their image ({what})", labels_path)
    if convention == "auto":
        convention, why = detect_convention(on)
    else:
        why = "chosen"
    labels = remap_labels(on, convention, str(labels_path))
    if labels.ndim == 3:
        full = np.zeros(study.image.shape, np.uint8)
        t = 0 if phase is None else int(phase)
        if not 0 <= t < nt:
            raise DataError(f"phase {t} outside the cine's 0..{nt - 1}", labels_path)
        full[t] = labels
        labels = full
    return labels, convention, why


def _structure_values(keys, where) -> list[int]:
    if not isinstance(keys, list) or not keys or any(k not in LABEL_OF for k in keys):
        raise DataError(f"'structures' must list some of {', '.join(LABEL_OF)}, not {keys!r}", where)
    return sorted(LABEL_OF[k] for k in keys)


def _load_image(image: Path):
    from gemini_cmr.core.io.layouts import is_nifti, study_from_nifti
    from gemini_cmr.core.io.loader import load_study

    return study_from_nifti(image) if image.is_file() and is_nifti(image) else load_study(image)


def manifest_subjects(manifest: str | Path, doc: dict | None = None) -> list[LRSubject]:
    """Subjects listed in a `pairs:` manifest (see the module docstring); `doc` = its contents already
    read (the wizard's table), paths relative to `manifest`'s folder."""
    import json

    manifest = Path(manifest)
    try:
        if doc is None:
            doc = json.loads(manifest.read_text())
        entries = doc["subjects"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("'subjects' must be a non-empty list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a readable pairs manifest ({exc})", manifest) from None
    out, seen = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "image" not in e or ("labels" in e) == ("contours" in e):
            raise DataError(f"subject entry {i}: needs 'image' and one of 'labels' or 'contours'", manifest)
        sid = str(e.get("id", f"subject{i:03d}"))
        if sid in seen:
            raise DataError(f"subject id {sid} listed twice", manifest)
        seen.add(sid)
        image = manifest.parent / e["image"]
        labels = manifest.parent / e["labels"] if "labels" in e else None
        contours = manifest.parent / e["contours"] if "contours" in e else None
        if not image.exists():
            raise DataError(f"subject {sid}: file not found (image)", image)
        if labels is not None and not labels.is_file():
            raise DataError(f"subject {sid}: file not found (labels)", labels)
        if contours is not None and not contours.is_dir():
            raise DataError(f"subject {sid}: contour folder not found", contours)
        conv = str(e.get("convention", "project"))
        if conv not in CONVENTIONS:
            raise DataError(f"subject {sid}: unknown label convention {conv!r} (one of {', '.join(CONVENTIONS)})",
                            manifest)
        split = str(e.get("split", _every_fifth(i)))
        if split not in ("train", "val"):
            raise DataError(f"subject {sid}: split must be 'train' or 'val', not {split!r}", manifest)
        structures = _structure_values(e["structures"], manifest) if "structures" in e else None
        empty = str(e.get("empty_slices", "background"))
        if empty not in EMPTY_SLICES:
            raise DataError(f"subject {sid}: empty_slices must be one of {', '.join(EMPTY_SLICES)}", manifest)
        ed, es, phase = e.get("ed_phase"), e.get("es_phase"), e.get("phase")
        group = str(e.get("group", ""))

        def load(image=image, labels=labels, contours=contours, conv=conv, ed=ed, es=es, phase=phase,
                 structures=structures, empty=empty, group=group, sid=sid):
            try:
                st = _load_image(image)
                if contours is not None:
                    from gemini_cmr.core.io.contours import attach_contours

                    st = attach_contours(st, contours)
                    st.meta.extra.update(convention="contours", convention_note="Sunnybrook contour files")
                else:
                    lab, used, why = labels_on_image(st, labels, conv, phase)
                    st.labels = lab
                    st.labelled_phases = [t for t in range(lab.shape[0]) if lab[t].any()]
                    st.meta.extra.update(convention=used, convention_note=why)
            except GeminiError as exc:
                raise DataError(f"subject {sid}: {_message(exc)}", exc.path) from None
            if structures is not None:
                st.meta.extra["structures"] = structures
            st.meta.extra["empty_slices"] = empty
            st.meta.group = group or st.meta.group
            st.meta.ed_phase = None if ed is None else int(ed)
            st.meta.es_phase = None if es is None else int(es)
            _ed_es_from_labels(st)
            return st
        files = [image] if image.is_file() else sorted(q for q in image.rglob("*") if q.is_file())
        files += [labels] if labels is not None else sorted(contours.rglob("*.txt"))
        key = json.dumps([conv, structures, empty, phase, ed, es])
        out.append(LRSubject(sid, split, files, load, group, key))
    return out


def lr_subjects(kind: str, root: str | Path) -> list[LRSubject]:
    """The subjects of an LR-labelled source ("acdc", "mnms", "ukbb" or "pairs")."""
    if kind == "acdc":
        from gemini_cmr.core.io.layouts import acdc_subjects, load_acdc, read_info_cfg

        def group(folder: Path) -> str:
            cfg = folder / "Info.cfg"
            return read_info_cfg(cfg).get("Group", "") if cfg.is_file() else ""
        return [LRSubject(sid, sp, sorted(folder.iterdir()), lambda folder=folder: load_acdc(folder), group(folder))
                for sid, folder, sp in acdc_subjects(root)]
    if kind == "mnms":
        return mnms_subjects(root)
    if kind == "ukbb":
        return ukbb_subjects(root)
    if kind == "pairs":
        return manifest_subjects(root)
    raise DataError(f"unknown LR-label source {kind!r} (one of {', '.join(SOURCES)})", root)


# --- partial labels --------------------------------------------------------------------------------------
def slice_background(labels: np.ndarray) -> np.ndarray:
    """(Z,) uint8: what lies outside each coded (Z, H, W) slice's field of view and in crop padding: 0 on a
    slice that annotates every class, its set code on a partially annotated slice, IGNORE on a slice
    without labels (so padding never teaches an unannotated structure as background)."""
    out = np.zeros(labels.shape[0], np.uint8)
    for z, plane in enumerate(labels):
        coded = plane[plane >= SET_BASE]
        if coded.size:
            sets = coded[coded != IGNORE]
            out[z] = sets.max() if sets.size else IGNORE
    return out


def set_code(classes) -> int:
    """The label value of a voxel that may be any of `classes` (background and unannotated structures)."""
    return SET_BASE + sum(1 << int(c) for c in set(classes))


def annotation(study, n_classes: int = N_CLASSES) -> dict[int, list[frozenset[int] | None]]:
    """Per labelled phase and slice: the classes annotated there (background included), None for a slice
    without labels. Contours (`meta.extra["contour_slices"]`): the contoured slices, each with the
    structures drawn on it (an endocardium alone annotates the LV cavity only). Label maps: every slice of a
    labelled phase annotates the subject's structures (`meta.extra["structures"]`, else those present in its
    labels); with `meta.extra["empty_slices"] == "unlabelled"` slices without any label are not used."""
    labels, extra = study.labels, study.meta.extra
    out: dict[int, list[frozenset[int] | None]] = {}
    if extra.get("contour_slices") is not None:
        drawn = {(int(t), int(k)) for t, k in extra["contour_slices"]}
        for t in study.labelled_phases:
            out[t] = [frozenset({0} | {int(v) for v in np.unique(labels[t, z]) if 0 < v < n_classes})
                      if (t, z) in drawn else None for z in range(labels.shape[1])]
        return out
    if extra.get("structures"):
        present = {int(v) for v in extra["structures"]}
    else:
        present = {int(v) for t in study.labelled_phases for v in np.unique(labels[t]) if 0 < v < n_classes}
    empty_known = extra.get("empty_slices", "background") == "background"
    for t in study.labelled_phases:
        out[t] = [frozenset({0} | present) if empty_known or labels[t, z].any() else None
                  for z in range(labels.shape[1])]
    return out


def code_labels(labels: np.ndarray, sets: list[frozenset[int] | None], n_classes: int = N_CLASSES) -> np.ndarray:
    """(Z, Y, X) labels of one phase coded with its per-slice annotation (`annotation`): annotated
    structures keep their value, the rest of a slice that does not annotate every class becomes the set
    code of background + the unannotated classes, slices without labels `IGNORE`."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    full = frozenset(range(n_classes))
    for z, a in enumerate(sets):
        if a is None:
            out[z] = IGNORE
        elif a != full:
            known = sorted(a - {0})
            out[z][~np.isin(out[z], known)] = set_code({0} | (full - a))
    return out


def structures_summary(ann: dict[int, list[frozenset[int] | None]], n_classes: int = N_CLASSES) -> dict:
    """What an annotation holds: labelled slices and phases, and per structure key the number of labelled
    slices that annotate it."""
    slices = [(t, z) for t, row in ann.items() for z, a in enumerate(row) if a is not None]
    per = {STRUCTURES[c]: sum(1 for t, row in ann.items() for a in row if a is not None and c in a)
           for c in range(1, n_classes)}
    return {"labelled_slices": len(slices), "labelled_phases": sorted({t for t, _ in slices}), "structures": per}


def _box(study, roi_mm: float) -> tuple[slice, slice, np.ndarray]:
    """In-plane (rows, columns) of a `roi_mm` box centred on the study's labels (all labelled phases),
    clipped to the image, and the affine whose origin moves so world coordinates are unchanged."""
    lr = study.grid
    mask = np.any([(study.labels[t] > 0).any(axis=0) for t in study.labelled_phases], axis=0)
    jj, ii = np.nonzero(mask)
    ny, nx = lr.shape[1:]
    sx, sy = float(lr.spacing[0]), float(lr.spacing[1])
    hx, hy = int(round(roi_mm / sx / 2)), int(round(roi_mm / sy / 2))
    cx, cy = int(round(ii.mean())), int(round(jj.mean()))
    x0, x1, y0, y1 = max(0, cx - hx), min(nx, cx + hx), max(0, cy - hy), min(ny, cy + hy)
    affine = study.affine.copy()
    affine[:3, 3] = (study.affine @ np.array([x0, y0, 0.0, 1.0]))[:3]
    return slice(y0, y1), slice(x0, x1), affine


def heart_box(study, roi_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, labels, affine) of `study` cut in-plane to a `roi_mm` box centred on its labels (all
    labelled phases), clipped to the image; the affine's origin moves so world coordinates are unchanged.
    The training counterpart of the predictor's heart region of interest (`inference.roi_mm`), whose
    intensity scale is likewise taken inside the box."""
    ys, xs, affine = _box(study, roi_mm)
    return study.image[:, :, ys, xs], study.labels[:, :, ys, xs], affine


def coded_study_labels(study, n_classes: int = N_CLASSES) -> tuple[np.ndarray, dict]:
    """(T, Z, Y, X) labels with the partial-label codes of every labelled phase (`annotation`,
    `code_labels`), and the annotation."""
    ann = annotation(study, n_classes)
    coded = np.array(study.labels, dtype=np.uint8, copy=True)
    for t, sets in ann.items():
        coded[t] = code_labels(study.labels[t], sets, n_classes)
    return coded, ann


def samples_from_study(study, sid: str, percentile: float = DEFAULT_PERCENTILE,
                       roi_mm: float = 0.0, context: bool = False) -> list[LRSample]:
    """LRSamples of the labelled phases of a `Study` with LR labels (coded for partial labels:
    `coded_study_labels`); with `roi_mm` > 0 only a box of that size around the labels (`heart_box`),
    normalised by its own intensity percentile; with `context` each sample also holds the cine's first
    phase (`LRSample.context`)."""
    if not study.has_labels or not study.labelled_phases:
        raise DataError(f"subject {sid}: no labelled phases", study.meta.source_path)
    coded, ann = coded_study_labels(study)
    phases = [t for t in study.labelled_phases if any(a is not None for a in ann[t])]
    if not phases:
        raise DataError(f"subject {sid}: no labelled slice", study.meta.source_path)
    image, labels_all, affine = study.image, coded, study.affine
    if roi_mm > 0:
        ys, xs, affine = _box(study, roi_mm)
        image, labels_all = image[:, :, ys, xs], labels_all[:, :, ys, xs]
    lr = Grid(image.shape[1:], affine)
    if lr.shape[0] < 2:
        raise DataError(f"subject {sid}: the LR stack has a single slice", study.meta.source_path)
    sr = sr_grid(lr)
    idx = nearest_slice_indices(lr, sr)
    scale = intensity_scale(image, percentile)
    out = []
    first = None
    if context:
        first = (inplane_resample(image[0].astype(np.float32), lr, sr, order=1) / scale).astype(np.float16)
    for t in phases:
        planes = inplane_resample(image[t].astype(np.float32), lr, sr, order=1) / scale
        labels = inplane_resample(labels_all[t].astype(np.uint8), lr, sr, order=0).astype(np.uint8)
        for z, a in enumerate(ann[t]):
            if a is None:
                labels[z] = IGNORE
            elif a != frozenset(range(N_CLASSES)):  # beyond the LR field of view: not background
                labels[z][labels[z] == 0] = set_code({0} | (frozenset(range(N_CLASSES)) - a))
        out.append(LRSample(sid, int(t), planes.astype(np.float16), labels, idx.astype(np.int64), float(scale),
                            t == study.meta.ed_phase, t == study.meta.es_phase, study.meta.group, first))
    return out


def _cache_key(files: list[Path], percentile: float, roi_mm: float = 0.0, extra: str = "") -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{percentile}".encode() + (f"|roi{roi_mm:g}".encode() if roi_mm else b"")
                       + (f"|{extra}".encode() if extra else b""))
    for p in sorted(Path(f).resolve() for f in files):
        st = p.stat()
        h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


ALL_SUBJECTS = "all"


def parse_fold(fold: str | None) -> tuple[int, int] | str | None:
    """"k/n" -> (k, n) with 0 <= k < n; "all" -> every subject trains (the final model of a recipe after its
    cross-validation); "" or None -> None (the source's own split)."""
    if not fold:
        return None
    if str(fold) == ALL_SUBJECTS:
        return ALL_SUBJECTS
    try:
        k, n = (int(v) for v in str(fold).split("/"))
    except ValueError:
        raise DataError(f"fold must look like 'k/n' (e.g. 2/5), not {fold!r}") from None
    if n < 2 or not 0 <= k < n:
        raise DataError(f"fold {fold!r}: need n >= 2 and 0 <= k < n")
    return k, n


def fold_of(kind: str, subject: LRSubject, position: int, n: int) -> int:
    """The cross-validation fold (0..n-1) of a subject: ACDC by patient number modulo n (the pathology
    groups are blocks of 20 consecutive patients, so with n = 5 every fold holds 4 of each group and fold 0
    is the fixed validation split); other sources by position in sorted order modulo n."""
    if kind == "acdc":
        from gemini_cmr.core.io.layouts import ACDC_PATIENT

        m = ACDC_PATIENT.match(subject.sid)
        if m:
            return int(m.group(1)) % n
    return position % n


def subject_split(kind: str, subjects: list[LRSubject], fold: tuple[int, int] | str | None = None,
                  holdout=None) -> dict[str, str]:
    """Subject id -> "train" | "val": `holdout` (subject ids) validate and the others train; else fold k of
    `fold` = (k, n) validates; `fold` "all": every subject trains; else the source's own split. Unknown
    held-out ids -> `DataError`."""
    if holdout:
        ids = {s.sid for s in subjects}
        missing = sorted(set(holdout) - ids)
        if missing:
            raise DataError(f"held-out subject(s) {', '.join(missing)} not in the data")
        return {s.sid: "val" if s.sid in set(holdout) else "train" for s in subjects}
    if fold == ALL_SUBJECTS:
        return {s.sid: "train" for s in subjects}
    if fold is not None:
        return {s.sid: "val" if fold_of(kind, s, i, fold[1]) == fold[0] else "train" for i, s in enumerate(subjects)}
    return {s.sid: s.split for s in subjects}


def choose_holdout(subjects: list[LRSubject], fraction: float = 0.2, n: int | None = None,
                   seed: int = 0) -> list[str]:
    """Held-out subject ids: `n` (default round(fraction x subjects), at least 1), stratified by group when
    groups are known (each group gives its share, largest remainders first), drawn with a seeded RNG; at
    least one subject always trains. `DataError` below 2 subjects."""
    total = len(subjects)
    if total < 2:
        raise DataError(f"{total} subject(s): a held-out split needs at least 2 (1 to train, 1 held out)")
    n = max(1, int(round(fraction * total))) if n is None else int(n)
    if not 1 <= n <= total - 1:
        raise DataError(f"{n} held-out subject(s) of {total}: need 1 to {total - 1} (at least 1 trains)")
    groups: dict[str, list[str]] = {}
    for s in sorted(subjects, key=lambda s: s.sid):
        groups.setdefault(s.group, []).append(s.sid)
    share = {g: n * len(ids) / total for g, ids in groups.items()}
    take = {g: int(np.floor(v)) for g, v in share.items()}
    for g in sorted(groups, key=lambda g: (-(share[g] - take[g]), g))[: n - sum(take.values())]:
        take[g] += 1
    rng = np.random.default_rng(seed)
    out = []
    for g in sorted(groups):
        ids = groups[g]
        out += [ids[i] for i in sorted(rng.permutation(len(ids))[: take[g]])]
    return sorted(out)


def load_lr_split(kind: str, root: str | Path, split: str, percentile: float = DEFAULT_PERCENTILE,
                  cache_dir: str | Path | None = None, fold: tuple[int, int] | str | None = None,
                  roi_mm: float = 0.0, holdout=None, context: bool = False) -> list[LRSample]:
    """LRSamples (labelled phases) of one split of an LR-labelled source, cached as `.npz` per subject.
    With `holdout` (subject ids) those are "val" and the others "train"; with `fold` = (k, n), fold k is
    "val" (held out) and the other folds "train", instead of the source's own split (`subject_split`);
    with `roi_mm` > 0 each study is cut to a box of that size around its labels first; with `context`
    the samples hold the cine's first phase too (their own cache files)."""
    samples: list[LRSample] = []
    subjects = lr_subjects(kind, root)
    splits = subject_split(kind, subjects, fold, holdout)
    for subj in subjects:
        if splits[subj.sid] != split:
            continue
        cached = None
        if cache_dir is not None:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", subj.sid)
            key = _cache_key(subj.files, percentile, roi_mm, subj.key + ("|context" if context else ""))
            cached = Path(cache_dir) / f"{safe}-{key}.npz"
            if cached.exists():
                try:
                    samples.extend(_read_cache(cached, subj.sid))
                    continue
                except (OSError, ValueError, KeyError):
                    log.warning("ignoring unreadable cache file %s", cached)
        try:
            study = subj.load()
        except GeminiError as exc:
            msg = _message(exc)
            raise DataError(msg if msg.startswith(f"subject {subj.sid}: ") else f"subject {subj.sid}: {msg}",
                            exc.path or subj.files[0]) from None
        problem = label_problem(study)
        if problem:
            raise DataError(f"subject {subj.sid}: {problem}", study.meta.source_path or subj.files[0])
        got = samples_from_study(study, subj.sid, percentile, roi_mm, context)
        if cached is not None:
            _write_cache(cached, got)
        samples.extend(got)
    return samples


def label_problem(study) -> str:
    """What makes a study that loads unfit for training (`StudyMeta.extra["label_problems"]`, set by the
    loaders: a label file without its image frame, an ED/ES frame without image or labels, labels on another
    grid), as one line; "" when nothing."""
    problems = list(study.meta.extra.get("label_problems") or [])
    if not problems:
        return ""
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def _message(exc: GeminiError) -> str:
    """A GeminiError's message without the file name it starts with."""
    text = str(exc)
    return text[len(exc.path) + 2:] if exc.path and text.startswith(exc.path + ": ") else text


def _structures_text(summary: dict) -> tuple[str, list[str]]:
    """("LV, Myo (9/18 slices)", [structures not annotated]) of a `structures_summary`."""
    from gemini_cmr.core.study import STRUCTURE_SHORT

    n = summary["labelled_slices"]
    parts, missing = [], []
    for key, count in summary["structures"].items():
        short = STRUCTURE_SHORT[key]
        if count == 0:
            missing.append(short)
        else:
            parts.append(short if count == n else f"{short} ({count}/{n} slices)")
    return ", ".join(parts) or "none", missing


def check_subject(subj: LRSubject, split: str, default_convention: str = "") -> dict:
    """One row of the per-subject check: id, group, split, ok, problem (one line), geometry, convention,
    structures (text and per-structure slice counts), labelled slices and phases. Nothing is written."""
    row = {"id": subj.sid, "group": subj.group, "split": split, "ok": False, "problem": "", "geometry": "",
           "convention": default_convention, "structures": "", "missing": [], "annotated": {},
           "labelled": "", "labelled_slices": 0, "n_phases": 0}
    try:
        st = subj.load()
    except GeminiError as exc:
        row["problem"] = _message(exc).removeprefix(f"subject {subj.sid}: ") + (
            f" ({Path(exc.path).name})" if exc.path else "")
        return row
    nt, nz, ny, nx = st.image.shape
    sx, sy, sz = (float(v) for v in st.grid.spacing)
    row["group"] = st.meta.group or subj.group
    row["geometry"] = f"{nz} x {ny} x {nx}, {sx:.2f} x {sy:.2f} x {sz:.1f} mm, {nt} phase{'s' * (nt > 1)}"
    extra = st.meta.extra
    row["convention"] = extra.get("convention", default_convention)
    if extra.get("convention_note") and extra["convention_note"] != "chosen":
        row["convention"] += f" ({extra['convention_note']})"
    problem = label_problem(st)  # labels on another grid, a label file without its frame, ...
    if problem:
        row["problem"] = problem
        return row
    if not st.has_labels:
        row["problem"] = "no labelled slice"
        return row
    ann = annotation(st)
    summary = structures_summary(ann)
    row["labelled_slices"] = summary["labelled_slices"]
    row["n_phases"] = len(summary["labelled_phases"])
    row["annotated"] = summary["structures"]
    row["structures"], row["missing"] = _structures_text(summary)
    ed, es = st.meta.ed_phase, st.meta.es_phase
    row["labelled"] = (f"{summary['labelled_slices']} slices in phase{'s' * (len(summary['labelled_phases']) > 1)} "
                       f"{', '.join(map(str, summary['labelled_phases']))}"
                       + (f" (ED {ed}, ES {es})" if ed is not None and es is not None else ""))
    if summary["labelled_slices"] == 0 or not any(summary["structures"].values()):
        row["problem"] = "no labelled slice"
    elif nz < 2:
        row["problem"] = "the stack has a single slice"
    else:
        row["ok"] = True
    return row


def check_lr_subjects(kind: str, root: str | Path, holdout=None, doc: dict | None = None,
                      progress=None, cancel=None) -> list[dict]:
    """`check_subject` for every subject of an LR-labelled source (`doc`: a pairs manifest's contents,
    paths relative to `root`'s folder); `holdout` subject ids are marked "val" (held out). `progress(f,
    msg)`, `cancel()` as the engine's."""
    from gemini_cmr.core.errors import Cancelled

    subjects = manifest_subjects(root, doc) if kind == "pairs" else lr_subjects(kind, root)
    splits = subject_split(kind, subjects, holdout=holdout)
    default = {"acdc": "acdc", "mnms": "mnms", "ukbb": "ukbb"}.get(kind, "")
    rows = []
    for i, subj in enumerate(subjects):
        if cancel is not None and cancel():
            raise Cancelled("check cancelled")
        if progress is not None:
            progress(i / len(subjects), f"checking {subj.sid}")
        rows.append(check_subject(subj, splits[subj.sid], default))
    return rows


def load_acdc_split(root: str | Path, split: str, percentile: float = DEFAULT_PERCENTILE,
                    cache_dir: str | Path | None = None) -> list[LRSample]:
    return load_lr_split("acdc", root, split, percentile, cache_dir)


def _write_cache(path: Path, samples: list[LRSample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, s in enumerate(samples):
        arrays[f"planes{i}"], arrays[f"labels{i}"], arrays[f"index{i}"] = s.planes, s.labels, s.slice_index
    arrays["meta"] = np.array([[s.phase, s.is_ed, s.is_es] for s in samples], np.int64)
    arrays["scale"] = np.array([s.scale for s in samples], np.float64)
    arrays["group"] = np.array([s.group for s in samples])
    for i, s in enumerate(samples):
        if s.context is not None:
            arrays[f"context{i}"] = s.context
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _read_cache(path: Path, sid: str) -> list[LRSample]:
    with np.load(path, allow_pickle=False) as z:
        meta, scale, group = z["meta"], z["scale"], z["group"]
        return [LRSample(sid, int(m[0]), z[f"planes{i}"], z[f"labels{i}"], z[f"index{i}"], float(scale[i]),
                         bool(m[1]), bool(m[2]), str(group[i]), z[f"context{i}"] if f"context{i}" in z else None)
                for i, m in enumerate(meta)]


@dataclass
class StackAugment:
    """Spatial and intensity augmentation of a stack of acquired slices (LR-label training), each applied
    with probability `p` (0 = all off). Spatial transforms are the same for every slice of the stack (a
    heart is rotated or scaled as a whole) except `slice_shift_px`, an in-plane offset drawn per slice like
    the breath-hold offsets between real acquisitions. Labels follow by nearest neighbour; positions beyond
    the field of view become background with intensity 0, as the crop's padding does."""

    p: float = 0.0
    rotate_deg: float = 180.0  # rotation in [-rotate_deg, rotate_deg]
    scale: tuple[float, float] = (0.8, 1.25)  # zoom (1.25 = 25% larger anatomy), log-uniform
    elastic_px: float = 0.0  # amplitude (SR pixels) of a smooth random displacement; 0 = off
    slice_shift_px: float = 0.0  # per-slice shift, normal sd (SR pixels); 0 = off
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.75, 1.25)
    blur_px: float = 1.0  # Gaussian sigma in [0.5, blur_px] (SR pixels)
    lowres: float = 0.5  # resolution loss: down by a factor in [lowres, 1], back up (linear)
    # Rician noise (magnitude of complex Gaussian noise added to the signal) of sigma in [0, rician] of the
    # planes' normalised intensity (1 = the 99.5th percentile); 0 = off
    rician: float = 0.0
    transpose: float = 0.0  # probability of swapping rows and columns (square crops; labels follow)

    @classmethod
    def from_dict(cls, d: dict | None) -> StackAugment:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"unknown augmentation keys: {', '.join(unknown)}")
        for key in ("scale", "gamma", "contrast"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)

    def spatial(self, rng: np.random.Generator, n: int, h: int, w: int, cy: float, cx: float
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """Source (y, x) coordinates (n, h, w) of an output crop of h x w centred at (cy, cx), or None when
        no spatial transform was drawn."""
        rot = self.p > 0 and self.rotate_deg > 0 and rng.random() < self.p
        scl = self.p > 0 and rng.random() < self.p
        ela = self.p > 0 and self.elastic_px > 0 and rng.random() < self.p
        shf = self.p > 0 and self.slice_shift_px > 0 and rng.random() < self.p
        if not (rot or scl or ela or shf):
            return None
        theta = np.deg2rad(rng.uniform(-self.rotate_deg, self.rotate_deg)) if rot else 0.0
        zoom = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1])))) if scl else 1.0
        c, s = np.cos(theta) / zoom, np.sin(theta) / zoom
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        v -= (h - 1) / 2
        u -= (w - 1) / 2
        ys = cy + c * v - s * u
        xs = cx + s * v + c * u
        if ela:
            from scipy.ndimage import gaussian_filter

            sigma = max(h, w) / 8
            for a in (ys, xs):
                f = gaussian_filter(rng.normal(size=(h, w)), sigma)
                a += f * (self.elastic_px * rng.uniform(0.5, 1.0) / (np.abs(f).max() + 1e-9))
        ys, xs = np.broadcast_to(ys, (n, h, w)).copy(), np.broadcast_to(xs, (n, h, w)).copy()
        if shf:
            ys += rng.normal(0, self.slice_shift_px, n)[:, None, None]
            xs += rng.normal(0, self.slice_shift_px, n)[:, None, None]
        return ys, xs

    def intensity(self, rng: np.random.Generator, planes: np.ndarray) -> np.ndarray:
        """Gamma, contrast, blur, resolution loss and Rician noise of (n, h, w) float32 planes (same draw for the
        stack; the noise itself new in every pixel). Off options draw nothing from `rng`, so a config without
        them reproduces its earlier runs."""
        if self.p <= 0:
            return planes
        from scipy import ndimage

        if rng.random() < self.p:
            lo, hi = float(planes.min()), float(planes.max())
            if hi > lo:
                g = float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
                planes = (((planes - lo) / (hi - lo)) ** g * (hi - lo) + lo).astype(np.float32)
        if rng.random() < self.p:
            mean = float(planes.mean())
            planes = ((planes - mean) * np.float32(rng.uniform(*self.contrast)) + mean).astype(np.float32)
        if self.blur_px > 0.5 and rng.random() < self.p:
            planes = ndimage.gaussian_filter(planes, (0, *[rng.uniform(0.5, self.blur_px)] * 2)).astype(np.float32)
        if self.lowres < 1 and rng.random() < self.p:
            f = rng.uniform(self.lowres, 1.0)
            n, h, w = planes.shape
            small = ndimage.zoom(planes, (1, f, f), order=1)
            planes = ndimage.zoom(small, (1, h / small.shape[1], w / small.shape[2]), order=1)[:, :h, :w]
            planes = np.ascontiguousarray(planes, dtype=np.float32)
        if self.rician > 0 and rng.random() < self.p:
            sigma = rng.uniform(0, self.rician)
            planes = add_rician_normal(np.clip(planes, 0, None), sigma, rng, np.float32).astype(np.float32)
        return planes

    def transposed(self, rng: np.random.Generator, planes: np.ndarray, labels: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Planes (c, h, w) and labels (n, h, w) with rows and columns swapped, with probability `transpose`
        (square crops only)."""
        if self.transpose > 0 and planes.shape[-1] == planes.shape[-2] and rng.random() < self.transpose:
            return planes.transpose(0, 2, 1), labels.transpose(0, 2, 1)
        return planes, labels


class LRItems:
    """(sample, depth window) items for a network depth D, with augmentation.

    get() -> x (D, h, w) float32 (acquired slices placed on the SR slices, zero depth padding),
    labels (D, h, w) int64 (the manual labels of acquired slice j of the window at row j, IGNORE beyond),
    slab (D,) int64 (row j of the acquired slice of every SR slice, -1 for padding).
    Samples with a `context` (the cine's first phase): x is (D, 2, h, w), channel 0 the phase and channel 1
    the first phase on the same slices, both under the same spatial and intensity augmentation (noise
    drawn for each), so that `drop_every_other` removes the same slices from both.
    Augmentation: heart-centred crop with jitter (else uniform), flips, gain, Gaussian noise drawn per
    acquired slice (identical on the SR slices that repeat it, so they stay identical).
    """

    def __init__(self, samples: list[LRSample], depth: int, multiple: int = 16):
        self.samples = samples
        self.depth = depth
        self.multiple = multiple
        self.items = [(si, start, off) for si, s in enumerate(samples)
                      for start, off in depth_windows(len(s.slice_index), depth)]
        self._centres = [s.centre for s in samples]
        self._background = [slice_background(s.labels) for s in samples]

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, rng: np.random.Generator | None, aug=None, crop: int | None = None,
            extra: StackAugment | None = None):
        si, start, off = self.items[index]
        s = self.samples[si]
        dz = len(s.slice_index)
        _, h, w = s.planes.shape
        n = min(self.depth, dz)
        crop = (aug.crop if aug is not None else 0) if crop is None else crop
        if crop:
            ch = cw = crop
            cy, cx = self._centres[si]
            if rng is not None and aug is not None and rng.random() >= aug.heart_centred:
                y0 = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
                x0 = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
            else:
                if rng is not None:
                    cy += rng.uniform(-crop / 5, crop / 5)
                    cx += rng.uniform(-crop / 5, crop / 5)
                y0, x0 = int(round(cy - ch / 2)), int(round(cx - cw / 2))
        else:
            ch, cw = h + (-h) % self.multiple, w + (-w) % self.multiple
            y0, x0 = -((ch - h) // 2), -((cw - w) // 2)
        idx = s.slice_index[start:start + n]
        j0, j1 = int(idx.min()), int(idx.max()) + 1
        nj = j1 - j0
        coords = None
        if rng is not None and extra is not None:
            coords = extra.spatial(rng, nj, ch, cw, y0 + (ch - 1) / 2, x0 + (cw - 1) / 2)
        bg = self._background[si][j0:j1]
        sources = [s.planes] if s.context is None else [s.planes, s.context]
        c = len(sources)
        planes = np.zeros((c * nj, ch, cw), np.float32)  # channel k's slices at rows k * nj ...
        if coords is not None:
            from scipy.ndimage import map_coordinates

            labels = np.empty((nj, ch, cw), np.int64)
            for j in range(nj):
                yx = [coords[0][j], coords[1][j]]
                for k, src in enumerate(sources):
                    planes[k * nj + j] = map_coordinates(src[j0 + j].astype(np.float32), yx, order=1,
                                                         mode="constant")
                labels[j] = map_coordinates(s.labels[j0 + j], yx, order=0, mode="constant", cval=int(bg[j]))
        else:
            labels = np.broadcast_to(bg.astype(np.int64)[:, None, None], (nj, ch, cw)).copy()
            sy0, sy1, sx0, sx1 = max(0, y0), min(h, y0 + ch), max(0, x0), min(w, x0 + cw)
            if sy1 > sy0 and sx1 > sx0:
                for k, src in enumerate(sources):
                    planes[k * nj:(k + 1) * nj, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = src[j0:j1, sy0:sy1, sx0:sx1]
                labels[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = s.labels[j0:j1, sy0:sy1, sx0:sx1]
        if rng is not None and extra is not None:
            planes = extra.intensity(rng, planes)
            planes, labels = extra.transposed(rng, planes, labels)
        if rng is not None and aug is not None:
            if aug.flip and rng.random() < 0.5:
                planes, labels = planes[:, ::-1], labels[:, ::-1]
            if aug.flip and rng.random() < 0.5:
                planes, labels = planes[:, :, ::-1], labels[:, :, ::-1]
            planes = planes * np.float32(rng.uniform(1 - aug.gain, 1 + aug.gain))
            sigma = rng.uniform(0, aug.noise)
            if sigma > 0:
                planes = planes + rng.normal(0, sigma, planes.shape).astype(np.float32)
        slab = np.full(self.depth, -1, np.int64)
        slab[off:off + n] = idx - j0
        if c == 1:
            x = np.zeros((self.depth, ch, cw), np.float32)
            x[off:off + n] = planes[idx - j0]
        else:
            x = np.zeros((self.depth, c, ch, cw), np.float32)
            x[off:off + n] = planes.reshape(c, nj, ch, cw)[:, idx - j0].transpose(1, 0, 2, 3)
        lab = np.full((self.depth, ch, cw), IGNORE, np.int64)
        lab[:nj] = labels
        return np.ascontiguousarray(x), np.ascontiguousarray(lab), slab


def drop_every_other(x: np.ndarray, slab: np.ndarray, parity: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A training stack (`LRItems.get`'s x (D, h, w) and slab (D,)) with every other acquired slice removed
    (the acquired rows j with j % 2 != parity), as if acquired at twice the spacing: each removed slice's
    SR slices are split at its centre between its two neighbours (the nearer one's image; depth padding
    where that neighbour is not in the stack), and a kept slice at either end of the stack grows into the
    depth padding beyond it so that its SR slices stay centred on it. Returns (x, slab, drop), drop (D,)
    the removed slice's row at its centre SR slice(s) where both neighbours are kept (-1 elsewhere), or
    None when fewer than two slices would be kept or no removed slice lies between two kept ones."""
    rows = np.unique(slab[slab >= 0]).tolist()
    present = set(rows)
    kept = [j for j in rows if j % 2 == parity]
    inner = [j for j in rows if j % 2 != parity and j - 1 in present and j + 1 in present]
    if len(kept) < 2 or not inner:
        return None
    x2, slab2 = x.copy(), slab.copy()
    drop = np.full(slab.shape, -1, np.int64)
    runs = {j: np.flatnonzero(slab == j) for j in rows}
    for j in rows:
        if j % 2 == parity:
            continue
        r = runs[j]
        c = (r[0] + r[-1]) / 2
        for part, nb in ((r[r <= c], j - 1), (r[r > c], j + 1)):
            if nb in present:
                x2[part], slab2[part] = x[runs[nb][0]], nb
            else:
                x2[part], slab2[part] = 0, -1
        if j in inner:
            drop[sorted({int(np.floor(c)), int(np.ceil(c))})] = j
    for j in kept:  # centre each kept slice's run on the slice where depth padding allows
        centre = (runs[j][0] + runs[j][-1]) / 2
        r = np.flatnonzero(slab2 == j)
        a, b = int(r[0]), int(r[-1])
        a2, b2 = max(0, int(np.ceil(2 * centre - b))), min(len(slab) - 1, int(np.floor(2 * centre - a)))
        for lo, hi in ((a2, a), (b + 1, b2 + 1)):
            if lo < hi and (slab2[lo:hi] == -1).all():
                x2[lo:hi], slab2[lo:hi] = x[runs[j][0]], j
    return x2, slab2, drop


def class_frequencies(samples: list[LRSample], n_classes: int = 4) -> np.ndarray:
    counts = np.zeros(n_classes, np.float64)
    for s in samples:
        counts += np.bincount(s.labels.ravel(), minlength=n_classes)[:n_classes]
    return counts / max(1.0, counts.sum())
