#!/usr/bin/env python
"""Does the whole-field heart-finding pass put the heart box on the heart, whichever phase it runs on?

The ACDC model finds the heart with one phase on the whole field of view (`core.predict`, the heart component
chosen by `core.postprocess.keep_largest_heart_component(by="ventricle")`); the heart box of every later
phase comes from it. Here every ACDC training patient at ED and at ES, and every phase of each Sunnybrook
series, goes through `SuperResolver.run(phases=[p], motion_correction=False)`, so that phase is the one the
pass runs on, once with the product's criterion (walled LV cavity times one plus the RV beside the myocardium)
and once with the walled LV cavity count alone (the criterion before, a copy kept in this script). Reported:
ACDC Dice of LV cavity, myocardium and RV against the manual labels (cases with LV cavity Dice below 0.5 = the
box off the heart), Sunnybrook LV cavity Dice at the contoured phases and, for every phase, the heart box's
distance from the series' median box.

    .venv/bin/python scripts/heart_pass_check.py [--json OUT] [--limit N] [--model DIR] [--criteria product]
        [--heart-pass-mm MM] [--against REPORT.json]

`--model`: another ACDC model folder (default: the bundled one); `--criteria product` skips the criterion
before (after a model change, the product's criterion is what must still find the heart). `--heart-pass-mm`:
the model config's `inference.heart_pass_mm` for this run (0: the whole field on the SR grid); the report
counts the runs whose coarse box was given up for the whole field, and those whose whole-field heart lay where
the cine hardly moves (found again where it beats, `core.predict.Predictor._where_it_beats`). `--against`: an earlier report of the
same model; the ACDC Dice and the heart boxes are paired with its rows (the same cases).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

PRODUCT_KEEP = None  # core.postprocess.keep_largest_heart_component, set in main()


def walled_count_only(labels, by="size"):
    """The criterion before: the component with the most walled LV cavity voxels."""
    import numpy as np
    from scipy import ndimage

    from gemini_cmr.core import postprocess as pp

    if by != "ventricle":
        return PRODUCT_KEEP(labels, by)
    cc, n = ndimage.label(labels > 0)
    if n <= 1:
        return labels
    r = pp.VENTRICLE_WALL_PX
    walled = (labels == 1) & ndimage.maximum_filter(labels == 2, size=(1, 2 * r + 1, 2 * r + 1))
    sizes = np.bincount(cc.ravel(), weights=walled.ravel(), minlength=n + 1)
    sizes[0] = 0
    if not sizes.any():
        return PRODUCT_KEEP(labels, "myocardium")
    return np.where(cc == int(sizes.argmax()), labels, 0).astype(labels.dtype)


class FallbackCount(logging.Handler):
    """Counts the predictor's messages that a coarse heart box was given up for the whole field."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.count = 0

        self.moved = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "the heart pass on the whole field" in record.getMessage():
            self.count += 1
        if "where the cine hardly moves" in record.getMessage():
            self.moved += 1


def paired(report: dict, base: dict) -> dict:
    """Per criterion in both reports: ACDC Dice differences (this - base; mean, standard error, the cases
    that differ by more than 0.01 in any structure), the share of cases with the same heart box, and per
    Sunnybrook series the largest box difference in pixels and the LV cavity Dice of both."""
    import numpy as np

    out = {}
    for crit, rows in report["acdc"].items():
        if crit not in base.get("acdc", {}):
            continue
        old = {(r["subject"], r["phase"]): r for r in base["acdc"][crit]["rows"]}
        pairs = [(r, old[(r["subject"], r["phase"])]) for r in rows["rows"] if (r["subject"], r["phase"]) in old]
        d = np.array([[a - b for a, b in zip(r["dice"], o["dice"], strict=True)] for r, o in pairs])
        entry = {"cases": len(pairs),
                 "dice_diff_mean": [round(float(v), 4) for v in d.mean(axis=0)],
                 "dice_diff_se": [round(float(v), 4) for v in d.std(axis=0, ddof=1) / np.sqrt(len(d))],
                 "cases_over_0.01": [f"{r['subject']} {r['phase']} {[round(v, 3) for v in dd]}"
                                     for (r, _), dd in zip(pairs, d, strict=True) if np.abs(dd).max() > 0.01],
                 "same_box": round(float(np.mean([r["roi"] == o["roi"] for r, o in pairs])), 4)}
        sb = {}
        for series, now in report["sunnybrook"].get(crit, {}).items():
            then = base.get("sunnybrook", {}).get(crit, {}).get(series)
            if then:
                diff = np.abs(np.array(now["boxes"], float) - np.array(then["boxes"], float)).max()
                sb[series] = {"max_box_diff_px": float(diff), "lv_cavity_dice": now["lv_cavity_dice"],
                              "lv_cavity_dice_before": then["lv_cavity_dice"]}
        entry["sunnybrook"] = sb
        print(crit, "paired with the earlier report:", json.dumps(entry))
        out[crit] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--json", default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N ACDC patients only")
    ap.add_argument("--model", default=None, help="ACDC model folder (default: the bundled gemini-acdc)")
    ap.add_argument("--heart-pass-mm", type=float, default=None, help="inference.heart_pass_mm for this run")
    ap.add_argument("--against", default=None, help="an earlier report of the same model to pair with")
    ap.add_argument("--criteria", default="product,walled_count",
                    help="comma-separated: product, walled_count (default both)")
    args = ap.parse_args(argv)
    criteria = [c for c in args.criteria.split(",") if c]
    if not criteria or set(criteria) - {"product", "walled_count"}:
        ap.error("--criteria: product and/or walled_count")
    import numpy as np

    from gemini_cmr.core import postprocess as pp
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.metrics import dice
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.layouts import load_acdc
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path

    global PRODUCT_KEEP
    PRODUCT_KEEP = pp.keep_largest_heart_component
    resolver = SuperResolver(model=args.model or str(acdc_model_path()), device="cpu")
    inference = resolver.predictor.config.setdefault("inference", {})
    if args.heart_pass_mm is not None:
        inference["heart_pass_mm"] = args.heart_pass_mm
    fallbacks = FallbackCount()
    predict_log = logging.getLogger("gemini_cmr.core.predict")
    predict_log.addHandler(fallbacks)
    predict_log.setLevel(logging.INFO)
    data = Path(args.data)
    report: dict = {"model_id": resolver.model_id, "heart_pass_mm": inference.get("heart_pass_mm"),
                    "acdc": {}, "sunnybrook": {}}
    for criterion in criteria:
        pp.keep_largest_heart_component = PRODUCT_KEEP if criterion == "product" else walled_count_only
        rows = []
        subjects = sorted(p.name for p in (data / "acdc" / "training").iterdir() if p.name.startswith("patient"))
        for s in subjects[:args.limit]:
            st = load_acdc(data / "acdc" / "training" / s)
            for tag, p in (("ed", st.meta.ed_phase), ("es", st.meta.es_phase)):
                r = resolver.run(st, phases=[p], meshes="none", motion_correction=False)
                d = [round(dice(r.lr_labels[0], st.labels[p], k), 4) for k in (1, 2, 3)]
                rows.append({"subject": s, "phase": tag, "roi": list(r.roi or []), "dice": d})
        off = [f"{x['subject']} {x['phase']}" for x in rows if x["dice"][0] < 0.5]
        report["acdc"][criterion] = {"cases": len(rows), "box_off_the_heart": off,
                                     "mean_dice": [round(float(np.mean([x["dice"][k] for x in rows])), 4)
                                                   for k in range(3)], "rows": rows}
        print(criterion, "ACDC", len(rows), "cases; LV Dice < 0.5:", off, "mean",
              report["acdc"][criterion]["mean_dice"], flush=True)
        sb = {}
        for series, contours in (("SCD0000101", "SC-HF-I-1"), ("SCD0000401", "SC-HF-I-5"), ("SCD0000501", "SC-HF-I-6")):
            st = attach_contours(load_study(data / "sunnybrook" / series), data / "sunnybrook" / "contours" / contours)
            boxes, lv = [], {}
            for p in range(st.n_phases):
                r = resolver.run(st, phases=[p], meshes="none", motion_correction=False)
                boxes.append(list(r.roi or []))
                if p in st.labelled_phases:
                    ks = sorted(k for t, k in st.meta.extra["contour_slices"] if t == p)
                    lv[p] = round(dice(r.lr_labels[0][ks], st.labels[p][ks], 1), 4)
            med = np.median(np.array(boxes, float), axis=0)
            dist = [float(np.abs(np.array(b, float) - med).max()) for b in boxes]
            sb[series] = {"boxes": boxes, "max_px_from_median_box": dist, "lv_cavity_dice": lv,
                          "phases_off_by_over_20_px": [p for p, v in enumerate(dist) if v > 20]}
            print(criterion, series, "LV Dice", lv, "phases with the box > 20 px off the median:",
                  sb[series]["phases_off_by_over_20_px"], flush=True)
        report["sunnybrook"][criterion] = sb
    pp.keep_largest_heart_component = PRODUCT_KEEP
    report["whole_field_fallbacks"] = fallbacks.count
    report["found_again_where_it_beats"] = fallbacks.moved
    print("coarse boxes given up for the whole field:", fallbacks.count)
    print("whole-field hearts where the cine hardly moves, found again where it beats:", fallbacks.moved)
    if args.against:
        report["paired"] = paired(report, json.loads(Path(args.against).read_text(encoding="utf-8")))
    if args.json:
        from gemini_cmr.core.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
