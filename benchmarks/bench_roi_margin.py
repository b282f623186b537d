"""The heart-fitted network box (`inference.roi_margin_mm`: the network runs only on the part of the
heart box within M mm of the heart the whole-field pass found, `core.postprocess.fit_heart_box`) against the
whole heart box (M = 0), for each margin M asked for.

Speed and agreement on a real study (default: the Sunnybrook GE cine), in one process with the variants
alternating: network seconds per cine (all phases, heart-finding pass included), the network box, and the
share of SR label voxels equal to the whole box's (all voxels, and the voxels labelled by either).
With `--runs RUN` also accuracy on ACDC cross-validation folds (`RUN/fold<k>/model`, each on its own held-out
fold, the evaluation of `gemini-cmr train cv`): Dice per structure at ED and ES, median |LVEF error| and
LV mass bias per margin, and the paired differences against M = 0 (mean and standard error over patients).

    .venv/bin/python benchmarks/bench_roi_margin.py [--study DIR] [--margins 12 16 24] [--rounds 3]
        [--runs runs/abl-continue600-dropped --folds 0 1 2 3 4 --data ../shared/data/acdc/training]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from bench_motion import DEFAULT_STUDY, warm_predictor


def set_margin(predictor, margin: float) -> None:
    """The predictor's model config with `inference.roi_margin_mm` = margin (0: the whole heart box)."""
    inf = dict(predictor.config.get("inference") or {})
    inf["roi_margin_mm"] = float(margin)
    predictor.config["inference"] = inf


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Share of equal label voxels: all of them, and those labelled (> 0) in either."""
    either = (a > 0) | (b > 0)
    same = a == b
    return float(same.mean()), float(same[either].mean()) if either.any() else 1.0


def speed(study_path: str, margins: list[float], rounds: int, setter=set_margin, base_name: str = "whole_box",
          label: str = "M", value_key: str = "margin_mm") -> dict:
    """Alternating `predict` of all phases per variant (the first value of `[0.0] + margins` is the base, set
    by `setter(predictor, value)`): times, the network box and the labels' agreement with the base."""
    study, predictor = warm_predictor(study_path)
    variants = [0.0] + margins
    times: dict[float, list[float]] = {m: [] for m in variants}
    preds: dict[float, object] = {}
    for r in range(max(1, rounds)):
        for m in variants:
            setter(predictor, m)
            t = time.perf_counter()
            preds[m] = predictor.predict(study)
            times[m].append(time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{label}={m:g}: {times[m][-1]:.2f} s" for m in variants), flush=True)
    base = preds[0.0]
    out = {"study": str(study_path), "phases": study.n_phases, "roi_sr_yx": list(base.roi or ()), "variants": {}}
    for m in variants:
        p = preds[m]
        all_eq, fg_eq = agreement(np.asarray(p.sr_labels), np.asarray(base.sr_labels))
        med = statistics.median(times[m])
        out["variants"][f"{m:g}"] = {
            value_key: m, "predict_s": times[m], "predict_s_median": med,
            f"speedup_vs_{base_name}": statistics.median(times[0.0]) / med,
            "network_roi_sr_yx": list(p.net_roi or ()), "labels_equal": all_eq, "labels_equal_in_heart": fg_eq,
        }
        box = p.net_roi or p.roi
        print(f"{label}={m:g}: predict (all phases, heart pass included) median {med:.2f} s "
              f"(x{out['variants'][f'{m:g}'][f'speedup_vs_{base_name}']:.2f}), box {box} of {base.roi}, "
              f"labels equal {100 * all_eq:.3f}% ({100 * fg_eq:.2f}% of heart voxels)")
    return out


def accuracy(data: str, runs: str, folds: list[int], margins: list[float], limit: int | None, setter=set_margin,
             base_name: str = "whole_box", label: str = "M") -> dict:
    """Each fold model on its held-out patients (`evaluate_study`, ED and ES) per variant, as `speed`; Dice,
    median |LVEF error| and LV mass bias per variant, and the paired differences against the base."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.real import evaluate_study, summarise
    from gemini_cmr.core.study import STRUCTURES
    from gemini_cmr.core.train.cv import fold_studies

    variants = [0.0] + margins
    rows: dict[float, list[dict]] = {m: [] for m in variants}
    for k in folds:
        resolver = SuperResolver(model=Path(runs) / f"fold{k}" / "model", device="cpu")
        studies = fold_studies(data, k, 5)[:limit]
        for sid, load in studies:
            study = load()
            line = []
            for m in variants:
                setter(resolver.predictor, m)
                row = evaluate_study(resolver, study, sid)
                row["fold"] = k
                rows[m].append(row)
                line.append(f"{label}={m:g} {row['ed_lv_myocardium']:.3f}/{row['es_lv_myocardium']:.3f} {row['seconds']:.1f} s")
            print(f"fold {k} {sid}: myo ED/ES " + ", ".join(line), flush=True)
    keys = [f"{t}_{s}" for t in ("ed", "es") for s in STRUCTURES.values()]
    out: dict = {"data": data, "runs": runs, "folds": folds, "n": len(rows[0.0]), "variants": {},
                 "rows": {f"{m:g}": rows[m] for m in variants}}
    for m in variants:
        s = summarise(rows[m])
        d = {key: s[f"dice_{key}"]["mean"] for key in keys}
        d["median_abs_lvef"] = s["err_lv_ef_pct"]["median_abs"]
        d["lv_mass_bias_g"] = s["err_lv_mass_g"]["bias"]
        d["seconds_mean"] = float(np.mean([r["seconds"] for r in rows[m]]))
        if m:
            diff = {}
            for key in keys + ["abs_lvef"]:
                get = (lambda r: abs(r["pred_lv_ef_pct"] - r["manual_lv_ef_pct"])) if key == "abs_lvef" \
                    else (lambda r, key=key: r[key])
                x = np.array([get(a) - get(b) for a, b in zip(rows[m], rows[0.0], strict=True)], dtype=float)
                x = x[np.isfinite(x)]
                diff[key] = {"mean": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(len(x)))}
            d[f"paired_minus_{base_name}"] = diff
        out["variants"][f"{m:g}"] = d
        print(f"{label}={m:g}: " + " ".join(f"{key} {d[key]:.3f}" for key in keys)
              + f" median|LVEF| {d['median_abs_lvef']:.2f} mass bias {d['lv_mass_bias_g']:+.1f} g, "
              f"{d['seconds_mean']:.1f} s per patient")
        if m:
            print(f"   paired vs {base_name}: " + " ".join(
                f"{key} {v['mean']:+.4f} ({v['se']:.4f})" for key, v in d[f"paired_minus_{base_name}"].items()))
    return out


def parse_args(doc: str, values: str, default: float, rounds: int) -> argparse.Namespace:
    """The command line of this benchmark and its siblings: the study, the variant values (`--VALUES`), rounds,
    and the cross-validation run whose folds give the accuracy."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(DEFAULT_STUDY))
    ap.add_argument(f"--{values}", dest="values", type=float, nargs="+", default=[default])
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--runs", help="a `train cv` run folder: also the Dice on its folds")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--data", default="acdc:../shared/data/acdc/training")
    ap.add_argument("--limit", type=int, help="patients per fold")
    ap.add_argument("--no-speed", action="store_true", help="only the fold accuracy")
    ap.add_argument("--json", help="write the results here")
    return ap.parse_args()


def start_result() -> dict:
    import torch

    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_1min": os.getloadavg()[0]}


def finish_result(result: dict, path: str | None) -> None:
    result["load_1min_end"] = os.getloadavg()[0]
    if path:
        Path(path).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    args = parse_args(__doc__, "margins", 16.0, 3)
    result = start_result()
    if not args.no_speed:
        result["speed"] = speed(args.study, args.values, args.rounds)
    if args.runs:
        result["accuracy"] = accuracy(args.data, args.runs, args.folds, args.values, args.limit)
    finish_result(result, args.json)


if __name__ == "__main__":
    main()
