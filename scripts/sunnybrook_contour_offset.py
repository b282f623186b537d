#!/usr/bin/env python
"""Where the Sunnybrook contours sit on their images: the ACDC model's labels against the manual ones moved
by whole pixels.

For each Sunnybrook series of ../shared/data, the contours are rasterised as 0-based coordinates
(`origin=0`) and the model's labels on the acquired slices (`Result.lr_labels`, contoured slices only) are
compared with the manual masks moved by dx, dy in {-1, 0, 1} pixels (np.roll): LV cavity and myocardium Dice
pooled over the contoured slices. The same for ACDC patients' label maps (LV cavity, LV epicardium, RV
cavity), where the images and labels come from one NIfTI grid: a pipeline or model that moved its labels
would show there too. A best shift of (-1, -1) on Sunnybrook and (0, 0) on ACDC means the contour files
are 1-based (`core.io.contours.CONTOUR_ORIGIN`).

    .venv/bin/python scripts/sunnybrook_contour_offset.py [--model resources/models/gemini-acdc] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SERIES = {"SCD0000101": "SC-HF-I-1", "SCD0000401": "SC-HF-I-5", "SCD0000501": "SC-HF-I-6"}
ACDC = ["patient003", "patient027", "patient044", "patient061", "patient088", "patient095"]
SHIFTS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def pooled(counts: dict, key, pred, truth) -> None:
    a = counts.setdefault(key, [0, 0])
    a[0] += 2 * int((pred & truth).sum())
    a[1] += int(pred.sum() + truth.sum())


def table(counts: dict) -> dict:
    out: dict = {}
    for (name, dx, dy), (both, total) in counts.items():
        out.setdefault(name, {})[f"{dx},{dy}"] = round(both / total, 4) if total else None
    for row in out.values():
        row["best"] = max((k for k in row if row[k] is not None), key=row.get)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the ACDC research model)")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import numpy as np

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path

    data = Path(args.data)
    resolver = SuperResolver(model=args.model or str(acdc_model_path()), device="cpu")
    report: dict = {"model_id": None, "shift_convention": "manual mask moved by (dx, dy) pixels, np.roll",
                    "sunnybrook_origin_0": {}, "acdc": {}}
    for series, contours in SERIES.items():
        study = attach_contours(load_study(data / "sunnybrook" / series), data / "sunnybrook" / "contours" / contours,
                                origin=0.0)
        pairs = study.meta.extra["contour_slices"]
        result = resolver.run(study, phases=study.labelled_phases, meshes="none")
        report["model_id"] = result.model_id
        counts: dict = {}
        for t in study.labelled_phases:
            ks = sorted(k for tt, k in pairs if tt == t)
            pred, truth = result.lr_labels[result.phases.index(t)][ks], study.labels[t][ks]
            has_myo = bool((truth == 2).any())
            for dx, dy in SHIFTS:
                moved = np.roll(truth, (dy, dx), axis=(1, 2))
                pooled(counts, ("lv_cavity", dx, dy), pred == 1, moved == 1)
                if has_myo:
                    pooled(counts, ("lv_myocardium", dx, dy), pred == 2, moved == 2)
        report["sunnybrook_origin_0"][series] = table(counts)
        print(series, json.dumps(report["sunnybrook_origin_0"][series]), flush=True)
    counts = {}
    for subject in ACDC:
        study = load_acdc(data / "acdc" / "training" / subject)
        phases = [study.meta.ed_phase, study.meta.es_phase]
        result = resolver.run(study, phases=phases, meshes="none")
        for i, t in enumerate(phases):
            pred, truth = result.lr_labels[i], study.labels[t]
            for dx, dy in SHIFTS:
                moved = np.roll(truth, (dy, dx), axis=(1, 2))
                pooled(counts, ("lv_cavity", dx, dy), pred == 1, moved == 1)
                pooled(counts, ("lv_epicardium", dx, dy), (pred == 1) | (pred == 2), (moved == 1) | (moved == 2))
                pooled(counts, ("rv_cavity", dx, dy), pred == 3, moved == 3)
    report["acdc"] = {"subjects": ACDC, **table(counts)}
    print("ACDC", json.dumps(report["acdc"]), flush=True)
    if args.json:
        from gemini_cmr.core.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
