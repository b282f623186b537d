#!/usr/bin/env python
"""How the automatic quality checks (`core.qc`) behave on real data: the anatomical checks on every manual
label map of the ACDC training set (each should pass), and every check on whole cines super-resolved by a
model (the three Sunnybrook GE series and ACDC patients; a clean run should pass, and the values say how far
from each limit real studies lie). Where a failed segmentation finds a failed check is measured by the
robustness evaluation (`gemini-cmr evaluate robustness`: its rows' `qc_failed`); `--failures` runs it here on
the same studies with perturbations that make segmentations fail, with the heart-finding pass's motion check
off as well (`core.postprocess.HEART_MOTION_MIN`: without it noise sends the whole-field pass into the abdomen),
and counts how many failed phases (a structure's Dice below `--fail-below`) and how many good ones a check flags.

    .venv/bin/python scripts/qc_check.py [--model DIR] [--acdc 1 21 41 61 81] [--no-runs] [--failures] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def manual_labels(acdc: Path) -> dict:
    """The anatomical checks on the manual ED/ES labels of every ACDC training patient, and the phenotypes
    of those labels against the plausible ranges (`core.phenotypes.PLAUSIBLE_RANGES`: an expert's
    segmentation should not be flagged)."""
    from gemini_cmr.core import phenotypes as ph
    from gemini_cmr.core import qc
    from gemini_cmr.core.io.loader import load_study

    rows = []
    implausible, values = [], {k: [] for k in ph.PLAUSIBLE_RANGES}
    for folder in sorted(acdc.glob("patient*")):
        study = load_study(folder)
        phases = sorted(study.labelled_phases)
        phen = ph.compute_phenotypes(study.labels[phases], study.grid, phases, study.meta)
        for k in values:
            if phen.get(k) is not None and np.isfinite(phen[k]):
                values[k].append(float(phen[k]))
        bad = [k for k, v in phen["value_status"].items() if v == ph.IMPLAUSIBLE]
        if bad:
            implausible.append({"study": folder.name, **{k: phen.get(k) for k in bad}})
        sy, sx = study.grid.spacing[1], study.grid.spacing[0]
        for t in study.labelled_phases:
            lab = study.labels[t]
            checks = [qc.ring_check(lab, t), qc.continuity_check(lab, t), qc.rv_check(lab, t, (sy, sx))]
            rows.append({"study": folder.name, "phase": int(t),
                         **{c.name: (None if not np.isfinite(c.value) else c.value) for c in checks},
                         "failed": [c.name for c in checks if not c.ok]})
    return {"phases": len(rows), "failed": [r for r in rows if r["failed"]], "range": _ranges(rows),
            "phenotypes_implausible": implausible,
            "phenotype_range": {k: {"min": min(v), "max": max(v), "n": len(v)} for k, v in values.items() if v}}


def _ranges(rows: list[dict]) -> dict:
    out = {}
    for name in ("lv_ring", "lv_continuous", "rv_beside_lv", "lv_curve_smooth"):
        v = np.array([r[name] for r in rows if r.get(name) is not None], dtype=np.float64)
        if v.size:
            out[name] = {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max()), "n": int(v.size)}
    return out


def runs(model: str | None, acdc_ids: list[int]) -> dict:
    """Whole studies through `SuperResolver.run` (motion correction on, as `super-resolve` runs them): the GE
    cines, ACDC patients' two frames, the Philips series (its complete slices)."""
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_sunnybrook import ALL_SERIES

    resolver = SuperResolver(model=model or str(acdc_model_path()), device="cpu")
    studies = [(s, DATA / "sunnybrook" / s) for s, _ in ALL_SERIES]
    # ACDC as the project holds it: the two labelled frames of each patient (no volume curve to check)
    studies += [(f"patient{i:03d}", DATA / "acdc" / "training" / f"patient{i:03d}") for i in acdc_ids]
    if (DATA / "philips_partial" / "LVSA1").is_dir():
        studies.append(("philips LVSA1", DATA / "philips_partial" / "LVSA1"))
    rows = []
    for name, path in studies:
        study = load_study(path, allow_incomplete=True)
        t0 = time.perf_counter()
        res = resolver.run(study, phases="all", meshes="none")
        row = {"study": name, "phases": len(res.phases), "seconds": round(time.perf_counter() - t0, 2),
               "qc_seconds": round(res.timings.get("qc", 0.0), 4), "passed": res.qc["passed"],
               "failed": res.qc["failed"]}
        for c in res.qc["checks"]:
            key = c["name"] if c["phase"] is None else f"{c['name']}@{'ed' if c['phase'] == res.ed_phase else 'es'}"
            row[key] = c["value"]
        print(name, "passed" if row["passed"] else f"FAILED {row['failed']}", file=sys.stderr, flush=True)
        rows.append(row)
    return {"model_id": resolver.model_id, "rows": rows}


FAILURE_PERTURBATIONS = ["noise_5pc", "noise_10pc", "pixel_2.4mm", "gamma_1.6", "transposed"]


def failures(model: str | None, acdc_ids: list[int], fail_below: float) -> dict:
    """Robustness rows with the heart pass's motion check on and off; how the quality checks split them."""
    from gemini_cmr.core import postprocess
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation import robustness as rb
    from gemini_cmr.core.io.contours import attach_contours
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_sunnybrook import ALL_SERIES

    resolver = SuperResolver(model=model or str(acdc_model_path()), device="cpu")
    studies = [(s, attach_contours(load_study(DATA / "sunnybrook" / s), DATA / "sunnybrook" / "contours" / c))
               for s, c in ALL_SERIES]
    studies += [(f"patient{i:03d}", load_study(DATA / "acdc" / "training" / f"patient{i:03d}")) for i in acdc_ids]
    rows = []
    keep = postprocess.HEART_MOTION_MIN
    try:
        for check in ("on", "off"):
            postprocess.HEART_MOTION_MIN = keep if check == "on" else -1.0
            for name, study in studies:
                for r in rb.evaluate_study(resolver, study, name, FAILURE_PERTURBATIONS):
                    if check == "off" and r["perturbation"] == "none":
                        continue  # the same as with the check: it does not fire on clean studies
                    dices = [r[k] for k in ("lv_cavity", "lv_myocardium", "rv_cavity") if np.isfinite(r[k])]
                    rows.append({**r, "motion_check": check, "worst_dice": min(dices)})
                    print(f"{check:3s} {rb.format_row(r)} qc {r['qc_failed'] or 'passed'}", file=sys.stderr,
                          flush=True)
    finally:
        postprocess.HEART_MOTION_MIN = keep
    bad = [r for r in rows if r["worst_dice"] < fail_below]
    good = [r for r in rows if r["worst_dice"] >= fail_below]
    return {"model_id": resolver.model_id, "fail_below": fail_below, "perturbations": FAILURE_PERTURBATIONS,
            "failed_phases": len(bad), "failed_flagged": sum(bool(r["qc_failed"]) for r in bad),
            "good_phases": len(good), "good_flagged": sum(bool(r["qc_failed"]) for r in good),
            "flagged_checks": sorted({c for r in rows for c in r["qc_failed"]}), "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the ACDC research model)")
    ap.add_argument("--acdc", type=int, nargs="*", default=[1, 21, 41, 61, 81], help="ACDC patients to run whole")
    ap.add_argument("--no-runs", action="store_true", help="no whole-cine runs")
    ap.add_argument("--failures", action="store_true", help="also the perturbed runs that make segmentations fail")
    ap.add_argument("--fail-below", type=float, default=0.5, help="a phase failed: a structure's Dice below this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.io.jsonio import dumps

    out = {"command": "scripts/qc_check.py " + " ".join(argv or sys.argv[1:]),
           "manual_acdc": manual_labels(DATA / "acdc" / "training")}
    m = out["manual_acdc"]
    print(f"ACDC manual labels: {m['phases']} phases, {len(m['failed'])} fail a check; {m['range']}")
    print(f"ACDC manual labels' phenotypes: {len(m['phenotypes_implausible'])} patients flagged implausible "
          f"{m['phenotypes_implausible']}; {m['phenotype_range']}")
    if not args.no_runs:
        out["runs"] = runs(args.model, args.acdc)
        rr = out["runs"]["rows"]
        print(f"whole cines: {sum(r['passed'] for r in rr)} of {len(rr)} pass; {_ranges_runs(rr)}")
    if args.failures:
        out["failures"] = f = failures(args.model, args.acdc, args.fail_below)
        print(f"perturbed runs: {f['failed_flagged']} of {f['failed_phases']} failed phases (a Dice below "
              f"{f['fail_below']}) flagged, {f['good_flagged']} of {f['good_phases']} others; checks that fired: "
              f"{', '.join(f['flagged_checks']) or 'none'}")
    if args.json:
        args.json.write_text(dumps(out, indent=1))
    return 0


def _ranges_runs(rows: list[dict]) -> dict:
    keys = sorted({k for r in rows for k in r if "@" in k or k in ("lv_curve_smooth", "heart_beats", "myo_conserved")})
    return {k: [round(min(v), 3), round(max(v), 3)] for k in keys
            if (v := [r[k] for r in rows if r.get(k) is not None])}


if __name__ == "__main__":
    raise SystemExit(main())
