#!/usr/bin/env python
"""Evaluate a Gemini-GAN model on held-out ACDC subjects (issue 14; docs/real-data.md).

For every subject of the split (default: the validation split of core.train.lr_data.acdc_split, patients
whose number is a multiple of 5): the whole pipeline (`core.engine.SuperResolver`, whole field of view,
ED and ES from Info.cfg) super-resolves and segments the study; the SR labels are resampled onto the
acquired LR slices (the engine's `lr_labels`, nearest) and compared with the manual labels:
3D Dice per structure at ED and ES, and LVEDV, LVESV, LVEF, LV mass (myocardial volume at ED x 1.05 g/mL),
RVEDV errors (prediction - manual): mean (bias), limits of agreement (bias +- 1.96 SD), median |error|.

    .venv/bin/python scripts/eval_acdc.py --model resources/models/gemini-acdc \\
        --data ../shared/data/acdc/training --json runs/acdc-eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemini_cmr.core.io.atomic import atomic_write_text  # noqa: E402
from gemini_cmr.core.metrics import dice_per_structure  # noqa: E402

STRUCT = ("lv_cavity", "lv_myocardium", "rv_cavity")
PHEN = ("lvedv_ml", "lvesv_ml", "lvef_pct", "lv_mass_g", "rvedv_ml")


def phenotypes(labels_ed: np.ndarray, labels_es: np.ndarray, voxel_ml: float) -> dict[str, float]:
    edv = float((labels_ed == 1).sum() * voxel_ml)
    esv = float((labels_es == 1).sum() * voxel_ml)
    return {"lvedv_ml": edv, "lvesv_ml": esv, "lvef_pct": 100.0 * (edv - esv) / edv if edv > 0 else float("nan"),
            "lv_mass_g": float((labels_ed == 2).sum() * voxel_ml * 1.05),
            "rvedv_ml": float((labels_ed == 3).sum() * voxel_ml)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled ACDC model)")
    ap.add_argument("--data", default="../shared/data/acdc/training", help="ACDC training folder")
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--limit", type=int, default=0, help="first N subjects only (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the per-subject rows and the summary here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.resources import acdc_model_path
    from gemini_cmr.core.train.lr_data import acdc_subjects

    model = args.model or str(acdc_model_path())
    sr = SuperResolver(model=model, device="cpu")
    subjects = [(sid, f) for sid, f, sp in acdc_subjects(args.data) if sp == args.split]
    if args.limit:
        subjects = subjects[: args.limit]
    rows = []
    t0 = time.perf_counter()
    for sid, folder in subjects:
        study = load_acdc(folder)
        ed, es = study.meta.ed_phase, study.meta.es_phase
        t = time.perf_counter()
        res = sr.run(study, phases=[ed, es], meshes="none")
        dt = time.perf_counter() - t
        pred = {p: res.lr_labels[i] for i, p in enumerate(res.phases)}
        voxel_ml = float(np.prod(study.spacing)) / 1000.0
        row = {"subject": sid, "group": study.meta.group, "seconds": dt}
        for tag, ph in (("ed", ed), ("es", es)):
            d = dice_per_structure(pred[ph], study.labels[ph])
            row.update({f"{tag}_{k}": v for k, v in d.items()})
        pp, mm = phenotypes(pred[ed], pred[es], voxel_ml), phenotypes(study.labels[ed], study.labels[es], voxel_ml)
        row.update({f"pred_{k}": v for k, v in pp.items()})
        row.update({f"manual_{k}": v for k, v in mm.items()})
        rows.append(row)
        print(f"{sid} {study.meta.group:5s} ED Dice {row['ed_lv_cavity']:.3f}/{row['ed_lv_myocardium']:.3f}/"
              f"{row['ed_rv_cavity']:.3f} ES {row['es_lv_cavity']:.3f}/{row['es_lv_myocardium']:.3f}/"
              f"{row['es_rv_cavity']:.3f} LVEF {pp['lvef_pct']:.1f} vs {mm['lvef_pct']:.1f} ({dt:.1f} s)", flush=True)
    summary: dict = {"model": model, "model_id": sr.model_id, "split": args.split, "n": len(rows),
                     "seconds": time.perf_counter() - t0}
    for tag in ("ed", "es"):
        for k in STRUCT:
            v = np.array([r[f"{tag}_{k}"] for r in rows])
            summary[f"dice_{tag}_{k}"] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    for k in PHEN:
        e = np.array([r[f"pred_{k}"] - r[f"manual_{k}"] for r in rows])
        bias, sd = float(np.nanmean(e)), float(np.nanstd(e, ddof=1)) if len(e) > 1 else 0.0
        summary[f"err_{k}"] = {"bias": bias, "loa": [bias - 1.96 * sd, bias + 1.96 * sd],
                               "median_abs": float(np.nanmedian(np.abs(e)))}
    print("\n| structure | ED Dice mean (sd) | ES Dice mean (sd) |\n|---|---|---|")
    for k in STRUCT:
        a, b = summary[f"dice_ed_{k}"], summary[f"dice_es_{k}"]
        print(f"| {k} | {a['mean']:.3f} ({a['sd']:.3f}) | {b['mean']:.3f} ({b['sd']:.3f}) |")
    print("\n| phenotype | bias | limits of agreement | median abs error |\n|---|---|---|---|")
    for k in PHEN:
        e = summary[f"err_{k}"]
        print(f"| {k} | {e['bias']:+.1f} | {e['loa'][0]:+.1f} to {e['loa'][1]:+.1f} | {e['median_abs']:.1f} |")
    print(f"\nmodel {summary['model_id'][:12]} ({model}), {len(rows)} subjects, {summary['seconds']:.0f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
