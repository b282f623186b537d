"""Pool folds of one recipe, each saved by `save_fold.py` (possibly trained in different runs), into the
cross-validation summary `gemini-cmr train cv` writes: `OUT/cv.json`, `OUT/cv.md` and `OUT/cv_recipe.json`.

    .venv/bin/python recipes/gemini-acdc/pool_folds.py benchmarks/results/cv_steps2400_robust_dropped_fold{0,1,2,3,4}.json \
        --out runs/robust-dropped-5fold

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", type=Path, nargs="+", help="save_fold.py outputs, one fold each")
    ap.add_argument("--out", type=Path, required=True, help="folder for cv.json, cv.md, cv_recipe.json, folds.json")
    args = ap.parse_args(argv)
    try:
        recipe, rows, meta = pool(args.files)
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
