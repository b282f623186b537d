"""The SR labels back on the acquired slices (the engine's `lr_labels`): smoothed placement
(`core.geometry.labels_onto_slices`, the product: class indicators smoothed in-plane, interpolated linearly)
against nearest-neighbour resampling (the baseline: each acquired pixel takes the SR label nearest to it),
in one process.

Speed on a real study (default: the Sunnybrook GE cine; every phase, the slice shifts of its motion
correction applied): seconds per cine of each method, alternating, median over `--rounds`, and the ratio.
With `--runs RUN --folds K ...` also accuracy on ACDC cross-validation folds (`RUN/fold<k>/model`, each on
its own held-out patients, the pipeline of `gemini-cmr train cv`'s evaluation): Dice per structure at ED and
ES of both methods from the same prediction, the paired differences (mean and standard error), and the
LVEDV, LVESV, LVEF, LV mass and RVEDV errors against the manual labels (bias, median and mean |error|).
With `--sunnybrook` also the three contoured GE series with the model `super-resolve` chooses (LV cavity and
myocardium Dice on the contoured slices).

    .venv/bin/python benchmarks/bench_lr_labels.py [--study DIR] [--rounds 5] [--sunnybrook] [--no-speed]
        [--runs runs/cv-e1:2 runs/abl-deep_supervision:0 | --runs RUN --folds K ...]
        [--data ../shared/data/acdc/training] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from bench_motion import DEFAULT_STUDY


def nearest_on_acquired(sr_labels: np.ndarray, sr, grid, shifts_mm) -> np.ndarray:
    """The baseline: slice k's pixel p takes the SR label nearest to world(p) - shift_k."""
    from gemini_cmr.core.geometry import resample_nearest_stack
    from gemini_cmr.core.study import Grid

    nz, ny, nx = grid.shape
    out = np.zeros((len(sr_labels), nz, ny, nx), np.uint8)
    d = grid.directions
    for k in range(nz):
        aff = grid.affine.copy()
        shift = np.zeros(2) if shifts_mm is None else np.asarray(shifts_mm[k], float)
        aff[:3, 3] = grid.index_to_world(np.array([0.0, 0.0, float(k)])) - d[:, :2] @ shift
        out[:, k] = resample_nearest_stack(sr_labels, sr, Grid((1, ny, nx), aff))[:, 0]
    return out


def shifts_of(res):
    return res.motion.shifts_mm if res.motion is not None and res.motion.applied else None


def speed(study_path: str, rounds: int) -> dict:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.geometry import labels_onto_slices
    from gemini_cmr.core.io import load_study

    study = load_study(study_path)
    res = SuperResolver(device="cpu").run(study, meshes="none")
    shifts = shifts_of(res)
    times: dict[str, list[float]] = {"nearest": [], "smoothed": []}
    out = {}
    for _ in range(max(1, rounds)):
        for name, fn in (("nearest", nearest_on_acquired), ("smoothed", labels_onto_slices)):
            t = time.perf_counter()
            out[name] = fn(res.sr_labels, res.sr_grid, study.grid, shifts)
            times[name].append(time.perf_counter() - t)
    same = float((out["nearest"] == out["smoothed"]).mean())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{study_path}: {len(res.phases)} phases, {study.grid.shape} acquired grid; median s per cine: nearest "
          f"{med['nearest']:.3f}, smoothed {med['smoothed']:.3f} (x{med['smoothed'] / med['nearest']:.2f}); "
          f"{100 * same:.2f} % of the acquired voxels equal", flush=True)
    return {"study": str(study_path), "model_id": res.model_id[:12], "phases": len(res.phases),
            "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 4) for k, v in med.items()},
            "ratio_smoothed_to_nearest": round(med["smoothed"] / med["nearest"], 3),
            "voxels_equal": same}


def paired_dice(rows: list[dict], what: str) -> dict:
    """Mean Dice of both methods and the paired difference (mean, standard error) per structure and phase."""
    summary = {}
    for key in sorted({c.split(":", 1)[1] for c in rows[0] if ":" in c and ":error_" not in c}):
        a = np.array([r[f"nearest:{key}"] for r in rows], float)
        b = np.array([r[f"smoothed:{key}"] for r in rows], float)
        ok = ~(np.isnan(a) | np.isnan(b))
        d = b[ok] - a[ok]
        summary[key] = {"nearest": float(a[ok].mean()), "smoothed": float(b[ok].mean()),
                        "difference": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))), "n": int(ok.sum())}
        print(f"{what} {key}: nearest {summary[key]['nearest']:.4f}, smoothed {summary[key]['smoothed']:.4f}, "
              f"difference {summary[key]['difference']:+.4f} (se {summary[key]['se']:.4f}, n {summary[key]['n']})")
    return summary


def accuracy(runs: list[str], folds: list[int], data: str) -> dict:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.metrics import dice_per_structure
    from gemini_cmr.core.evaluation.real import ed_es_phenotypes
    from gemini_cmr.core.geometry import labels_onto_slices
    from gemini_cmr.core.train.cv import fold_studies

    rows = []
    jobs = []  # (run folder, fold): "RUN:K,K" names its folds, a bare RUN takes `folds`
    for spec in runs:
        run, _, ks = spec.rpartition(":") if ":" in spec else (spec, "", "")
        jobs += [(run, int(k)) for k in ks.split(",")] if ks else [(spec, k) for k in folds]
    for run, k in jobs:
        resolver = SuperResolver(model=Path(run) / f"fold{k}" / "model", device="cpu")
        for name, load in fold_studies(f"acdc:{data}", k, 5):
            st = load()
            ed, es = st.meta.ed_phase, st.meta.es_phase
            res = resolver.run(st, phases=[ed, es], meshes="none")
            methods = {"nearest": nearest_on_acquired(res.sr_labels, res.sr_grid, st.grid, shifts_of(res)),
                       "smoothed": labels_onto_slices(res.sr_labels, res.sr_grid, st.grid, shifts_of(res))}
            row = {"subject": name, "run": run, "fold": k}
            manual = ed_es_phenotypes(st.labels[ed], st.labels[es], st.grid)
            for tag, t in (("ed", ed), ("es", es)):
                i = res.phases.index(t)
                for m, lab in methods.items():
                    row.update({f"{m}:{tag}_{s}": v for s, v in dice_per_structure(lab[i], st.labels[t]).items()})
            for m, lab in methods.items():  # clinical errors, prediction - manual
                pred = ed_es_phenotypes(lab[res.phases.index(ed)], lab[res.phases.index(es)], st.grid)
                row.update({f"{m}:error_{q}": pred[q] - manual[q] for q in pred})
            rows.append(row)
            print(f"fold {k} {name}: myocardium ED {row['nearest:ed_lv_myocardium']:.4f} -> "
                  f"{row['smoothed:ed_lv_myocardium']:.4f}", flush=True)
    summary = paired_dice(rows, "all")
    by_run = {f"{r}:{k}": paired_dice([row for row in rows if row["run"] == r and row["fold"] == k], f"{r}:{k}")
              for r, k in jobs} if len(jobs) > 1 else {}
    clinical = {}
    for key in sorted({c.split(":", 1)[1] for c in rows[0] if ":error_" in c}):
        clinical[key] = {}
        for m in ("nearest", "smoothed"):
            e = np.array([r[f"{m}:{key}"] for r in rows], float)
            clinical[key][m] = {"bias": float(e.mean()), "median_abs": float(np.median(np.abs(e))),
                                "mean_abs": float(np.abs(e).mean())}
        print(f"{key[6:]}: bias {clinical[key]['nearest']['bias']:+.2f} -> {clinical[key]['smoothed']['bias']:+.2f}, "
              f"median |error| {clinical[key]['nearest']['median_abs']:.2f} -> {clinical[key]['smoothed']['median_abs']:.2f}")
    return {"runs": [f"{r}:{k}" for r, k in jobs], "summary": summary, "summary_by_run": by_run,
            "clinical_errors": clinical, "rows": rows}


def sunnybrook(root: Path) -> dict:
    """The three contoured GE series with the model `super-resolve` chooses: LV cavity and myocardium Dice on
    the contoured slices of each contoured phase (`core.evaluation.real.contour_dice`'s scoring), both methods
    from the same prediction."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.metrics import dice
    from gemini_cmr.core.geometry import labels_onto_slices
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.loader import load_study

    rows = []
    resolver = SuperResolver(device="cpu")
    for series, contours in (("SCD0000101", "SC-HF-I-1"), ("SCD0000401", "SC-HF-I-5"), ("SCD0000501", "SC-HF-I-6")):
        study = attach_contours(load_study(root / series), root / "contours" / contours)
        pairs = study.meta.extra["contour_slices"]
        res = resolver.run(study, phases=study.labelled_phases, meshes="none")
        methods = {"nearest": nearest_on_acquired(res.sr_labels, res.sr_grid, study.grid, shifts_of(res)),
                   "smoothed": labels_onto_slices(res.sr_labels, res.sr_grid, study.grid, shifts_of(res))}
        for t in study.labelled_phases:
            ks = sorted(k for tt, k in pairs if tt == t)
            truth = study.labels[t][ks]
            row = {"series": series, "phase": t, "model_id": res.model_id[:12]}
            for m, lab in methods.items():
                pred = lab[res.phases.index(t)][ks]
                row[f"{m}:lv_cavity"] = dice(pred, truth, 1)
                row[f"{m}:lv_myocardium"] = dice(pred, truth, 2) if (truth == 2).any() else None
            rows.append(row)
            print(f"{series} phase {t}: LV cavity {row['nearest:lv_cavity']:.3f} -> {row['smoothed:lv_cavity']:.3f}, "
                  f"myocardium {row['nearest:lv_myocardium'] or float('nan'):.3f} -> "
                  f"{row['smoothed:lv_myocardium'] or float('nan'):.3f}", flush=True)
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(DEFAULT_STUDY))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", nargs="+", default=None,
                    help="`train cv` run folders with fold<k>/model (RUN:K[,K...] names the folds of that run)")
    ap.add_argument("--folds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "acdc" / "training"))
    ap.add_argument("--sunnybrook", action="store_true", help="also the three contoured GE series (../shared/data)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result = {"command": "benchmarks/bench_lr_labels.py"}
    if not args.no_speed:
        result["speed"] = speed(args.study, args.rounds)
    if args.runs:
        result["accuracy"] = accuracy(args.runs, args.folds, args.data)
    if args.sunnybrook:
        result["sunnybrook"] = sunnybrook(Path(args.study).resolve().parent)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
