"""Save one fold of a `gemini-cmr train cv` run as a committed result file (the `cv_*_foldK.json` files).

    .venv/bin/python recipes/gemini-acdc/save_fold.py RUN K OUT.json --command "gemini-cmr train cv ..." \
        --what "stage 2 of the shipped recipe, fold K: ..."

Reads the fold's own evaluation (`RUN/foldK/eval.json`, written by `train cv` once per fold and reused by
later runs; `cv.json` holds only the folds of the last invocation) and the run's `cv_recipe.json`, and
writes `{"command", "what", "model_id", "cv_recipe", "summary", "rows"}`: the fold's held-out rows, their
summary (`core.evaluation.real.summarise`, as `cv.json` has it) and the first 12 hex digits of the SHA-256
of the fold model's weights (`RUN/foldK/model/model.safetensors`, the model id the product reports).
`compare_cv.py` and `export_cv.py` read such files (`A.json+B.json` pools folds). Prints the file, the model
id and the mean Dice per phase and structure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

from gemini_cmr.core.evaluation.real import DICE_COLUMNS, summarise
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.jsonio import dumps


def fold_doc(run: Path, k: int, command: str, what: str) -> dict:
    """The result document of fold `k` of the cross-validation run `run`."""
    ev = json.loads((run / f"fold{k}" / "eval.json").read_text(encoding="utf-8"))
    if int(ev["fold"]) != k:
        raise ValueError(f"{run / f'fold{k}' / 'eval.json'} holds fold {ev['fold']}")
    rows = [{key: math.nan if v is None else v for key, v in r.items()} for r in ev["rows"]]
    weights = run / f"fold{k}" / "model" / "model.safetensors"
    model_id = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    recipe = json.loads((run / "cv_recipe.json").read_text(encoding="utf-8"))
    fold = summarise(rows)
    summary = {"data": recipe["data"], "folds": int(ev["folds"]), "evaluated_folds": [k], "tta": bool(ev.get("tta")),
               **fold, "per_fold": {k: fold}}
    return {"command": command, "what": what, "model_id": model_id, "cv_recipe": recipe, "summary": summary,
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the `train cv --out` folder")
    ap.add_argument("fold", type=int)
    ap.add_argument("out", type=Path)
    ap.add_argument("--command", required=True, help="the command that trained and evaluated the fold")
    ap.add_argument("--what", required=True, help="one line: which recipe, stage and fold")
    args = ap.parse_args(argv)
    try:
        doc = fold_doc(args.run, args.fold, args.command, args.what)
    except (OSError, ValueError, KeyError) as exc:
        print(f"save_fold: cannot read fold {args.fold} of {args.run} ({exc})", file=sys.stderr)
        return 2
    atomic_write_text(args.out, dumps(doc) + "\n")
    s = doc["summary"]
    print(args.out, doc["model_id"], len(doc["rows"]), "patients",
          {key: round(s[f"dice_{key}"]["mean"], 4) for key in DICE_COLUMNS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
