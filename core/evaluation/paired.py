"""Evaluation on a paired dataset (LR cine + HR truth; `manifest.json`, docs/DEVELOPING.md).

One subject reader and one set of per-phase metrics, used by `gemini-cmr evaluate`, the training
validation of a model (`evaluate_model`, with the cubic B-spline baseline), the paper's comparison tables
(`core.baselines`) and the V-AMA phantom table.

Per subject, at ED and ES (the manifest's phases; else the max/min of the ground-truth LV cavity volume),
the prediction is compared with the HR truth on the SR grid (HR files not exactly on it are resampled by
world coordinates: image linear, labels nearest):
- Dice per structure: 3D volumetric (primary) and the paper's slice-wise variant;
- PSNR and SSIM (3D, 7x7x7 window) of the SR image, data range = the HR image's range (max - min) in that
  phase; the paper's slice-wise variants (PSNR per 2D slice on the slices with ground-truth labels, SSIM
  per slice) and the PSNR within `HEART_MARGIN_MM` of the labelled heart;
- phenotype errors, SR labels minus HR labels (`evaluate_dataset`): bias and 95% limits of agreement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.evaluation import metrics
from gemini_cmr.core.evaluation.report import PHENOTYPES, format_mean_sd_entry, mean_sd_entry
from gemini_cmr.core.geometry import matching_sr_grid, resample
from gemini_cmr.core.io.manifest import MANIFEST_NAME, read_manifest, select_subjects, subject_file
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.phenotypes import compute_phenotypes, ed_es_from_curve, volume_curves
from gemini_cmr.core.study import STRUCTURE_NAMES, STRUCTURE_SHORT, STRUCTURES, Grid, Study, StudyMeta

PHASES = ("ED", "ES")
Progress = Callable[[float, str], None]


# --- grids ---------------------------------------------------------------------------------------------
def labels_on_sr(labels: np.ndarray, hr: Grid, sr: Grid) -> np.ndarray:
    """HR truth labels of one phase on the SR grid (as they are when the grids agree, else nearest)."""
    labels = np.rint(labels).astype(np.uint8)
    if hr == sr:
        return labels
    return resample(labels, hr, sr, order=0, mode="nearest")


def image_on_sr(image: np.ndarray, hr: Grid, sr: Grid) -> np.ndarray:
    """HR truth image of one phase on the SR grid (as it is when the grids agree, else linear)."""
    image = np.asarray(image, dtype=np.float32)
    if hr == sr:
        return image
    return resample(image, hr, sr, order=1, mode="nearest")


# --- one subject ---------------------------------------------------------------------------------------
def _read4d(root: Path, entry: dict, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not entry.get(key):
        return None
    path = subject_file(root, entry, key)
    try:
        arr, aff, _ = read_nifti_array(path)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"subject {entry['id']}: cannot read {key} ({exc.__class__.__name__}: {exc})",
                        path) from None
    return (arr[None] if arr.ndim == 3 else arr), aff


class PairedSubject:
    """One labelled subject of a paired dataset: the LR cine (+ LR labels), its grids and ED/ES, and the HR
    truth of any phase on the SR grid (`truth(t)`). `DataError` naming the subject on problems."""

    def __init__(self, root: str | Path, entry: dict[str, Any]):
        root = Path(root)
        self.root, self.entry = root, entry
        self.id = str(entry["id"])
        lr_img, lr_aff = _read4d(root, entry, "lr_image") or (None, None)
        if lr_img is None:
            raise DataError(f"subject {self.id}: no lr_image", root / MANIFEST_NAME)
        hr_img = _read4d(root, entry, "hr_image")
        hr_lab = _read4d(root, entry, "hr_labels")
        if hr_img is None or hr_lab is None:
            raise DataError(f"subject {self.id}: no hr_image/hr_labels (the evaluation needs the HR truth)",
                            root / MANIFEST_NAME)
        lr_lab = _read4d(root, entry, "lr_labels")
        n_t = lr_img.shape[0]
        if hr_lab[0].shape[0] != n_t or hr_img[0].shape[0] != n_t:
            raise DataError(f"subject {self.id}: LR has {n_t} phases, HR {hr_img[0].shape[0]}/"
                            f"{hr_lab[0].shape[0]}", root / self.id)
        try:
            self.lr = Grid(lr_img.shape[1:], lr_aff)
            self.hr = Grid(hr_img[0].shape[1:], hr_img[1])
            self.hr_labels_grid = Grid(hr_lab[0].shape[1:], hr_lab[1])
        except ValueError as exc:
            raise DataError(f"subject {self.id}: invalid geometry ({exc})", root / str(entry["lr_image"])) from None
        self.lr_image = lr_img.astype(np.float32)
        self.lr_labels = None if lr_lab is None else lr_lab[0].astype(np.uint8)
        self.hr_image, self.hr_labels = hr_img[0], hr_lab[0]
        self.sr = matching_sr_grid(self.lr, self.hr)
        self.phases = self._ed_es(entry, n_t)
        self._truth: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _ed_es(self, entry: dict, n_t: int) -> dict[str, int]:
        ed, es = entry.get("ed_phase"), entry.get("es_phase")
        if ed is None or es is None:
            curve = volume_curves(self.hr_labels, 1.0)["lv_cavity"]
            ed_c, es_c = ed_es_from_curve(curve, list(range(n_t)))
            ed = ed_c if ed is None else ed
            es = es_c if es is None else es
        for key, t in (("ed_phase", ed), ("es_phase", es)):
            if not isinstance(t, int | np.integer) or not 0 <= int(t) < n_t:
                raise DataError(f"subject {self.id}: {key} {t!r} outside 0..{n_t - 1}", self.root / MANIFEST_NAME)
        return {"ED": int(ed), "ES": int(es)}

    def truth(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, labels) of phase `t` on the SR grid (computed once per phase)."""
        if t not in self._truth:
            self._truth[t] = (image_on_sr(self.hr_image[t], self.hr, self.sr),
                              labels_on_sr(self.hr_labels[t], self.hr_labels_grid, self.sr))
        return self._truth[t]

    def study(self) -> Study:
        """The LR cine as a `Study` (with the manifest's ED/ES and the LR labels when given)."""
        meta = StudyMeta(source_path=str(self.root / str(self.entry["lr_image"])), format="nifti",
                         patient_id=self.id, ed_phase=self.phases["ED"], es_phase=self.phases["ES"])
        return Study(image=self.lr_image, affine=self.lr.affine, labels=self.lr_labels, meta=meta)


def labelled_subjects(root: str | Path, split: str = "test") -> tuple[list[dict], int]:
    """(manifest entries of `split` that have HR truth, number of entries in the split without it)."""
    manifest = read_manifest(root, require=("lr_image",))
    entries = select_subjects(manifest, split)
    labelled = [e for e in entries if e.get("hr_image") and e.get("hr_labels")]
    if not labelled:
        raise DataError(f"no labelled subjects in split {split!r} (of {len(manifest['subjects'])} subjects)",
                        Path(root) / MANIFEST_NAME)
    return labelled, len(entries) - len(labelled)


# --- one phase -----------------------------------------------------------------------------------------
def phase_metrics(pred_labels: np.ndarray | None, pred_image: np.ndarray | None, truth_image: np.ndarray,
                  truth_labels: np.ndarray, sr: Grid) -> dict[str, Any]:
    """Every metric of one phase on the SR grid; NaN for what the method does not produce."""
    rng = float(truth_image.max() - truth_image.min()) or 1.0
    nan_dice = {s: math.nan for s in STRUCTURES.values()}
    out: dict[str, Any] = {
        "dice_3d": metrics.dice_per_structure(pred_labels, truth_labels) if pred_labels is not None else nan_dice,
        "dice_slicewise": (metrics.slicewise_dice_per_structure(pred_labels, truth_labels)
                           if pred_labels is not None else dict(nan_dice)),
        "data_range": rng,
    }
    out.update(image_metrics(pred_image, truth_image, truth_labels, sr, rng))
    return out


def image_metrics(image: np.ndarray | None, truth_image: np.ndarray, truth_labels: np.ndarray, sr: Grid,
                  data_range: float | None = None) -> dict[str, float]:
    """PSNR/SSIM of one SR image against the truth: 3D, slice-wise (the paper's) and near the heart."""
    rng = data_range if data_range is not None else (float(truth_image.max() - truth_image.min()) or 1.0)
    if image is None:
        return dict.fromkeys(("psnr", "ssim", "ssim_slicewise", "psnr_slicewise", "psnr_heart"), math.nan)
    small = min(image.shape) < 7
    near = metrics.heart_region(truth_labels, sr.spacing[::-1], metrics.HEART_MARGIN_MM)
    return {
        "psnr": metrics.psnr(image, truth_image, rng),
        "ssim": metrics.ssim(image, truth_image, rng, mode="slicewise" if small else "3d"),
        "ssim_slicewise": metrics.ssim(image, truth_image, rng, mode="slicewise"),
        "psnr_slicewise": metrics.slicewise_psnr(image, truth_image, truth_labels, rng),
        "psnr_heart": metrics.masked_psnr(image, truth_image, near, rng),
    }


# --- the engine on a dataset (`gemini-cmr evaluate`) ---------------------------------------------------
def evaluate_subject(subject: PairedSubject, resolver) -> dict[str, Any]:
    """Metrics and phenotypes (SR vs HR ground truth) of one subject, run through `resolver` (a
    `core.engine.SuperResolver`: the whole pipeline, V-AMA adapter included)."""
    ed, es = subject.phases["ED"], subject.phases["ES"]
    phases = sorted({ed, es})
    study = subject.study()
    t0 = time.perf_counter()
    result = resolver.run(study, phases=phases, meshes="none")
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"id": subject.id, "ed_phase": ed, "es_phase": es, "seconds": seconds, "phases": {}}
    truth = {t: subject.truth(t) for t in phases}
    for tag, t in (("ED", ed), ("ES", es)):
        row = result.phase_row(t)
        out["phases"][tag] = phase_metrics(result.sr_labels[row], result.sr_image[row], *truth[t], subject.sr)
    truth_labels = np.stack([truth[t][1] for t in phases])
    pred_ph = compute_phenotypes(result.sr_labels, result.sr_grid, phases=result.phases, meta=study.meta)
    true_ph = compute_phenotypes(truth_labels, subject.sr, phases=phases, meta=study.meta)
    out["phenotypes"] = {k: {"sr": pred_ph[k], "truth": true_ph[k]} for k, _, _ in PHENOTYPES}
    return out


def summarise(subjects: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in ("dice_3d", "dice_slicewise"):
        summary[kind] = {s: {tag: mean_sd_entry([x["phases"][tag][kind][s] for x in subjects]) for tag in PHASES}
                         for s in STRUCTURES.values()}
    for kind in ("psnr", "ssim", "ssim_slicewise", "psnr_slicewise", "psnr_heart"):
        summary[kind] = {tag: mean_sd_entry([x["phases"][tag][kind] for x in subjects]) for tag in PHASES}
    summary["phenotype_agreement"] = {
        k: metrics.bland_altman([x["phenotypes"][k]["sr"] for x in subjects],
                                [x["phenotypes"][k]["truth"] for x in subjects])
        for k, _, _ in PHENOTYPES
    }
    return summary


def evaluate_dataset(data: str | Path, resolver, split: str = "test", limit: int | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate `resolver` (a `core.engine.SuperResolver`) on the labelled subjects of `split`."""
    data = Path(data).expanduser()
    labelled, unlabelled = labelled_subjects(data, split)
    if limit:
        labelled = labelled[: max(1, int(limit))]
    subjects = []
    for n, entry in enumerate(labelled):
        subjects.append(evaluate_subject(PairedSubject(data, entry), resolver))
        if progress:
            progress((n + 1) / len(labelled), f"evaluated {entry.get('id')} ({n + 1}/{len(labelled)})")
    return {
        "data": str(data), "split": split, "n": len(subjects), "skipped_unlabelled": unlabelled,
        "model_id": resolver.model_id, "adapter_id": resolver.adapter_id, "device": resolver.device,
        "summary": summarise(subjects), "subjects": subjects,
    }  # fmt: skip


def format_table(res: dict[str, Any]) -> str:
    s = res["summary"]
    model = res["model_id"][:12] + (f" + V-AMA {res['adapter_id'][:12]}" if res.get("adapter_id") else "")
    lines = [f"Gemini-GAN {model} on {res['data']} (split {res['split']}, n={res['n']}); mean (sd)", ""]
    cols = [f"{STRUCTURE_SHORT[st]} {tag}" for st in STRUCTURE_SHORT for tag in PHASES]
    cols += ["PSNR ED", "PSNR ES", "SSIM ED", "SSIM ES"]
    width = 14
    lines.append(f"{'':<18}" + "".join(f"{c:>{width}}" for c in cols))
    for kind, label in (("dice_3d", "Dice 3D"), ("dice_slicewise", "Dice slice-wise")):
        cells = [format_mean_sd_entry(s[kind][st][tag], 2) for st in STRUCTURE_SHORT for tag in PHASES]
        if kind == "dice_3d":
            cells += [format_mean_sd_entry(s[k][t], 2) for k in ("psnr", "ssim") for t in PHASES]
        else:
            cells += [format_mean_sd_entry(s[k][t], 2) for k in ("psnr_slicewise", "ssim_slicewise") for t in PHASES]
        lines.append(f"{label:<18}" + "".join(f"{c:>{width}}" for c in cells))
    lines += ["", "Dice 3D is volumetric (primary); slice-wise = per 2D slice, empty slices skipped (paper).",
              "PSNR/SSIM: 3D on the first row; per 2D slice on the second (PSNR on the labelled slices);",
              "data range = the HR range. PSNR within " + f"{metrics.HEART_MARGIN_MM:g} mm of the heart: ED "
              + format_mean_sd_entry(s["psnr_heart"]["ED"], 2) + ", ES "
              + format_mean_sd_entry(s["psnr_heart"]["ES"], 2) + " dB", "",
              "Phenotype errors, SR labels - HR ground truth: bias [95% limits of agreement]"]
    for key, name, unit in PHENOTYPES:
        a = s["phenotype_agreement"][key]
        if not a["n"]:
            lines.append(f"  {name + ' (' + unit + ')':<16} n/a")
            continue
        lines.append(f"  {name + ' (' + unit + ')':<16} {a['bias']:+8.2f}  [{a['loa_low']:+8.2f}, {a['loa_high']:+8.2f}]")
    return "\n".join(lines)


# --- a model on a dataset, with the cubic B-spline baseline --------------------------------------------
def evaluate_model(model: str | Path | None, data: str | Path, split: str = "test", device: str = "cpu",
                   limit: int | None = None, baseline: bool = True) -> dict[str, Any]:
    """A Gemini-GAN model (`core.predict.Predictor`, no adapter) on the subjects of `split`: one flat row
    per subject and phase (`dice3d_<structure>`, `dice2d_<structure>`, `psnr`, `ssim`, `psnr_slices`,
    `psnr_heart`, and the same image metrics of the cubic B-spline interpolation of the LR stack with the
    suffix `_bspline`), and mean/sd per phase."""
    from gemini_cmr.core.predict import Predictor

    root = Path(data)
    entries = select_subjects(read_manifest(root), split)[:limit]
    predictor = Predictor.load(model, device=device)
    rows = []
    for entry in entries:
        subject = PairedSubject(root, entry)
        pred = predictor.predict(Study(subject.lr_image, subject.lr.affine), phases=list(subject.phases.values()))
        for i, (name, t) in enumerate(subject.phases.items()):
            img, lab = subject.truth(t)
            m = phase_metrics(pred.sr_labels[i], pred.sr_image[i], img, lab, subject.sr)
            row: dict[str, Any] = {"subject": subject.id, "phase": name, "t": t}
            for s in STRUCTURES.values():
                row[f"dice3d_{s}"] = m["dice_3d"][s]
                row[f"dice2d_{s}"] = m["dice_slicewise"][s]
            images = {"": m}
            if baseline:
                bspline = resample(subject.lr_image[t], subject.lr, subject.sr, order=3, mode="nearest")
                images["_bspline"] = image_metrics(bspline, img, lab, subject.sr, m["data_range"])
            for tag, im in images.items():
                row[f"psnr{tag}"] = im["psnr"]
                row[f"ssim{tag}"] = im["ssim"]
                row[f"psnr_slices{tag}"] = im["psnr_slicewise"]  # the paper's variant
                row[f"psnr_heart{tag}"] = im["psnr_heart"]
            rows.append(row)
    summary: dict[str, Any] = {"model_id": predictor.model_id, "split": split, "n_subjects": len(entries)}
    for ph in PHASES:
        sel = [r for r in rows if r["phase"] == ph]
        if not sel:
            continue
        summary[ph] = {k: (float(np.nanmean([r[k] for r in sel])), float(np.nanstd([r[k] for r in sel], ddof=1))
                           if len(sel) > 1 else 0.0)
                       for k in sel[0] if k not in ("subject", "phase", "t")}
    summary["rows"] = rows
    return summary


def format_model_table(summary: dict[str, Any]) -> str:
    """Markdown table of `evaluate_model`: mean (sd) over subjects at ED and ES."""
    def f(ph, k, digits=3):
        m, s = summary[ph][k]
        return f"{m:.{digits}f} ({s:.{digits}f})"

    lines = ["| metric | ED | ES |", "|---|---|---|"]
    for s, name in STRUCTURE_NAMES.items():
        lines.append(f"| 3D Dice {name} | {f('ED', f'dice3d_{s}')} | {f('ES', f'dice3d_{s}')} |")
    for s, name in STRUCTURE_NAMES.items():
        lines.append(f"| slice-wise Dice {name} | {f('ED', f'dice2d_{s}')} | {f('ES', f'dice2d_{s}')} |")
    lines.append(f"| PSNR Gemini-GAN (dB) | {f('ED', 'psnr', 2)} | {f('ES', 'psnr', 2)} |")
    if "psnr_bspline" in summary["ED"]:
        lines.append(f"| PSNR cubic B-spline (dB) | {f('ED', 'psnr_bspline', 2)} | {f('ES', 'psnr_bspline', 2)} |")
    for key, what in (("psnr_slices", "slice-wise PSNR (paper's variant, labelled slices)"),
                      ("psnr_heart", f"PSNR within {metrics.HEART_MARGIN_MM:g} mm of the heart")):
        if key in summary["ED"]:
            lines.append(f"| {what}, Gemini-GAN (dB) | {f('ED', key, 2)} | {f('ES', key, 2)} |")
        if f"{key}_bspline" in summary["ED"]:
            lines.append(f"| {what}, cubic B-spline (dB) | {f('ED', key + '_bspline', 2)} | "
                         f"{f('ES', key + '_bspline', 2)} |")
    lines.append(f"| SSIM Gemini-GAN | {f('ED', 'ssim')} | {f('ES', 'ssim')} |")
    if "ssim_bspline" in summary["ED"]:
        lines.append(f"| SSIM cubic B-spline | {f('ED', 'ssim_bspline')} | {f('ES', 'ssim_bspline')} |")
    return "\n".join(lines)


__all__ = ["PHASES", "PairedSubject", "evaluate_dataset", "evaluate_model", "evaluate_subject", "format_model_table",
           "format_table", "image_metrics", "labelled_subjects", "labels_on_sr",
           "phase_metrics", "summarise"]
