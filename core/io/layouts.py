"""Research dataset layouts on NIfTI: ACDC, M&Ms, UK Biobank; label files paired by name; label remapping.

Every source numbers its structures differently, and a wrong mapping silently swaps LV and RV, so labels
are remapped here, on import, to the project convention (0 background, 1 LV cavity, 2 LV myocardium,
3 RV cavity); values a source does not define are an error rather than being guessed.

- ACDC: `patientNNN/` with `Info.cfg` (ED/ES frame numbers, 1-based; height cm; weight kg; group),
  `patientNNN_frameXX.nii.gz` + `_gt`, optional `patientNNN_4d.nii.gz`. Labels 1 RV, 2 myo, 3 LV.
- M&Ms: `<code>/<code>_sa.nii.gz` (4D) + `<code>_sa_gt.nii.gz` (ED and ES labelled). Labels 1 LV, 2 myo, 3 RV.
- M&Ms-2: `<id>/<id>_SA_CINE.nii.gz` (4D), `<id>_SA_ED.nii.gz` / `_SA_ES.nii.gz` (the labelled frames) +
  `_SA_ED_gt` / `_SA_ES_gt` (labels 1 LV, 2 myo, 3 RV); the frames are found in the cine by their pixels; without
  the cine, the ED and ES frames are a two-phase study. The `_LA_` files beside are long-axis cines (`core.longaxis`).
- UK Biobank (ukbb_cardiac): `sa.nii.gz` (4D) + `label_sa.nii.gz` or `seg_sa.nii.gz`. Labels 1 LV, 2 myo, 3 RV.
- UK Digital Heart label maps: 1 LV, 2 myo, 4 RV (source "ukdhp").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gemini_cmr.core.errors import DataError, StudyError
from gemini_cmr.core.io.nifti import load_nifti_volume, phase_interval_ms
from gemini_cmr.core.study import Study, StudyMeta

#: source -> {file label value: project label value}
LABEL_MAPS: dict[str, dict[int, int]] = {
    "project": {0: 0, 1: 1, 2: 2, 3: 3},
    "acdc": {0: 0, 1: 3, 2: 2, 3: 1},
    "mnms": {0: 0, 1: 1, 2: 2, 3: 3},
    "ukbb": {0: 0, 1: 1, 2: 2, 3: 3},
    "ukdhp": {0: 0, 1: 1, 2: 2, 4: 3},
}

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_ACDC_FRAME = re.compile(r"^(patient\d+)_frame(\d+)(_gt)?\.nii(\.gz)?$")
_ACDC_4D = re.compile(r"^(patient\d+)_4d\.nii(\.gz)?$")
_MNMS_SA = re.compile(r"^(.+)_sa\.nii(\.gz)?$")
_MNMS2_SA = re.compile(r"^(?P<id>.+)_SA_(?P<kind>CINE|ED|ES)\.nii(\.gz)?$")
#: A labelled M&Ms-2 frame matches a cine phase when their mean absolute difference is below this fraction of the
#: frame's mean magnitude (the same pixels, written twice).
MNMS2_FRAME_TOLERANCE = 0.01


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


# --- labels ---------------------------------------------------------------------------------------------
def remap_labels(labels: np.ndarray, source: str, name: str | Path, mapping: Mapping[int, int] | None = None,
                 error: type[Exception] = StudyError, what: str = "labels") -> np.ndarray:
    """Map a source's label values to the project convention (`mapping`, default `LABEL_MAPS[source]`);
    non-integer or unknown values -> `error` (default `StudyError`) naming `name`."""
    mapping = LABEL_MAPS[source] if mapping is None else mapping
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise error("label map holds non-integer values", name)
        labels = np.round(labels).astype(np.int64)
    values = np.unique(labels)
    unknown = sorted(int(v) for v in values if int(v) not in mapping)
    if unknown:
        raise error(f"unexpected label values {unknown} for {source} {what} "
                    f"(expected {sorted(mapping)})", name)
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[labels.astype(np.int64)]


OTHER_GRID = "labels on another grid than their image (the affines differ)"


def _check_labels_fit(labels: np.ndarray, image_shape: tuple, lab_affine: np.ndarray, img_affine: np.ndarray,
                      name: str, warn: list[str]) -> bool:
    """Refuse labels of another shape than the image; warn (and return False) when their affine differs."""
    if tuple(labels.shape) != tuple(image_shape):
        raise StudyError(f"label shape {labels.shape} does not match image shape {tuple(image_shape)}", name)
    if not np.allclose(lab_affine, img_affine, atol=1e-3):
        warn.append(f"{name}: label affine differs from the image affine; used the image geometry")
        return False
    return True


# --- ACDC -------------------------------------------------------------------------------------------------
def read_info_cfg(path: Path) -> dict[str, str]:
    """`Key: value` lines of an ACDC Info.cfg."""
    out: dict[str, str] = {}
    try:
        with open(path, "rb") as f:  # a few lines; never read more than 1 MiB (a link to /dev/zero, ...)
            text = f.read(1024**2).decode("utf-8", errors="replace")
    except OSError as exc:
        raise StudyError(f"cannot read ({exc.strerror})", str(path)) from None
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def _cfg_float(cfg: dict[str, str], key: str, name: str) -> float | None:
    if key not in cfg:
        return None
    try:
        return float(cfg[key])
    except ValueError:
        raise StudyError(f"{key} is not a number: {cfg[key]!r}", name) from None


def is_acdc_folder(folder: Path) -> bool:
    return (folder / "Info.cfg").is_file() or any(_ACDC_FRAME.match(p.name) for p in folder.iterdir())


def load_acdc(folder: Path) -> Study:
    """An ACDC patient folder: the 4D cine when present, else the ED/ES frames; labels remapped."""
    folder = Path(folder)
    where = str(folder)
    warn: list[str] = []
    frames, gts, four_d = _acdc_files(folder)
    if not frames and four_d is None:
        raise StudyError("ACDC folder without patientNNN_frameXX.nii.gz or patientNNN_4d.nii.gz images", where)
    cfg_path = folder / "Info.cfg"
    cfg = read_info_cfg(cfg_path) if cfg_path.is_file() else {}
    if not cfg:
        warn.append("no Info.cfg: ED/ES, height and weight unknown")
    if four_d is not None:
        image, affine, frame_to_phase, phase_times = _acdc_4d(four_d, warn)
    else:
        image, affine, frame_to_phase = _acdc_frames(frames, warn)
        phase_times = None
    # what makes the folder unfit for training though it loads (`StudyMeta.extra["label_problems"]`)
    problems: list[str] = []
    labels, labelled = _acdc_labels(gts, image.shape, affine, frame_to_phase, warn, problems)

    def phase_of(key: str) -> int | None:
        value = _cfg_float(cfg, key, str(cfg_path))
        if value is None:
            return None
        if int(value) not in frame_to_phase:
            warn.append(f"Info.cfg {key} frame {int(value)} is not in the image; {key} unknown")
            problems.append(f"Info.cfg {key} frame {int(value)}: no image of that frame")
            return None
        if int(value) not in gts:
            problems.append(f"Info.cfg {key} frame {int(value)}: no labels (no {folder.name}_frame"
                            f"{int(value):02d}_gt.nii.gz)")
        return frame_to_phase[int(value)]

    n_frames = _cfg_float(cfg, "NbFrame", str(cfg_path))
    if four_d is not None and n_frames is not None and int(n_frames) != image.shape[0]:
        warn.append(f"Info.cfg says {int(n_frames)} frames, the 4D image has {image.shape[0]}")
    meta = StudyMeta(
        source_path=where,
        format="acdc",
        patient_id=folder.name,
        ed_phase=phase_of("ED"),
        es_phase=phase_of("ES"),
        height_cm=_cfg_float(cfg, "Height", str(cfg_path)),
        weight_kg=_cfg_float(cfg, "Weight", str(cfg_path)),
        group=cfg.get("Group", ""),
        warnings=warn,
        extra={"frame_numbers": sorted(frame_to_phase, key=frame_to_phase.get),
               **({"label_problems": problems} if problems else {})},
    )
    return Study(image=image, affine=affine, phase_times_ms=phase_times, labels=labels,
                 labelled_phases=labelled, meta=meta)


def _acdc_files(folder: Path) -> tuple[dict[int, Path], dict[int, Path], Path | None]:
    """Frame images and label files by frame number (1-based, as in the names), and the 4D file."""
    frames: dict[int, Path] = {}
    gts: dict[int, Path] = {}
    four_d: Path | None = None
    for p in sorted(folder.iterdir()):
        if m := _ACDC_FRAME.match(p.name):
            (gts if m.group(3) else frames)[int(m.group(2))] = p
        elif _ACDC_4D.match(p.name):
            four_d = p
    return frames, gts, four_d


def _acdc_4d(path: Path, warn: list[str]) -> tuple[np.ndarray, np.ndarray, dict[int, int], np.ndarray | None]:
    image, affine, header, w = load_nifti_volume(path)
    warn += w
    if image.ndim == 3:
        image = image[None]
    interval = phase_interval_ms(header)
    phase_times = None if interval is None else np.arange(image.shape[0]) * interval
    return image, affine, {n: n - 1 for n in range(1, image.shape[0] + 1)}, phase_times


def _acdc_frames(frames: dict[int, Path], warn: list[str]) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Without the 4D file the study is the stack of the frames present (ACDC ships ED and ES)."""
    numbers = sorted(frames)
    volumes: list[np.ndarray] = []
    affine = None
    for n in numbers:
        vol, aff, _, w = load_nifti_volume(frames[n])
        if vol.ndim != 3:
            raise StudyError(f"expected a 3D frame, got shape {vol.shape}", str(frames[n]))
        if affine is None:
            affine = aff
            warn += w  # the same header fix applies to every frame: say it once
        elif vol.shape != volumes[0].shape or not np.allclose(aff, affine, atol=1e-3):
            raise StudyError("frame geometry differs from the other frames", str(frames[n]))
        volumes.append(vol)
    warn.append(f"no 4D cine: the study holds only frames {numbers} (ACDC ED/ES)")
    return np.stack(volumes), affine, {n: i for i, n in enumerate(numbers)}


def _acdc_labels(
    gts: dict[int, Path], shape: tuple, affine: np.ndarray, frame_to_phase: dict[int, int], warn: list[str],
    problems: list[str],
) -> tuple[np.ndarray | None, list[int]]:
    labels = None
    labelled = []
    for n, gt_path in sorted(gts.items()):
        if n not in frame_to_phase:
            warn.append(f"{gt_path.name}: frame {n} is not in the image; ignored")
            problems.append(f"{gt_path.name}: no image of frame {n}")
            continue
        gt, gt_affine, _, _ = load_nifti_volume(gt_path)  # label geometry is checked against the image
        if not _check_labels_fit(gt, shape[1:], gt_affine, affine, str(gt_path), warn):
            problems.append(f"{gt_path.name}: {OTHER_GRID}")
        if labels is None:
            labels = np.zeros(shape, dtype=np.uint8)
        labels[frame_to_phase[n]] = remap_labels(gt, "acdc", str(gt_path))
        labelled.append(frame_to_phase[n])
    return labels, sorted(labelled)


def load_acdc_file(path: Path) -> Study:
    """One file of an ACDC patient folder: the 4D file stands for the folder (it gains the labelled
    frames and ED/ES); a single frame loads with its `_gt` labels and the Info.cfg height and weight."""
    path = Path(path)
    if _ACDC_4D.match(path.name):
        return load_acdc(path.parent)
    study = load_paired_nifti(path, fmt="acdc")
    cfg_path = path.parent / "Info.cfg"
    if cfg_path.is_file():
        cfg = read_info_cfg(cfg_path)
        study.meta.height_cm = _cfg_float(cfg, "Height", str(cfg_path))
        study.meta.weight_kg = _cfg_float(cfg, "Weight", str(cfg_path))
        study.meta.group = cfg.get("Group", "")
    return study


# --- files paired by name (M&Ms, UK Biobank, ACDC frames) ------------------------------------------------
def label_partner(image_path: Path) -> tuple[Path, str] | None:
    """The label file that belongs to an image file by naming convention, and its label source."""
    image_path = Path(image_path)
    stem = nifti_stem(image_path)
    folder = image_path.parent
    candidates: list[tuple[str, str]] = []
    if _ACDC_FRAME.match(image_path.name) or _ACDC_4D.match(image_path.name):
        candidates.append((f"{stem}_gt", "acdc"))
    elif stem == "sa" or stem.startswith("sa_"):
        candidates += [(f"label_{stem}", "ukbb"), (f"seg_{stem}", "ukbb")]
    elif _MNMS_SA.match(image_path.name):
        candidates.append((f"{stem}_gt", "mnms"))
    else:
        candidates += [(f"{stem}_gt", "project"), (f"{stem}_labels", "project"), (f"{stem}_seg", "project")]
    for label_stem, source in candidates:
        for suffix in NIFTI_SUFFIXES:
            p = folder / f"{label_stem}{suffix}"
            if p.is_file():
                return p, source
    return None


def is_label_file(path: Path) -> bool:
    stem = nifti_stem(path)
    return (stem.endswith(("_gt", "_labels", "_seg")) or stem.startswith(("label_", "seg_"))
            or stem in ("lr_labels", "hr_labels"))


def study_from_nifti(
    path: Path, labels_path: Path | None = None, label_source: str = "project", fmt: str = "nifti"
) -> Study:
    """One NIfTI image (3D or 4D) with optional labels paired by name."""
    path = Path(path)
    image, affine, header, warn = load_nifti_volume(path)
    if image.ndim == 3:
        image = image[None]
    interval = phase_interval_ms(header)
    phase_times = None if interval is None or image.shape[0] < 2 else np.arange(image.shape[0]) * interval
    labels = None
    problems: list[str] = []
    if labels_path is not None:
        raw, lab_affine, _, _ = load_nifti_volume(labels_path)  # geometry is checked against the image
        if raw.ndim == 3:
            raw = raw[None]
        if not _check_labels_fit(raw, image.shape, lab_affine, affine, str(labels_path), warn):
            problems.append(f"{Path(labels_path).name}: {OTHER_GRID}")
        labels = remap_labels(raw, label_source, str(labels_path))
    meta = StudyMeta(source_path=str(path), format=fmt, patient_id=_subject_name(path), warnings=warn,
                     extra={} if labels_path is None else {"labels_path": str(labels_path),
                                                           "label_source": label_source,
                                                           **({"label_problems": problems} if problems else {})})
    return Study(image=image, affine=affine, phase_times_ms=phase_times, labels=labels, meta=meta)


def _subject_name(path: Path) -> str:
    stem = nifti_stem(path)
    if stem == "sa" or stem.startswith("sa_"):
        return path.parent.name
    return stem


def find_layout_image(folder: Path) -> tuple[Path, str] | None:
    """The main image of an M&Ms, M&Ms-2 or UK Biobank subject folder, and the layout name ("mnms2": the
    `<id>_SA_CINE`, else `<id>_SA_ED` or `_SA_ES` of the folder's one subject; `load_mnms2` reads it)."""
    for suffix in NIFTI_SUFFIXES:
        if (folder / f"sa{suffix}").is_file():
            return folder / f"sa{suffix}", "ukbb"
    for suffix in NIFTI_SUFFIXES:
        if (folder / f"{folder.name}_sa{suffix}").is_file():
            return folder / f"{folder.name}_sa{suffix}", "mnms"
    try:
        ids = {m.group("id") for p in folder.iterdir() if (m := _MNMS2_SA.match(p.name)) and p.is_file()}
    except OSError:
        return None
    if len(ids) == 1:
        found = _mnms2_files(folder, ids.pop())
        main = found["CINE"] or found["ED"] or found["ES"]
        if main is not None:
            return main, "mnms2"
    return None


def is_mnms2_image(path: Path) -> bool:
    """An M&Ms-2 short-axis image file (`<id>_SA_CINE`, `_SA_ED`, `_SA_ES`; not a `_gt` file)."""
    return _MNMS2_SA.match(Path(path).name) is not None


def _mnms2_files(folder: Path, sid: str) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for key in ("CINE", "ED", "ES", "ED_gt", "ES_gt"):
        out[key] = next((folder / f"{sid}_SA_{key}{x}" for x in NIFTI_SUFFIXES
                         if (folder / f"{sid}_SA_{key}{x}").is_file()), None)
    return out


def load_mnms2(path: Path) -> Study:
    """An M&Ms-2 subject (`path`: its folder's `<id>_SA_CINE`, `_SA_ED` or `_SA_ES` image): the 4D cine with the
    labels of the ED and ES frames (`_SA_ED_gt`, `_SA_ES_gt`) at the cine phases those frames match; without the
    cine, the ED and ES frames as a two-phase study. ED/ES are the labelled frames' phases."""
    path = Path(path)
    m = _MNMS2_SA.match(path.name)
    if m is None:
        raise StudyError("not an M&Ms-2 short-axis image (<id>_SA_CINE, _SA_ED or _SA_ES)", str(path))
    sid, folder = m.group("id"), path.parent
    files = _mnms2_files(folder, sid)
    warn: list[str] = []
    phase_of: dict[str, int] = {}
    frames: dict[str, np.ndarray] = {}
    ref_affine = None
    for k in ("ED", "ES"):
        if files[k] is not None:
            vol, aff, _, w = load_nifti_volume(files[k])
            if vol.ndim == 4 and vol.shape[0] == 1:
                vol = vol[0]
            if vol.ndim != 3:
                raise StudyError(f"expected a 3D frame, got shape {vol.shape}", str(files[k]))
            if ref_affine is None:
                warn += w
                ref_affine = aff
            frames[k] = vol
    phase_times = None
    if files["CINE"] is not None:
        source = files["CINE"]
        image, affine, header, w = load_nifti_volume(source)
        warn += w
        if image.ndim == 3:
            image = image[None]
        interval = phase_interval_ms(header)
        phase_times = None if interval is None or image.shape[0] < 2 else np.arange(image.shape[0]) * interval
        for k, vol in frames.items():
            if vol.shape != image.shape[1:]:
                raise StudyError(f"frame size {vol.shape} does not match the cine's {image.shape[1:]} "
                                 f"({source.name})", str(files[k]))
            err = np.abs(image - vol[None]).reshape(len(image), -1).mean(axis=1)
            phase_of[k] = int(np.argmin(err))
            scale = float(np.abs(vol).mean())
            if err[phase_of[k]] > MNMS2_FRAME_TOLERANCE * max(scale, 1e-12):
                warn.append(f"{files[k].name} is not a frame of {source.name}: its labels go to the nearest phase "
                            f"({phase_of[k]})")
    else:
        have = [k for k in ("ED", "ES") if k in frames]
        if not have:
            raise StudyError(f"no M&Ms-2 short-axis image ({sid}_SA_CINE, _SA_ED or _SA_ES)", str(path))
        if len(have) == 2 and (frames["ED"].shape != frames["ES"].shape):
            raise StudyError("frame geometry differs from the ED frame's", str(files["ES"]))
        image = np.stack([frames[k] for k in have])
        affine = ref_affine
        source = files[have[0]]
        phase_of = {k: i for i, k in enumerate(have)}
        warn.append(f"no {sid}_SA_CINE: the study holds only the {'/'.join(have)} frames")
    labels = None
    labelled = []
    lab_paths = []
    problems: list[str] = []
    for k in ("ED", "ES"):
        gt = files[f"{k}_gt"]
        if gt is not None and k not in phase_of:
            warn.append(f"{gt.name}: no {k} image; ignored")
            problems.append(f"{gt.name}: no {k} image")
        if gt is None or k not in phase_of:
            continue
        raw, lab_affine, _, _ = load_nifti_volume(gt)
        if raw.ndim == 4 and raw.shape[0] == 1:
            raw = raw[0]
        if not _check_labels_fit(raw, image.shape[1:], lab_affine, affine, str(gt), warn):
            problems.append(f"{gt.name}: {OTHER_GRID}")
        if labels is None:
            labels = np.zeros(image.shape, np.uint8)
        labels[phase_of[k]] = remap_labels(raw, "mnms", str(gt))
        labelled.append(phase_of[k])
        lab_paths.append(str(gt))
    meta = StudyMeta(source_path=str(source), format="mnms2", patient_id=sid, ed_phase=phase_of.get("ED"),
                     es_phase=phase_of.get("ES"), warnings=warn,
                     extra={**({"labels_path": ", ".join(lab_paths), "label_source": "mnms"} if lab_paths else {}),
                            **({"label_problems": problems} if problems else {})})
    return Study(image=image, affine=affine, phase_times_ms=phase_times, labels=labels,
                 labelled_phases=sorted(set(labelled)), meta=meta)


def load_paired_nifti(path: Path, fmt: str = "nifti") -> Study:
    """A NIfTI image plus the label file paired with it by name, when one exists."""
    partner = label_partner(path)
    if partner is None:
        return study_from_nifti(path, fmt=fmt)
    labels_path, source = partner
    return study_from_nifti(path, labels_path, source, fmt=fmt)


# --- the ACDC training folder: patients and the fixed validation split ---------------------------------
ACDC_PATIENT = re.compile(r"^patient(\d+)$")


def acdc_split(patient: str) -> str:
    """Fixed split: patient number % 5 == 0 -> "val", else "train"."""
    m = ACDC_PATIENT.match(patient)
    if not m:
        raise DataError(f"not an ACDC patient folder name: {patient}")
    return "val" if int(m.group(1)) % 5 == 0 else "train"


def acdc_subjects(root: str | Path) -> list[tuple[str, Path, str]]:
    """[(patient id, folder, split)] of an ACDC training folder (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("ACDC folder not found", root)
    out = [(p.name, p, acdc_split(p.name)) for p in sorted(root.iterdir()) if p.is_dir() and ACDC_PATIENT.match(p.name)]
    if not out:
        raise DataError("no patientNNN folders: not the ACDC training layout", root)
    return out
