"""Ship the cross-validated CPU recipe: export `RUN/final/model` (trained on all 100 ACDC patients by
`gemini-cmr train cv ... --final`) as the ACDC research model, with the recipe's cross-validation figures
(`RUN/cv.json`) as its evaluation, the licence note and the heart-region inference settings.

    .venv/bin/python recipes/gemini-acdc/export_cv.py runs/cv [--dest resources/models/gemini-acdc]
        [--recipe recipes/gemini-acdc/cpu.json] [--dropped DROPPED.json] [--model MODEL]

`--recipe`: the config `RUN` was trained with (named in the model's training command and evaluation; a
continuation recipe's `init` names the run it continued).

`--model MODEL`: the final model is the folder MODEL instead of `RUN/final/model`, e.g. the shipped weights when
`RUN` holds folds trained in separate runs and pooled by `pool_folds.py` (its `cv.json`); the model's training
record is kept (its own training time).

When `RUN` holds only the final model (`--final` without folds: a recipe change measured on some folds
before it is cross-validated on all of them), `--measured-recipe MODEL --change TEXT --paired JSON` takes
the evaluation of the model folder `MODEL` (the recipe before the change, all its folds measured), keeps it
under `recipe_before_change` and adds the change with its paired fold figures (`compare_cv.py --json`
output; `--paired` again for each further comparison that measures a part of the change, e.g. a second
stage against its first), so the card says which figures belong to which recipe. `--dropped`: the JSON of `gemini-cmr evaluate
dropped-slices ... --fold 0 1 2 --model RUN/{fold}/model --json` on the folds' held-out patients, added to the
evaluation (repeated for folds scored in separate runs: their folds together, the summary pooled from their voxel
counts where every fold has them, else the mean over the folds).

The weights are written float16; `LICENCE.md` in the destination is kept. The model's `evaluation` says how
many folds were measured and that every figure is on patients the scored model never saw (the last
checkpoint of a fixed step count: nothing chosen on them)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from gemini_cmr.core.models.store import load_model, save_model
from gemini_cmr.core.resources import acdc_model_path
from gemini_cmr.core.train.cv import DEFAULT_INFERENCE

LICENCE = ("Research weights trained on ACDC (Bernard et al., IEEE TMI 37(11) 2018): non-commercial research use "
           "only; citing that paper is mandatory. See LICENCE.md in this folder.")


def evaluation_from_cv(cv: dict, recipe: str = "recipes/gemini-acdc/cpu.json", inference: dict | None = None
                       ) -> dict:
    """The model config's `evaluation` from a `train cv` summary; `inference`: the settings the folds' models
    were evaluated with (named in the protocol)."""
    s = cv["summary"]
    folds = s.get("evaluated_folds") or []
    ev = {
        "data": (f"ACDC training patients, {s.get('folds', 5)}-fold cross-validation by patient number modulo "
                 f"{s.get('folds', 5)} (4 patients of each pathology group per fold); folds measured: "
                 f"{', '.join(str(f) for f in folds)} ({s.get('n')} held-out patients), ED and ES"),
        "held_out": ("each patient scored by the model of the fold that left it out; that model is the last "
                     "checkpoint of a fixed step count, so nothing was chosen on the scored patients; the shipped "
                     "weights are the same recipe trained on all 100 patients"),
        "command": f"gemini-cmr train cv --data acdc:ACDC --config {recipe} --out RUN",
        "protocol": ("whole pipeline on the whole field of view (heart region found by the model, "
                     "inference.roi_mm), slice motion correction on, SR labels resampled onto the acquired "
                     "slices vs manual labels, 3D Dice per volume"),
    }
    if inference is not None:  # what the folds' models ran with (`RUN/cv_recipe.json`)
        margin = float(inference.get("roi_margin_mm") or 0)
        ev["protocol"] += (f"; the network on the heart and {margin:g} mm (inference.roi_margin_mm)" if margin else
                           "; the network on the whole heart box (no inference.roi_margin_mm)")
    for k, v in s.items():
        if k.startswith(("dice_", "err_")):
            ev[k] = v
    return ev


def paired_figures(paired: dict, source: str) -> dict:
    """One `compare_cv.py --json` comparison as the card keeps it: what was compared, on which folds, the
    paired Dice differences (b - a) and the clinical absolute-error differences."""
    return {
        "source": source, "a": paired.get("a"), "b": paired.get("b"), "n": paired.get("n"),
        "folds": paired.get("folds"),
        "dice_b_minus_a": {k: {"diff": v.get("diff"), "se": v.get("se"), "a": v.get("a"), "b": v.get("b")}
                           for k, v in (paired.get("dice") or {}).items()},
        "abs_error_b_minus_a": {k: {"abs_diff": v.get("abs_diff"), "se": v.get("se"),
                                    "median_abs_a": v.get("median_abs_a"), "median_abs_b": v.get("median_abs_b")}
                                for k, v in (paired.get("clinical") or {}).items()}}


def evaluation_with_change(before: dict, change: str, paired: dict, source: str, model_id: str = "",
                           further: list[tuple[dict, str]] = ()) -> dict:
    """The `evaluation` of weights whose recipe is `before`'s (a model config with a cross-validated
    evaluation; `model_id` its weights' id) plus one `change`, measured paired on some folds
    (`compare_cv.py --json` output `paired`, read from `source`). `further`: more (comparison, source) pairs
    that measure parts of the same change (e.g. a second training stage against the first), kept under
    `recipe_change.further`. A `before` whose evaluation is itself of this kind is kept whole (a chain of
    changes back to the cross-validated recipe)."""
    ev = before.get("evaluation") or {}
    main = paired_figures(paired, source)
    # a recipe before the change that is itself a measured change from a cross-validated one: say so
    chained = "recipe_change" in ev
    before_is = ("itself one measured change from a cross-validated recipe (recipe_before_change holds both)"
                 if chained else "cross-validated (recipe_before_change)")
    return {
        "data": (f"the recipe before the change below is {before_is}; the change itself is "
                 f"measured paired on fold{'s' if len(paired.get('folds', [])) != 1 else ''} "
                 f"{', '.join(str(f) for f in paired.get('folds', []))} "
                 f"({paired.get('n')} held-out patients, both arms the last checkpoints of a fixed step count); "
                 "the shipped weights' own recipe is not yet cross-validated on every fold"),
        "recipe_change": {
            "change": change, **main,
            **({"further": [paired_figures(p, src) for p, src in further]} if further else {})},
        "recipe_before_change": {**({"model_id": model_id} if model_id else {}), **ev},
    }


def _mean_of_folds(summaries: list[dict]) -> dict:
    """Per mode, method and structure, the mean over folds of each fold's pooled Dice (the modes and methods
    every fold has: an older file may lack the manual-label rows)."""
    out: dict = {}
    for mode in set.intersection(*(set(s) for s in summaries)):
        methods = set.intersection(*(set(s[mode]) for s in summaries))
        out[mode] = {m: {key: sum(s[mode][m][key] for s in summaries) / len(summaries) for key in summaries[0][mode][m]}
                     for m in sorted(methods)}
    return out


def _pooled_counts(counts: list[dict]) -> dict:
    """Per mode and method, Dice pooled over the voxel counts of every fold (`DiceAccumulator.to_json`), for
    the modes and methods every fold has."""
    from gemini_cmr.core.evaluation.motion import DiceAccumulator

    out: dict = {}
    for mode in set.intersection(*(set(c) for c in counts)):
        out[mode] = {}
        for method in sorted(set.intersection(*(set(c[mode]) for c in counts))):
            acc = DiceAccumulator()
            for c in counts:
                acc.merge(DiceAccumulator.from_json(c[mode][method]))
            out[mode][method] = acc.dice()
    return out


def dropped_section(docs: list[dict]) -> dict:
    """The card's `dropped_slices` from `evaluate dropped-slices --json` outputs (one run over several folds, or
    one file per fold from separate runs). Several files: their folds together, and as the summary Dice pooled
    over every fold's removed slices when each fold holds its voxel counts, else the mean over folds of each
    fold's Dice (files written before the counts were recorded)."""
    folds: dict = {}
    for d in docs:
        for k, f in (d.get("folds") or {}).items():
            if k in folds:
                raise ValueError(f"fold {k} is in two dropped-slice files")
            folds[k] = f
    single = len(docs) == 1
    exact = not single and folds and all("counts" in f for f in folds.values())
    pooled = "Dice pooled over the removed slices of the first 10 patients of each fold" if single or exact else (
        "per fold Dice pooled over the removed slices of its first 10 patients; the summary is the mean over the "
        "folds (scored in separate runs)")
    return {
        "command": ("gemini-cmr evaluate dropped-slices --data ACDC --fold "
                    + (" ".join(sorted(folds, key=int)) if folds else "K") + " --limit 10 --model RUN/{fold}/model"),
        "protocol": ("every other short-axis slice removed, the rest super-resolved at ED and ES, labels at the "
                     f"removed slices vs their manual labels, {pooled}; each fold's patients scored by the fold "
                     "model that never saw them"),
        "fold_model_ids": {k: f["model_id"][:12] for k, f in folds.items()} or docs[0].get("model_id", "")[:12],
        "n": sum(int(d.get("n") or 0) for d in docs),
        "summary": (docs[0].get("summary") if single else _pooled_counts([f["counts"] for f in folds.values()])
                    if exact else _mean_of_folds([f["summary"] for f in folds.values()])),
        "per_fold": {k: {"n": f["n"], "summary": f["summary"]} for k, f in folds.items()} or None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="the `train cv` output folder (holds final/model and cv.json)")
    ap.add_argument("--model", default=None,
                    help="the final model folder when RUN holds none (default RUN/final/model), e.g. the shipped "
                         "weights with RUN the folds pooled by pool_folds.py; its training record is kept")
    ap.add_argument("--dest", default=None, help="model folder to write (default: the bundled gemini-acdc)")
    ap.add_argument("--recipe", default="recipes/gemini-acdc/cpu.json", help="the config RUN was trained with")
    ap.add_argument("--dropped", action="append", default=None,
                    help="`evaluate dropped-slices --json` output of the fold models (repeat for folds scored in "
                         "separate runs)")
    ap.add_argument("--measured-recipe", default=None, metavar="MODEL",
                    help="RUN has no cv.json: the model folder whose evaluation is the recipe before --change")
    ap.add_argument("--change", default=None, help="the recipe change since MODEL's recipe (with --measured-recipe)")
    ap.add_argument("--paired", action="append", default=None,
                    help="compare_cv.py --json of the change on its measured folds (repeat for parts of the change: "
                         "the first is the change as a whole or its main part)")
    args = ap.parse_args(argv)
    if (args.measured_recipe is None) != (args.change is None) or (args.measured_recipe is None) != (args.paired is None):
        ap.error("--measured-recipe, --change and --paired go together")
    run = Path(args.run)
    m = load_model(Path(args.model) if args.model else run / "final" / "model")
    cfg = {k: v for k, v in m.config.items() if k not in ("kind", "version", "model", "weights_dtype")}
    state = json.loads((run / "final" / "last" / "state.json").read_text()) \
        if (run / "final" / "last" / "state.json").exists() else {}
    tr = cfg["training"]
    recipe = json.loads(Path(args.recipe).read_text())
    tr["command"] = (f"gemini-cmr train cv --data acdc:ACDC --config {args.recipe} --out RUN --final "
                     "(ACDC = the 100 ACDC training patients)")
    if recipe.get("init"):
        tr["command"] += (f"; it continues the models of an earlier run (init {recipe['init']}, each fold and the "
                          "final model from their own)")
    if state.get("train_seconds"):
        tr["train_seconds"] = round(float(state["train_seconds"]), 1)
    tr["hardware"] = "2 CPU cores (AMD EPYC, no AMX), torch 2.13 CPU"
    cfg["licence"] = LICENCE
    cfg["inference"] = dict(DEFAULT_INFERENCE)
    cv_recipe = run / "cv_recipe.json"
    inference = json.loads(cv_recipe.read_text()).get("inference") if cv_recipe.exists() else None
    if args.measured_recipe:
        before = Path(args.measured_recipe)
        before_id = hashlib.sha256((before / "model.safetensors").read_bytes()).hexdigest()[:12]
        first, *rest = args.paired
        cfg["evaluation"] = evaluation_with_change(
            json.loads((before / "config.json").read_text()), args.change, json.loads(Path(first).read_text()),
            first, before_id, further=[(json.loads(Path(f).read_text()), f) for f in rest])
    else:
        cfg["evaluation"] = evaluation_from_cv(json.loads((run / "cv.json").read_text()), args.recipe, inference)
        if (run / "folds.json").exists():  # folds trained in separate runs, pooled by pool_folds.py
            folds = json.loads((run / "folds.json").read_text())
            cfg["evaluation"]["command"] = ("each fold trained and evaluated by its own `gemini-cmr train cv ... --only K` "
                                            "(recipes/gemini-acdc/run_fold.sh K), the folds' rows pooled by "
                                            "recipes/gemini-acdc/pool_folds.py")
            cfg["evaluation"]["fold_runs"] = folds
    if args.dropped:
        cfg["evaluation"]["dropped_slices"] = dropped_section([json.loads(Path(f).read_text()) for f in args.dropped])
    dest = Path(args.dest) if args.dest else acdc_model_path()
    weights = save_model(dest, m.generator, cfg, half=True)
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    print(f"exported {dest} (model id {digest[:12]}, sha256 {digest})")


if __name__ == "__main__":
    main()
