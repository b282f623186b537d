"""Paired comparison of two cross-validation runs of `gemini-cmr train cv` on the same folds.

    .venv/bin/python recipes/gemini-acdc/compare_cv.py RUN_A RUN_B [--folds 0,1,2,3] [--json OUT.json]

RUN_A and RUN_B are `train cv --out` folders (their `cv.json`), e.g. stage 1 (`cpu.json`) and stage 2
(`cpu_dropped.json`) of the ACDC recipe, or JSON files with "rows" (a committed result: `FILE#KEY` takes the
rows of its `KEY` entry, e.g. `ablation_deep_supervision_fold0.json#eval_b`; `FILE#KEY@METHOD` takes the
`METHOD:` columns of rows that hold several label placements, as `benchmarks/bench_lr_labels.py` writes them,
e.g. `lr_labels.json#accuracy@nearest`); `A+B+...` pools several (e.g.
the same comparison's folds from separate files: each patient must occur once). Only the held-out patients evaluated in both runs (and in
`--folds`, when given) are compared, each against itself: per structure and phase the mean Dice of A and
B and the mean of B - A with its standard error; per clinical measure (LVEDV, LVESV, LVEF, LV mass, RVEDV)
the mean and median absolute error of A and B, the mean of |B error| - |A error| with its standard error,
and the bias of each. Per fold the same for the LV and the median |LVEF error|. Nothing here chooses
anything on these patients: both runs' models are their last checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from gemini_cmr.core.evaluation.real import DICE_COLUMNS

CLINICAL = {"lv_edv_ml": "LVEDV (mL)", "lv_esv_ml": "LVESV (mL)", "lv_ef_pct": "LVEF (points)",
            "lv_mass_g": "LV mass (g)", "rv_edv_ml": "RVEDV (mL)"}


def _method_row(row: dict, method: str) -> dict:
    """The row of one label placement of a row with `METHOD:` columns: its Dice columns, and its errors
    (`METHOD:error_X`, prediction - manual) as `pred_X` with `manual_X` 0."""
    out = {k: v for k, v in row.items() if ":" not in k}
    cols = {k.split(":", 1)[1]: v for k, v in row.items() if k.startswith(method + ":")}
    if not cols:
        raise ValueError(f"{row.get('subject')} has no {method!r} columns")
    for k, v in cols.items():
        if k.startswith("error_"):
            out.update({f"pred_{k[6:]}": v, f"manual_{k[6:]}": 0.0})
        else:
            out[k] = v
    return out


def _rows(spec: str | Path) -> dict[str, dict]:
    """subject -> row of `spec`: a run folder, a JSON with "rows", `FILE#KEY` (the rows of FILE's KEY entry),
    `FILE[#KEY]@METHOD` (the METHOD columns, `_method_row`), or several of these joined by "+" (pooled; a
    subject in two of them is an error)."""
    out: dict[str, dict] = {}
    for part in str(spec).split("+"):
        part, _, method = part.partition("@")
        name, _, key = part.partition("#")
        path = Path(name) / "cv.json" if Path(name).is_dir() else Path(name)
        doc = json.loads(path.read_text())
        for r in (doc[key] if key else doc)["rows"]:
            if method:
                r = _method_row(r, method)
            if r["subject"] in out:
                raise ValueError(f"{r['subject']} occurs twice in {spec}")
            out[r["subject"]] = r
    return out


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def _error(row: dict, key: str) -> float | None:
    p, m = row.get(f"pred_{key}"), row.get(f"manual_{key}")
    if p is None or m is None or not (math.isfinite(p) and math.isfinite(m)):
        return None
    return float(p) - float(m)


def compare(a: dict[str, dict], b: dict[str, dict], folds: set[int] | None = None) -> dict:
    """The paired figures of runs `a` and `b` (subject -> row of cv.json) over their common subjects."""
    common = sorted(s for s in a.keys() & b.keys() if folds is None or int(a[s].get("fold", -1)) in folds)
    out: dict = {"n": len(common), "folds": sorted({int(a[s].get("fold", -1)) for s in common}), "dice": {},
                 "clinical": {}}
    for key in DICE_COLUMNS:
        pairs = [(a[s][key], b[s][key]) for s in common if a[s].get(key) is not None and b[s].get(key) is not None]
        d = [y - x for x, y in pairs]
        out["dice"][key] = {"n": len(pairs), "a": statistics.fmean(x for x, _ in pairs) if pairs else None,
                            "b": statistics.fmean(y for _, y in pairs) if pairs else None,
                            "diff": statistics.fmean(d) if d else None, "se": _se(d)}
    for key in CLINICAL:
        pairs = [(ea, eb) for s in common if (ea := _error(a[s], key)) is not None
                 and (eb := _error(b[s], key)) is not None]
        d = [abs(y) - abs(x) for x, y in pairs]
        out["clinical"][key] = {
            "n": len(pairs), "mean_abs_a": statistics.fmean(abs(x) for x, _ in pairs) if pairs else None,
            "mean_abs_b": statistics.fmean(abs(y) for _, y in pairs) if pairs else None,
            "median_abs_a": statistics.median(abs(x) for x, _ in pairs) if pairs else None,
            "median_abs_b": statistics.median(abs(y) for _, y in pairs) if pairs else None,
            "bias_a": statistics.fmean(x for x, _ in pairs) if pairs else None,
            "bias_b": statistics.fmean(y for _, y in pairs) if pairs else None,
            "abs_diff": statistics.fmean(d) if d else None, "se": _se(d)}
    return out


def _f(v: float | None, digits: int = 3, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def format_report(res: dict, name_a: str, name_b: str) -> str:
    lines = [f"{res['n']} held-out patients of folds {res['folds']}: A = {name_a}, B = {name_b}", "",
             "| Dice | A | B | B - A (se) |", "|---|---|---|---|"]
    for key, r in res["dice"].items():
        lines.append(f"| {key.replace('_', ' ', 1)} | {_f(r['a'])} | {_f(r['b'])} | "
                     f"{_f(r['diff'], 4, True)} ({_f(r['se'], 4)}) |")
    lines += ["", "| error | mean abs A | mean abs B | median abs A | median abs B | bias A | bias B | "
              "abs B - abs A (se) |", "|---|---|---|---|---|---|---|---|"]
    for key, r in res["clinical"].items():
        lines.append(f"| {CLINICAL[key]} | {_f(r['mean_abs_a'], 2)} | {_f(r['mean_abs_b'], 2)} | "
                     f"{_f(r['median_abs_a'], 2)} | {_f(r['median_abs_b'], 2)} | {_f(r['bias_a'], 2, True)} | "
                     f"{_f(r['bias_b'], 2, True)} | {_f(r['abs_diff'], 2, True)} ({_f(r['se'], 2)}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a", help="run folder, rows JSON, FILE#KEY, or several joined by +")
    ap.add_argument("run_b", help="the same for B")
    ap.add_argument("--folds", default=None, help="comma-separated folds (default: every fold both runs hold)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        a, b = _rows(args.run_a), _rows(args.run_b)
    except (OSError, ValueError, KeyError) as exc:
        print(f"compare_cv: cannot read the runs ({exc})", file=sys.stderr)
        return 2
    folds = {int(f) for f in args.folds.split(",")} if args.folds else None
    res = compare(a, b, folds)
    if res["n"] == 0:
        print("compare_cv: no held-out patient in both runs", file=sys.stderr)
        return 2
    print(format_report(res, str(args.run_a), str(args.run_b)))
    per_fold = {}
    for f in res["folds"]:
        r = compare(a, b, {f})
        per_fold[f] = r
        lv, ef = r["dice"], r["clinical"]["lv_ef_pct"]
        print(f"fold {f} ({r['n']}): LV ED {_f(lv['ed_lv_cavity']['a'])} / {_f(lv['ed_lv_cavity']['b'])}, "
              f"LV ES {_f(lv['es_lv_cavity']['a'])} / {_f(lv['es_lv_cavity']['b'])}, median |LVEF error| "
              f"{_f(ef['median_abs_a'], 2)} / {_f(ef['median_abs_b'], 2)} (A / B)")
    if args.json:
        args.json.write_text(json.dumps({"a": str(args.run_a), "b": str(args.run_b), **res, "per_fold": per_fold},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
