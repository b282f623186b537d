"""Held-out evaluation of a Gemini-GAN model on a paired dataset, with the cubic B-spline baseline.

For every subject of a split, at ED and ES (manifest phases): the LR cine is super-resolved with
`core.predict.Predictor` and compared with the HR truth on the SR grid:
- 3D volumetric Dice (primary) and the paper's slice-wise Dice per structure;
- PSNR and SSIM (3D, 7x7x7) of the SR image; data range = the HR image's (max - min) in that phase;
- the same PSNR/SSIM for the cubic B-spline interpolation of the LR stack onto the SR grid
  (`core.geometry.resample(order=3)`), the baseline of the issue's target.
Used by `scripts/eval_gemini.py` and the bundled-model test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.geometry import resample, sr_grid
from gemini_cmr.core.io.nifti import read_nifti_array
from gemini_cmr.core.metrics import (
    HEART_MARGIN_MM,
    dice_per_structure,
    heart_region,
    masked_psnr,
    psnr,
    slicewise_dice_per_structure,
    slicewise_psnr,
    ssim,
)
from gemini_cmr.core.predict import Predictor
from gemini_cmr.core.study import Grid, Study
from gemini_cmr.core.train.data import read_manifest

STRUCTS = ("lv_cavity", "lv_myocardium", "rv_cavity")


def labels_on_sr(labels: np.ndarray, hr: Grid, sr: Grid) -> np.ndarray:
    """HR truth labels of one phase on the SR grid (as they are when the grids agree, else nearest)."""
    if hr == sr:
        return labels.astype(np.uint8)
    return resample(labels.astype(np.uint8), hr, sr, order=0, mode="nearest")


def evaluate_subject(predictor: Predictor, root: Path, entry: dict, baseline: bool = True) -> list[dict]:
    lr_img, lr_aff, _ = read_nifti_array(root / entry["lr_image"])
    hr_img, hr_aff, _ = read_nifti_array(root / entry["hr_image"])
    hr_lab, _, _ = read_nifti_array(root / entry["hr_labels"])
    lr = Grid(lr_img.shape[1:], lr_aff)
    sr = sr_grid(lr)
    hr = Grid(hr_img.shape[1:], hr_aff)
    phases = {"ED": int(entry["ed_phase"]), "ES": int(entry["es_phase"])}
    pred = predictor.predict(Study(lr_img, lr_aff), phases=list(phases.values()))
    rows = []
    for i, (name, t) in enumerate(phases.items()):
        lab = labels_on_sr(hr_lab[t], hr, sr)
        tgt = (hr_img[t].astype(np.float32) if hr == sr
               else resample(hr_img[t].astype(np.float32), hr, sr, order=1, mode="nearest"))
        rng = float(tgt.max() - tgt.min()) or 1.0
        row: dict[str, Any] = {"subject": entry["id"], "phase": name, "t": t}
        d3 = dice_per_structure(pred.sr_labels[i], lab)
        d2 = slicewise_dice_per_structure(pred.sr_labels[i], lab)
        for s in STRUCTS:
            row[f"dice3d_{s}"] = d3[s]
            row[f"dice2d_{s}"] = d2[s]
        near = heart_region(lab, sr.spacing[::-1], HEART_MARGIN_MM)
        images = {"": pred.sr_image[i]}
        if baseline:
            images["_bspline"] = resample(lr_img[t].astype(np.float32), lr, sr, order=3, mode="nearest")
        for tag, img in images.items():
            row[f"psnr{tag}"] = psnr(img, tgt, rng)
            row[f"ssim{tag}"] = ssim(img, tgt, rng)
            row[f"psnr_slices{tag}"] = slicewise_psnr(img, tgt, lab, rng)  # the paper's variant
            row[f"psnr_heart{tag}"] = masked_psnr(img, tgt, near, rng)
        rows.append(row)
    return rows


def evaluate(model: str | Path | None, data: str | Path, split: str = "test", device: str = "cpu",
             limit: int | None = None, baseline: bool = True) -> dict[str, Any]:
    root = Path(data)
    manifest = read_manifest(root)
    entries = [e for e in manifest["subjects"] if split == "all" or e["split"] == split][:limit]
    predictor = Predictor.load(model, device=device)
    rows = [r for e in entries for r in evaluate_subject(predictor, root, e, baseline)]
    summary: dict[str, Any] = {"model_id": predictor.model_id, "split": split, "n_subjects": len(entries)}
    for ph in ("ED", "ES"):
        sel = [r for r in rows if r["phase"] == ph]
        if not sel:
            continue
        summary[ph] = {k: (float(np.nanmean([r[k] for r in sel])), float(np.nanstd([r[k] for r in sel], ddof=1))
                           if len(sel) > 1 else 0.0)
                       for k in sel[0] if k not in ("subject", "phase", "t")}
    summary["rows"] = rows
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """Markdown table: mean (sd) over subjects at ED and ES."""
    def f(ph, k, digits=3):
        m, s = summary[ph][k]
        return f"{m:.{digits}f} ({s:.{digits}f})"

    lines = ["| metric | ED | ES |", "|---|---|---|"]
    for s, name in zip(STRUCTS, ("LV cavity", "LV myocardium", "RV cavity")):
        lines.append(f"| 3D Dice {name} | {f('ED', f'dice3d_{s}')} | {f('ES', f'dice3d_{s}')} |")
    for s, name in zip(STRUCTS, ("LV cavity", "LV myocardium", "RV cavity")):
        lines.append(f"| slice-wise Dice {name} | {f('ED', f'dice2d_{s}')} | {f('ES', f'dice2d_{s}')} |")
    lines.append(f"| PSNR Gemini-GAN (dB) | {f('ED', 'psnr', 2)} | {f('ES', 'psnr', 2)} |")
    if "psnr_bspline" in summary["ED"]:
        lines.append(f"| PSNR cubic B-spline (dB) | {f('ED', 'psnr_bspline', 2)} | {f('ES', 'psnr_bspline', 2)} |")
    for key, what in (("psnr_slices", "slice-wise PSNR (paper's variant, labelled slices)"),
                      ("psnr_heart", f"PSNR within {HEART_MARGIN_MM:g} mm of the heart")):
        if key in summary["ED"]:
            lines.append(f"| {what}, Gemini-GAN (dB) | {f('ED', key, 2)} | {f('ES', key, 2)} |")
        if f"{key}_bspline" in summary["ED"]:
            lines.append(f"| {what}, cubic B-spline (dB) | {f('ED', key + '_bspline', 2)} | "
                         f"{f('ES', key + '_bspline', 2)} |")
    lines.append(f"| SSIM Gemini-GAN | {f('ED', 'ssim')} | {f('ES', 'ssim')} |")
    if "ssim_bspline" in summary["ED"]:
        lines.append(f"| SSIM cubic B-spline | {f('ED', 'ssim_bspline')} | {f('ES', 'ssim_bspline')} |")
    return "\n".join(lines)
