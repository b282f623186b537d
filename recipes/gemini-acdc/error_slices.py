"""Where the held-out segmentation errors of a cross-validation run lie: inside slices or whole slices.

    .venv/bin/python recipes/gemini-acdc/error_slices.py RUN [--folds 4,0] [--data ACDC] --json OUT.json
    .venv/bin/python recipes/gemini-acdc/error_slices.py --records OUT.json   (its summary again)

For each held-out patient of the given folds (the patients of `RUN/foldK/eval.json`), the fold's model
(`RUN/foldK/model`) runs the evaluation's pipeline (`SuperResolver.run` at ED and ES, the labels on the
acquired slices, as `train cv` scores them); per structure and phase, every slice where the manual or the
predicted labels hold the structure is one of three kinds: both hold it (the error is boundary placement),
only the manual labels ("missed": a basal or apical slice not segmented) or only the prediction
("pred_only": a slice segmented beyond the manual labels). The summary gives each kind's share of the
error voxels (false positives plus false negatives) and 1 - the pooled Dice; OUT.json also keeps every
slice's counts (manual, predicted, both), and ("grid_roundtrip") the mean Dice of the manual labels resampled
onto the SR grid and back (nearest voxel, as the pipeline brings its labels back): what the SR grid alone
costs the score.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

STRUCTURES = {1: "lv", 2: "myo", 3: "rv"}


def slice_records(pred, manual) -> dict[str, list[tuple[int, int, int, int]]]:
    """Per structure: (slice, manual voxels, predicted voxels, voxels in both) of the slices where either
    labelling holds it."""
    out = {}
    for c, name in STRUCTURES.items():
        p, m = pred == c, manual == c
        out[name] = [(z, int(m[z].sum()), int(p[z].sum()), int((m[z] & p[z]).sum()))
                     for z in range(p.shape[0]) if p[z].any() or m[z].any()]
    return out


def base_ends(records: list[dict]) -> dict[str, tuple[int, int]]:
    """Per subject: (basal end, apical end) of its manual ED LV cavity slices, the base being the end whose two
    outermost labelled slices hold the larger cavity (the stack's order differs between datasets)."""
    ends = {}
    for r in records:
        if r["phase"] != "ed" or r["structure"] != "lv" or "subject" not in r:
            continue
        lab = [(z, a) for z, a, _, _ in r["slices"] if a > 0]
        if len(lab) < 2:
            continue
        first, last = sum(a for _, a in lab[:2]), sum(a for _, a in lab[-2:])
        ends[r["subject"]] = (lab[0][0], lab[-1][0]) if first >= last else (lab[-1][0], lab[0][0])
    return ends


def summarise(records: list[dict]) -> dict[str, dict]:
    """Per phase and structure: each kind's share of the error voxels, slice counts, 1 - pooled Dice; where the
    subject's ED LV cavity labels tell base from apex (`base_ends`), the missed and extra slices' share split
    by the half of the LV they lie on ("by_end": missed_base, missed_apex, pred_only_base, pred_only_apex)."""
    ends = base_ends(records)
    out = {}
    for phase in ("ed", "es"):
        for name in STRUCTURES.values():
            err, n, end = collections.Counter(), collections.Counter(), collections.Counter()
            total = both_sum = 0
            for r in records:
                if r["phase"] != phase or r["structure"] != name:
                    continue
                base_apex = ends.get(r.get("subject"))
                for z, a, b, both in r["slices"]:
                    kind = "pred_only" if a == 0 else "missed" if b == 0 else "both"
                    err[kind] += a + b - 2 * both
                    n[kind] += 1
                    total += a + b - 2 * both
                    both_sum += a + b
                    if kind != "both" and base_apex is not None:
                        base, apex = base_apex
                        side = "base" if abs(z - base) <= abs(z - apex) else "apex"
                        end[f"{kind}_{side}"] += a + b - 2 * both
            out[f"{phase}_{name}"] = {
                "error_share": {k: round(err[k] / total, 3) if total else 0.0 for k in ("both", "missed", "pred_only")},
                "slices": dict(n), "one_minus_pooled_dice": round(total / both_sum, 3) if both_sum else 0.0}
            if end:
                out[f"{phase}_{name}"]["by_end"] = {
                    k: round(end[k] / total, 3) for k in ("missed_base", "missed_apex", "pred_only_base",
                                                           "pred_only_apex")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="a `train cv --out` folder")
    ap.add_argument("--folds", default="4,0")
    ap.add_argument("--data", default="../shared/data/acdc/training")
    ap.add_argument("--json", help="OUT.json (required with RUN)")
    ap.add_argument("--records", help="summarise the records of an earlier OUT.json again (nothing is run)")
    args = ap.parse_args(argv)
    if args.records:
        summary = summarise(json.loads(Path(args.records).read_text())["records"])
        for key, v in summary.items():
            print(key, v)
        return 0
    if not args.run or not args.json:
        ap.error("RUN and --json are required (or --records)")

    import numpy as np

    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.metrics import dice_per_structure
    from gemini_cmr.core.geometry import resample_nearest_stack, sr_grid
    from gemini_cmr.core.io.atomic import atomic_write_text
    from gemini_cmr.core.io.layouts import load_acdc

    run, folds = Path(args.run), [int(k) for k in args.folds.split(",")]
    records: list[dict] = []
    roundtrip: dict[str, list[float]] = collections.defaultdict(list)
    for k in folds:
        rows = json.loads((run / f"fold{k}" / "eval.json").read_text())["rows"]
        resolver = SuperResolver(model=run / f"fold{k}" / "model", device="cpu")
        for row in rows:
            study = load_acdc(Path(args.data) / row["subject"])
            ed, es = study.meta.ed_phase, study.meta.es_phase
            res = resolver.run(study, phases=[ed, es], meshes="none")
            for i, (tag, t) in enumerate((("ed", ed), ("es", es))):
                sr = sr_grid(study.grid)
                back = resample_nearest_stack(resample_nearest_stack(study.labels[t][None], study.grid, sr), sr,
                                              study.grid)[0]
                for key, v in dice_per_structure(back, study.labels[t]).items():
                    roundtrip[key].append(v)
                for name, rec in slice_records(res.lr_labels[i], study.labels[t]).items():
                    records.append({"subject": row["subject"], "group": row["group"], "fold": k, "phase": tag,
                                    "structure": name, "slices": rec})
            print(row["subject"], flush=True)
    summary = summarise(records)
    summary["grid_roundtrip"] = {key: round(float(np.mean(v)), 4) for key, v in roundtrip.items()}
    for key, v in summary.items():
        print(key, v)
    atomic_write_text(args.json, json.dumps({"run": str(run), "folds": folds, "model_ids": {
        k: json.loads((run / f"fold{k}" / "eval.json").read_text())["model_id"] for k in folds},
        "summary": summary, "records": records}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
