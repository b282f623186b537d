"""Pool folds of one recipe, each saved by `save_fold.py` (possibly trained in different runs), into the
cross-validation summary `gemini-cmr train cv` writes: `OUT/cv.json`, `OUT/cv.md` and `OUT/cv_recipe.json`.

    .venv/bin/python recipes/gemini-acdc/pool_folds.py benchmarks/results/cv_steps2400_robust_dropped_fold{0,1,2,3,4}.json \
        --out runs/robust-dropped-5fold

`--reported FILE`: another evaluation of a fold model on the same patients (e.g. `scripts/eval_acdc.py --json`)
whose `reported_*` columns (the phenotypes from the SR labels) a fold file lacks; taken only where its Dice
equal the fold's (the same predictions).

The files must hold the same recipe (`cv_recipe`: data, fold count, training config and inference settings)
and different folds; the summary is `core.train.cv.write_cv_summary` over their rows, as `train cv` pools
the folds it ran itself. `OUT/folds.json` lists each fold's model id, command and file. `export_cv.py OUT
--model MODEL` then puts the pooled figures on a model's card. Exit status 2 when the files disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gemini_cmr.core.evaluation.real import DICE_COLUMNS
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.jsonio import dumps
from gemini_cmr.core.train.cv import write_cv_summary

RECIPE_KEYS = ("data", "folds", "config", "inference")


def pool(files: list[Path]) -> tuple[dict, dict[int, list[dict]], dict[int, dict]]:
    """(the common `cv_recipe`, fold -> rows, fold -> {model_id, command, file}) of saved fold files; raises
    ValueError naming the file when a fold occurs twice, a file holds several folds or the recipes differ."""
    recipe: dict | None = None
    first = ""
    rows: dict[int, list[dict]] = {}
    meta: dict[int, dict] = {}
    for f in files:
        doc = json.loads(f.read_text(encoding="utf-8"))
        folds = sorted({int(r["fold"]) for r in doc["rows"]})
        if len(folds) != 1:
            raise ValueError(f"{f}: holds folds {folds}, not one fold")
        k = folds[0]
        if k in rows:
            raise ValueError(f"{f}: fold {k} is already in {meta[k]['file']}")
        this = {key: doc["cv_recipe"].get(key) for key in RECIPE_KEYS}
        if recipe is None:
            recipe, first = this, str(f)
        else:
            differ = [key for key in RECIPE_KEYS if json.dumps(this[key], sort_keys=True)
                      != json.dumps(recipe[key], sort_keys=True)]
            if differ:
                raise ValueError(f"{f}: its recipe differs from {first}'s in {', '.join(differ)}")
        rows[k] = doc["rows"]
        meta[k] = {"model_id": doc.get("model_id"), "command": doc.get("command"), "file": str(f)}
    if recipe is None:
        raise ValueError("no fold files")
    return recipe, rows, meta


def fill_reported(rows: dict[int, list[dict]], other: list[dict], source: str) -> int:
    """Fill the `reported_*` columns (the phenotypes from the SR labels, which older fold files lack) from
    `other`: rows of another evaluation of the same fold model on the same patients (e.g. `scripts/
    eval_acdc.py --json`), accepted only where every Dice equals the fold row's to 1e-9 (the same predictions).
    Returns how many rows were filled; a mismatch is a ValueError naming `source` and the patient."""
    by_subject = {r["subject"]: r for fold in rows.values() for r in fold}
    filled = 0
    for o in other:
        r = by_subject.get(o["subject"])
        keys = [k for k in o if k.startswith("reported_")]
        if r is None or not keys or any(r.get(k) is not None for k in keys):
            continue
        if any(abs(float(r[k]) - float(o[k])) > 1e-9 for k in DICE_COLUMNS):
            raise ValueError(f"{source}: {o['subject']} was scored from other predictions (its Dice differs)")
        r.update({k: o[k] for k in keys})
        filled += 1
    return filled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", type=Path, nargs="+", help="save_fold.py outputs, one fold each")
    ap.add_argument("--out", type=Path, required=True, help="folder for cv.json, cv.md, cv_recipe.json, folds.json")
    ap.add_argument("--reported", type=Path, action="append", default=[],
                    help="rows (a JSON with \"rows\") of another evaluation of a fold model on the same patients "
                         "with the reported_* columns a fold file lacks; used only where its Dice equal the fold's")
    args = ap.parse_args(argv)
    try:
        recipe, rows, meta = pool(args.files)
        for f in args.reported:
            other = json.loads(f.read_text(encoding="utf-8"))["rows"]
            n = fill_reported(rows, other, str(f))
            print(f"{f}: reported phenotypes of {n} patients", file=sys.stderr)
            subjects = {o["subject"] for o in other}
            for k in meta:
                if n and any(r["subject"] in subjects for r in rows[k]):
                    meta[k]["reported_from"] = str(f)
    except (OSError, ValueError, KeyError) as exc:
        print(f"pool_folds: {exc}", file=sys.stderr)
        return 2
    summary = write_cv_summary(args.out, str(recipe["data"]), int(recipe["folds"]), rows)
    atomic_write_text(args.out / "cv_recipe.json", dumps(recipe) + "\n")
    atomic_write_text(args.out / "folds.json", dumps({str(k): v for k, v in sorted(meta.items())}) + "\n")
    print(summary["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
