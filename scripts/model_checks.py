#!/usr/bin/env python
"""The checks a candidate ACDC model must pass before it replaces the shipped one, in one command.

    .venv/bin/python scripts/model_checks.py --model DIR --out OUTDIR [--against resources/models/gemini-acdc]
        [--only heart_pass sunnybrook precision qc] [--redo]

Runs, each into OUTDIR/<name>.json (a report already there is kept, so an interrupted run resumes; `--redo`
runs it again):

- `heart_pass`: `scripts/heart_pass_check.py --model DIR --criteria product` (the heart box on every ACDC
  training patient at ED and ES and on every phase of the three Sunnybrook series);
- `sunnybrook`: `scripts/eval_sunnybrook.py --all-series --model AGAINST --model DIR` (the GE series' contours,
  both models in one run);
- `precision`: `scripts/precision_check.py --model DIR` (bf16 against float32, whole cines as `super-resolve`
  runs them);
- `qc`: `scripts/qc_check.py --model DIR --failures` (the automatic quality checks on clean runs and on
  perturbed runs that make segmentations fail).

Then one line per check, PASS or FAIL, and OUTDIR/summary.json. What passes (the criteria the project has
used for every shipped model; docs/DEVELOPING.md):

- heart_pass: no more ACDC cases with the box off the heart (LV cavity Dice below 0.5), and no more
  Sunnybrook phases whose box lies over 20 pixels from the series' median box, than the shipped model's report
  (none, without a report);
- sunnybrook: the candidate level with AGAINST on the contoured phases: its mean LV cavity and myocardium Dice
  at most 0.01 below AGAINST's (paired phases);
- precision: at least 99.9 % of the SR label voxels equal in every study (overlaps are printed);
- qc: no clean run fails a check that passes with the shipped model, and the perturbed runs' failed phases
  are flagged at least as often as with the shipped model.

The shipped model's reports are `benchmarks/results/heart_pass_check_<id>.json` and `qc_check_<id>.json`, <id>
the first 6 hex digits of AGAINST's model id (`--reference-heart`, `--reference-qc` to name others); a check
whose reference report is missing is judged on its absolute criteria only, and says so. Exit status 0 when
every check run passes, 1 when one fails, 2 when a check could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("heart_pass", "sunnybrook", "precision", "qc")
DICE_LEVEL = 0.01  # the candidate's GE Dice may be this much below the shipped model's
BF16_EQUAL_PCT = 99.9
BOX_OFF_PX = 20


def model_id(folder: Path) -> str:
    """The model's id as the product names it (`core.models.store`: the weights file's sha256)."""
    from gemini_cmr.core.models import store

    return store.file_sha256(store.model_files(folder)[0])


def commands(model: str, against: str, out: Path, python: str = sys.executable) -> dict[str, list[str]]:
    s = ROOT / "scripts"
    return {
        "heart_pass": [python, str(s / "heart_pass_check.py"), "--model", model, "--criteria", "product",
                       "--json", str(out / "heart_pass.json")],
        "sunnybrook": [python, str(s / "eval_sunnybrook.py"), "--all-series", "--model", against, "--model", model,
                       "--json", str(out / "sunnybrook.json")],
        "precision": [python, str(s / "precision_check.py"), "--model", model, "--json", str(out / "precision.json")],
        "qc": [python, str(s / "qc_check.py"), "--model", model, "--failures", "--json", str(out / "qc.json")],
    }


# --- judging the reports -------------------------------------------------------------------------------
def _off_counts(report: dict) -> tuple[int, int]:
    acdc = report.get("acdc", {}).get("product", {})
    sb = report.get("sunnybrook", {}).get("product", {})
    return len(acdc.get("box_off_the_heart", [])), sum(len(v.get("phases_off_by_over_20_px", [])) for v in sb.values())


def judge_heart_pass(report: dict, reference: dict | None) -> tuple[bool, str]:
    acdc_off, sb_off = _off_counts(report)
    text = f"ACDC boxes off the heart {acdc_off}, Sunnybrook phases over {BOX_OFF_PX} px from the median box {sb_off}"
    if reference is None:
        return acdc_off == 0 and sb_off == 0, text + " (no shipped report to compare)"
    ref_acdc, ref_sb = _off_counts(reference)
    return acdc_off <= ref_acdc and sb_off <= ref_sb, text + f" (shipped {ref_acdc}, {ref_sb})"


def judge_sunnybrook(rows: list[dict], model: str, against: str) -> tuple[bool, str]:
    def by_key(name: str) -> dict:
        return {(r["series"], r["phase"]): r for r in rows if r["model"] == name and not r.get("tta")}

    cand, ref = by_key(model), by_key(against)
    keys = sorted(set(cand) & set(ref))
    if not keys:
        return False, "no contoured phase scored by both models"
    parts, ok = [], True
    for structure in ("lv_cavity", "lv_myocardium"):
        pairs = [(cand[k][structure], ref[k][structure]) for k in keys
                 if cand[k].get(structure) is not None and ref[k].get(structure) is not None]
        if not pairs:
            continue
        c = sum(p[0] for p in pairs) / len(pairs)
        r = sum(p[1] for p in pairs) / len(pairs)
        ok &= c >= r - DICE_LEVEL
        parts.append(f"{structure} {c:.3f} against {r:.3f} ({len(pairs)} phases)")
    return ok, "; ".join(parts)


def judge_precision(rows: list[dict]) -> tuple[bool, str]:
    if not rows:
        return False, "no study checked"
    ok = all(r["labels_equal_pct"] >= BF16_EQUAL_PCT for r in rows)
    parts = [f"{r['study']} {r['labels_equal_pct']:.3f}% (overlap {min(r['overlap'].values()):.3f})" for r in rows]
    return ok, ", ".join(parts) + f"; at least {BF16_EQUAL_PCT}% needed"


def _clean_failures(report: dict) -> set[str]:
    return {r["study"] for r in report.get("runs", {}).get("rows", []) if not r.get("passed", True)}


def judge_qc(report: dict, reference: dict | None) -> tuple[bool, str]:
    failing = _clean_failures(report)
    f = report.get("failures", {})
    caught = f"{f.get('failed_flagged', 0)} of {f.get('failed_phases', 0)} failed phases flagged, " \
             f"{f.get('good_flagged', 0)} of {f.get('good_phases', 0)} good ones"
    text = f"clean runs failing: {', '.join(sorted(failing)) or 'none'}; {caught}"
    if reference is None:
        return not failing, text + " (no shipped report to compare)"
    new = failing - _clean_failures(reference)
    rf = reference.get("failures", {})
    rate = f.get("failed_flagged", 0) / max(1, f.get("failed_phases", 0)) if f.get("failed_phases") else 1.0
    ref_rate = rf.get("failed_flagged", 0) / max(1, rf.get("failed_phases", 0)) if rf.get("failed_phases") else 1.0
    ok = not new and rate >= ref_rate
    return ok, text + f" (shipped: {rf.get('failed_flagged', 0)} of {rf.get('failed_phases', 0)}, " \
                      f"{rf.get('good_flagged', 0)} of {rf.get('good_phases', 0)}" \
                      + (f"; newly failing: {', '.join(sorted(new))}" if new else "") + ")"


def _load(path: Path | None) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text())


def judge(out: Path, model: str, against: str, reference_heart: Path | None, reference_qc: Path | None,
          names=CHECKS) -> dict[str, dict]:
    """Each check's verdict from the reports in `out` ({name: {"passed", "detail"}}; a missing report: not run)."""
    verdicts: dict[str, dict] = {}
    for name in names:
        report = _load(out / f"{name}.json")
        if report is None:
            verdicts[name] = {"passed": None, "detail": "no report"}
            continue
        if name == "heart_pass":
            ok, detail = judge_heart_pass(report, _load(reference_heart))
        elif name == "sunnybrook":
            ok, detail = judge_sunnybrook(report["rows"], model, against)
        elif name == "precision":
            ok, detail = judge_precision(report["rows"])
        else:
            ok, detail = judge_qc(report, _load(reference_qc))
        verdicts[name] = {"passed": bool(ok), "detail": detail}
    return verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the candidate model folder")
    ap.add_argument("--against", default="resources/models/gemini-acdc", help="the shipped model folder")
    ap.add_argument("--out", required=True, type=Path, help="folder for the reports and summary.json")
    ap.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS))
    ap.add_argument("--redo", action="store_true", help="run a check again even where its report exists")
    ap.add_argument("--reference-heart", type=Path, default=None)
    ap.add_argument("--reference-qc", type=Path, default=None)
    args = ap.parse_args(argv)
    from gemini_cmr.core.errors import ModelError
    from gemini_cmr.core.io.atomic import atomic_write_text

    ids = {}
    for folder in (args.model, args.against):
        try:
            ids[folder] = model_id(Path(folder))
        except ModelError as e:
            print(f"model_checks: {folder}: not a model folder ({e})", file=sys.stderr)
            return 2
    short = ids[args.against][:6]
    results = ROOT / "benchmarks" / "results"
    ref_heart = args.reference_heart or results / f"heart_pass_check_{short}.json"
    ref_qc = args.reference_qc or results / f"qc_check_{short}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    cmds = commands(args.model, args.against, args.out)
    for name in args.only:
        report = args.out / f"{name}.json"
        if report.is_file() and not args.redo:
            print(f"{name}: kept {report}", flush=True)
            continue
        print(f"{name}: {' '.join(cmds[name][1:])}", flush=True)
        if subprocess.run(cmds[name], cwd=ROOT).returncode != 0 or not report.is_file():
            print(f"model_checks: {name}: the check failed to run (see its output above)", file=sys.stderr)
            return 2
    verdicts = judge(args.out, args.model, args.against, ref_heart, ref_qc, args.only)
    summary = {"model": args.model, "model_id": ids[args.model], "against": args.against,
               "against_id": ids[args.against],
               "references": {"heart_pass": str(ref_heart), "qc": str(ref_qc)}, "checks": verdicts}
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    for name, v in verdicts.items():
        print(f"{'PASS' if v['passed'] else 'FAIL'} {name}: {v['detail']}")
    return 0 if all(v["passed"] for v in verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
