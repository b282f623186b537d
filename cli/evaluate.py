"""`gemini-cmr evaluate --data DIR --model M`: the paper's evaluation on a paired dataset.

For every subject of the split (default `test`) in DIR/manifest.json (layout: docs/DEVELOPING.md), the
LR cine is super-resolved at ED and ES (the manifest's phases; else max/min of the ground-truth LV
cavity volume) and compared with the HR ground truth on the SR grid (HR files not exactly on the SR
grid are resampled by world coordinates: image linear, labels nearest):
- Dice per structure at ED and ES: 3D volumetric (primary) and the paper's slice-wise variant;
- PSNR and SSIM (3D, 7x7x7 window) of the SR image at ED and ES, data range = the HR image's range
  (max - min) in that phase; the paper's slice-wise variants (PSNR per 2D slice on the slices with
  ground-truth labels, SSIM per slice) on the second row; the PSNR within 10 mm of the labelled heart in
  the JSON output and under the table;
- phenotype errors, SR labels minus HR labels: bias and 95% limits of agreement (bias +/- 1.96 sd) for
  LVEDV, LVESV, LVEF, LV mass and RVEDV (and RVESV, RVEF).
Values are mean (sd) over subjects. `--json` prints everything, per subject included, as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gemini_cmr.core.errors import DataError, GeminiError

PHENOTYPE_KEYS = (
    ("lv_edv_ml", "LVEDV", "mL"), ("lv_esv_ml", "LVESV", "mL"), ("lv_ef_pct", "LVEF", "%"),
    ("lv_mass_g", "LV mass", "g"), ("rv_edv_ml", "RVEDV", "mL"), ("rv_esv_ml", "RVESV", "mL"),
    ("rv_ef_pct", "RVEF", "%"),
)  # fmt: skip
SHORT = {"lv_cavity": "LV", "lv_myocardium": "Myo", "rv_cavity": "RV"}


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("evaluate", help=summary, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="paired dataset folder (with manifest.json)")
    p.add_argument("--model", type=Path, default=None, help="Gemini-GAN model (default: bundled)")
    p.add_argument("--adapter", type=Path, default=None, help="V-AMA adapter applied to the LR input first")
    p.add_argument("--split", default="test", help="subjects of this split (train, val, test; 'all' = every one)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many subjects")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=run)


# --- dataset ------------------------------------------------------------------------------------------
def read_manifest(data: Path) -> dict[str, Any]:
    path = data / "manifest.json"
    if not data.is_dir():
        raise DataError("dataset folder not found", data)
    if not path.is_file():
        raise DataError("no manifest.json: not a paired dataset (see `gemini-cmr synth`)", data)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable manifest ({exc.__class__.__name__}: {exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "gemini-cmr-paired":
        raise DataError("manifest format is not 'gemini-cmr-paired'", path)
    if not isinstance(manifest.get("subjects"), list):
        raise DataError("manifest has no subject list", path)
    return manifest


def _read(data: Path, rel: str | None, what: str, sid: str):
    from gemini_cmr.core.io.nifti import read_nifti_array

    if not rel:
        raise DataError(f"subject {sid} has no {what}", data / "manifest.json")
    path = data / rel
    if not path.is_file():
        raise DataError(f"{what} of subject {sid} not found", path)
    try:
        arr, aff, _ = read_nifti_array(path)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise DataError(f"unreadable {what} ({exc.__class__.__name__}: {exc})", path) from None
    if arr.ndim == 3:
        arr = arr[None]
    return arr, aff


def _on_grid(arr: np.ndarray, aff: np.ndarray, grid, order: int) -> np.ndarray:
    """(T, Z, Y, X) on the grid given by `aff` -> (T, D, H, W) on `grid` (identity when already there)."""
    from gemini_cmr.core.geometry import resample
    from gemini_cmr.core.study import Grid

    src = Grid(arr.shape[1:], aff)
    # NIfTI stores affines in float32: a grid equal to 1e-3 mm is the same grid.
    if src.shape == grid.shape and np.allclose(src.affine, grid.affine, atol=1e-3):
        return arr
    return np.stack([resample(v, src, grid, order=order) for v in arr])


def evaluate_subject(data: Path, entry: dict[str, Any], resolver) -> dict[str, Any]:
    """Metrics and phenotypes (SR vs HR ground truth) of one manifest entry."""
    from gemini_cmr.core import metrics
    from gemini_cmr.core.geometry import sr_grid
    from gemini_cmr.core.phenotypes import compute_phenotypes, ed_es_from_curve, volume_curves
    from gemini_cmr.core.study import Grid, Study, StudyMeta

    sid = str(entry.get("id"))
    lr, lr_aff = _read(data, entry.get("lr_image"), "lr_image", sid)
    lr_lab = None
    if entry.get("lr_labels"):
        lr_lab, _ = _read(data, entry["lr_labels"], "lr_labels", sid)
    hr_img, hr_aff = _read(data, entry.get("hr_image"), "hr_image", sid)
    hr_lab, hr_lab_aff = _read(data, entry.get("hr_labels"), "hr_labels", sid)
    if hr_lab.shape[0] != lr.shape[0] or hr_img.shape[0] != lr.shape[0]:
        raise DataError(f"subject {sid}: LR has {lr.shape[0]} phases, HR {hr_img.shape[0]}/{hr_lab.shape[0]}",
                        data / sid)
    try:
        lr_grid = Grid(lr.shape[1:], lr_aff)
    except ValueError as exc:
        raise DataError(f"subject {sid}: invalid LR geometry ({exc})", data / str(entry["lr_image"])) from None
    sr = sr_grid(lr_grid)
    ed, es = entry.get("ed_phase"), entry.get("es_phase")
    if ed is None or es is None:
        curve = volume_curves(hr_lab, 1.0)["lv_cavity"]
        ed_c, es_c = ed_es_from_curve(curve, list(range(hr_lab.shape[0])))
        ed = ed_c if ed is None else ed
        es = es_c if es is None else es
    ed, es = int(ed), int(es)
    phases = sorted({ed, es})
    truth_lab = _on_grid(hr_lab[phases].astype(np.uint8), hr_lab_aff, sr, order=0)
    truth_img = _on_grid(hr_img[phases].astype(np.float32), hr_aff, sr, order=1)

    meta = StudyMeta(source_path=str(data / str(entry["lr_image"])), format="nifti", patient_id=sid,
                     ed_phase=ed, es_phase=es)
    study = Study(image=lr.astype(np.float32), affine=lr_aff,
                  labels=None if lr_lab is None else lr_lab.astype(np.uint8), meta=meta)
    t0 = time.perf_counter()
    result = resolver.run(study, phases=phases, meshes="none")
    seconds = time.perf_counter() - t0

    out: dict[str, Any] = {"id": sid, "ed_phase": ed, "es_phase": es, "seconds": seconds, "phases": {}}
    for tag, phase in (("ED", ed), ("ES", es)):
        row = result.phase_row(phase)
        i = phases.index(phase)
        pred_l, true_l = result.sr_labels[row], truth_lab[i]
        pred_i, true_i = result.sr_image[row], truth_img[i]
        rng = float(true_i.max() - true_i.min()) or 1.0
        small = min(pred_i.shape) < 7
        out["phases"][tag] = {
            "dice_3d": metrics.dice_per_structure(pred_l, true_l),
            "dice_slicewise": metrics.slicewise_dice_per_structure(pred_l, true_l),
            "psnr": metrics.psnr(pred_i, true_i, rng),
            "ssim": metrics.ssim(pred_i, true_i, rng, mode="slicewise" if small else "3d"),
            "ssim_slicewise": metrics.ssim(pred_i, true_i, rng, mode="slicewise"),
            "psnr_slicewise": metrics.slicewise_psnr(pred_i, true_i, true_l, rng),
            "psnr_heart": metrics.masked_psnr(pred_i, true_i,
                                              metrics.heart_region(true_l, sr.spacing[::-1]), rng),
            "data_range": rng,
        }
    pred_ph = compute_phenotypes(result.sr_labels, result.sr_grid, phases=result.phases, meta=meta)
    true_ph = compute_phenotypes(truth_lab, sr, phases=phases, meta=meta)
    out["phenotypes"] = {k: {"sr": pred_ph[k], "truth": true_ph[k]} for k, _, _ in PHENOTYPE_KEYS}
    return out


def summarise(subjects: list[dict[str, Any]]) -> dict[str, Any]:
    from gemini_cmr.core import metrics
    from gemini_cmr.core.study import STRUCTURES

    summary: dict[str, Any] = {}
    for kind in ("dice_3d", "dice_slicewise"):
        summary[kind] = {
            s: {tag: _ms([x["phases"][tag][kind][s] for x in subjects]) for tag in ("ED", "ES")}
            for s in STRUCTURES.values()
        }
    for kind in ("psnr", "ssim", "ssim_slicewise", "psnr_slicewise", "psnr_heart"):
        summary[kind] = {tag: _ms([x["phases"][tag][kind] for x in subjects]) for tag in ("ED", "ES")}
    summary["phenotype_agreement"] = {
        k: metrics.bland_altman([x["phenotypes"][k]["sr"] for x in subjects],
                                [x["phenotypes"][k]["truth"] for x in subjects])
        for k, _, _ in PHENOTYPE_KEYS
    }
    return summary


def _ms(values) -> dict[str, float]:
    from gemini_cmr.core.metrics import mean_sd

    m, s = mean_sd(values)
    return {"mean": m, "sd": s}


def evaluate_dataset(data: Path, resolver, split: str = "test", limit: int | None = None,
                     progress=None) -> dict[str, Any]:
    """Evaluate `resolver` (a `core.engine.SuperResolver`) on the labelled subjects of `split`."""
    data = Path(data).expanduser()
    manifest = read_manifest(data)
    entries = [e for e in manifest["subjects"] if isinstance(e, dict) and (split == "all" or e.get("split") == split)]
    labelled = [e for e in entries if e.get("hr_image") and e.get("hr_labels")]
    if not labelled:
        raise DataError(f"no labelled subjects in split {split!r} (of {len(manifest['subjects'])} subjects)",
                        data / "manifest.json")
    if limit:
        labelled = labelled[: max(1, int(limit))]
    subjects = []
    for n, entry in enumerate(labelled):
        subjects.append(evaluate_subject(data, entry, resolver))
        if progress:
            progress((n + 1) / len(labelled), f"evaluated {entry.get('id')} ({n + 1}/{len(labelled)})")
    return {
        "data": str(data), "split": split, "n": len(subjects), "skipped_unlabelled": len(entries) - len(labelled),
        "model_id": resolver.model_id, "adapter_id": resolver.adapter_id, "device": resolver.device,
        "summary": summarise(subjects), "subjects": subjects,
    }  # fmt: skip


# --- output -------------------------------------------------------------------------------------------
def _f(entry: dict[str, float], digits: int) -> str:
    m, s = entry["mean"], entry["sd"]
    if m is None or not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ({s:.{digits}f})"


def format_table(res: dict[str, Any]) -> str:
    from gemini_cmr.core import metrics

    s = res["summary"]
    model = res["model_id"][:12] + (f" + V-AMA {res['adapter_id'][:12]}" if res.get("adapter_id") else "")
    lines = [f"Gemini-GAN {model} on {res['data']} (split {res['split']}, n={res['n']}); mean (sd)", ""]
    cols = [f"{SHORT[st]} {tag}" for st in SHORT for tag in ("ED", "ES")]
    cols += ["PSNR ED", "PSNR ES", "SSIM ED", "SSIM ES"]
    width = 14
    lines.append(f"{'':<18}" + "".join(f"{c:>{width}}" for c in cols))
    for kind, label in (("dice_3d", "Dice 3D"), ("dice_slicewise", "Dice slice-wise")):
        cells = [_f(s[kind][st][tag], 2) for st in SHORT for tag in ("ED", "ES")]
        if kind == "dice_3d":
            cells += [_f(s["psnr"][t], 2) for t in ("ED", "ES")] + [_f(s["ssim"][t], 2) for t in ("ED", "ES")]
        else:
            cells += [_f(s[k][t], 2) for k in ("psnr_slicewise", "ssim_slicewise") for t in ("ED", "ES")]
        lines.append(f"{label:<18}" + "".join(f"{c:>{width}}" for c in cells))
    lines += ["", "Dice 3D is volumetric (primary); slice-wise = per 2D slice, empty slices skipped (paper).",
              "PSNR/SSIM: 3D on the first row; per 2D slice on the second (PSNR on the labelled slices);",
              "data range = the HR range. PSNR within " + f"{metrics.HEART_MARGIN_MM:g} mm of the heart: ED "
              + _f(s["psnr_heart"]["ED"], 2) + ", ES " + _f(s["psnr_heart"]["ES"], 2) + " dB", "",
              "Phenotype errors, SR labels - HR ground truth: bias [95% limits of agreement]"]
    for key, name, unit in PHENOTYPE_KEYS:
        a = s["phenotype_agreement"][key]
        if not a["n"]:
            lines.append(f"  {name + ' (' + unit + ')':<16} n/a")
            continue
        lines.append(f"  {name + ' (' + unit + ')':<16} {a['bias']:+8.2f}  [{a['loa_low']:+8.2f}, {a['loa_high']:+8.2f}]")
    return "\n".join(lines)


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.cli.super_resolve import StderrProgress
    from gemini_cmr.core.engine import SuperResolver

    if args.limit is not None and args.limit < 1:
        raise GeminiError("--limit must be at least 1")
    read_manifest(args.data.expanduser())  # fail fast, before loading the model
    resolver = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
    res = evaluate_dataset(args.data, resolver, args.split, args.limit, progress=StderrProgress(True))
    if args.json:
        print(json.dumps(_clean(res), indent=2))
    else:
        print(format_table(res))
    sys.stdout.flush()
    return 0
