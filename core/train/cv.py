"""Cross-validation of a training recipe on an LR-labelled cohort (`gemini-cmr train cv`).

For each fold k of n (`core.train.lr_data.fold_of`: ACDC by patient number modulo n, so with n = 5 every
fold holds 4 patients of each pathology group):
1. train on the other folds with the recipe's config (`core.train.semi`), for its fixed step count
   (`max_steps`); the held-out fold chooses nothing: the model is the last checkpoint, validation on the
   fold runs once at the end for the training log only;
2. export that model with the inference settings of the shipped research model (heart box, largest heart
   component) into `RUN/fold<k>/model/`;
3. evaluate it through the whole pipeline on the fold's patients (`core.evaluation.real`: Dice per
   structure at ED and ES on the acquired slices, phenotypes against the manual labels).
Every fold resumes where it stopped (training from its last checkpoint; a finished evaluation is kept).
The summary over all held-out patients goes to `RUN/cv.json` and `RUN/cv.md`.
`train_final` trains the same recipe on every subject (`fold` "all") into `RUN/final/` and exports
`RUN/final/model/`: the model to ship once the folds have measured the recipe (nothing left to evaluate it on).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gemini_cmr.core.errors import DataError
from gemini_cmr.core.io.atomic import atomic_write_text
from gemini_cmr.core.io.jsonio import dumps
from gemini_cmr.core.train import runs

log = logging.getLogger(__name__)
Say = Callable[[str], None]

# The shipped research model's inference settings (resources/models/gemini-acdc/config.json).
DEFAULT_INFERENCE = {"roi_mm": 176, "keep_largest_heart_component": True, "heart_component_by": "ventricle",
                     "roi_margin_mm": 16}
EVAL_JSON = "eval.json"
EVAL_TTA_JSON = "eval_tta.json"  # the same evaluation with test-time augmentation (`train cv --tta`)
MODEL_DIR = "model"


def fold_studies(data: str, k: int, n: int) -> list[tuple[str, Callable]]:
    """(subject id, loader) of the subjects in fold k of n of an LR-labelled source."""
    from gemini_cmr.core.train.lr_data import fold_of, lr_subjects, parse_source

    src = parse_source(data)
    if src is None:
        raise DataError("cross-validation needs an LR-labelled cohort: acdc:PATH, mnms:PATH or pairs:MANIFEST",
                        data)
    kind, root = src
    return [(s.sid, s.load) for i, s in enumerate(lr_subjects(kind, root)) if fold_of(kind, s, i, n) == k]


FOLD_MODEL_KEYS = ("init", "distill")  # config keys naming a saved model, "{fold}" replaced per fold


def fold_init(config: dict, k: int | str) -> dict:
    """The config's `init` and `distill` (those it has) with "{fold}" replaced by the run folder's name of
    fold `k` ("fold0".."fold4", or "final" for the model trained on every subject), so that a continuation
    recipe (`"init": "runs/cv/{fold}/model"`) starts each fold from that fold's earlier model, and a
    distillation recipe learns from that fold's teacher, never from one that saw the fold's patients."""
    from gemini_cmr.core.train.lr_data import ALL_SUBJECTS

    name = "final" if k == ALL_SUBJECTS else f"fold{k}"
    return {key: str(config[key]).replace("{fold}", name) for key in FOLD_MODEL_KEYS if config.get(key)}


def _train_fold(base: dict, data: str, run: Path, k: int | str, n: int, device: str, say: Say) -> None:
    from gemini_cmr.core.train.loop import StopFlag
    from gemini_cmr.core.train.lr_data import ALL_SUBJECTS
    from gemini_cmr.core.train.semi import SemiConfig, SemiTrainer

    state = runs.run_state(runs.GEMINI, run)
    if state == "finished":
        say(f"fold {k}: training finished earlier")
        return
    fold = ALL_SUBJECTS if k == ALL_SUBJECTS else f"{k}/{n}"
    cfg = SemiConfig.from_dict({**base, "fold": fold, "val_every": 10**9, **fold_init(base, k)})
    last_print = [0.0]

    def callback(e: dict) -> None:
        now = time.monotonic()
        if e["event"] == "step" and now - last_print[0] > 60:
            last_print[0] = now
            say(f"fold {k}: step {e['step']}/{e['total_steps']} loss {e['loss']:.4f} "
                f"ETA {int(e.get('eta_s') or 0) // 60} min")
        elif e["event"] == "start":
            say(f"fold {k}: training {e['total_steps']} steps on {e['device']} ({e['n_train_items']} items)")
        elif e["event"] == "val":
            say(f"fold {k}: held-out Dice (acquired slices, heart crop) LV {e['lv_cavity']:.3f} "
                f"myo {e['lv_myocardium']:.3f} RV {e['rv_cavity']:.3f}")

    stop = StopFlag()
    trainer = SemiTrainer(cfg, data, run, device, callback, stop)
    with stop.on_sigint():
        summary = trainer.run(resume=state == "run")
    if summary["status"] != "done":
        raise KeyboardInterrupt(f"fold {k} stopped at step {summary['step']}; run the command again to resume")


def _export(run: Path, inference: dict) -> Path:
    from gemini_cmr.core.models.store import load_model, save_model

    out = run / MODEL_DIR
    if (out / "model.safetensors").is_file():
        return out
    m = load_model(run / runs.LAST_DIR)
    cfg = {k: v for k, v in m.config.items() if k not in ("kind", "version", "model", "weights_dtype")}
    cfg["inference"] = dict(inference)
    cfg.setdefault("training", {})["checkpoint"] = "last (fixed step count; nothing chosen on the held-out fold)"
    save_model(out, m.generator, cfg, half=True)
    return out


def _evaluate_fold(data: str, run: Path, k: int, n: int, device: str, say: Say, tta: bool = False
                   ) -> list[dict[str, Any]]:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.real import evaluate_studies

    path = run / (EVAL_TTA_JSON if tta else EVAL_JSON)
    if path.is_file():  # strict JSON wrote NaN as null
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        return [{key: float("nan") if v is None else v for key, v in r.items()} for r in rows]
    resolver = SuperResolver(model=run / MODEL_DIR, device=device)
    rows = evaluate_studies(resolver, fold_studies(data, k, n), say=lambda line: say(f"fold {k}: {line}"), tta=tta)
    for r in rows:
        r["fold"] = k
    atomic_write_text(path, dumps({"fold": k, "folds": n, "model_id": resolver.model_id, "tta": tta, "rows": rows})
                      + "\n")
    return rows


def train_final(data: str, config: dict, out: str | Path, device: str = "cpu", inference: dict | None = None,
                say: Say | None = None) -> Path:
    """Train the recipe on every subject of `data` into `out/final/` (resumable) and export
    `out/final/model/` with the recipe's inference settings; returns the model folder."""
    from gemini_cmr.core.train.lr_data import ALL_SUBJECTS

    say = say or (lambda msg: log.info("%s", msg))
    out = Path(out)
    if inference is None:
        inference = {**DEFAULT_INFERENCE, "roi_mm": float(config.get("roi_mm") or DEFAULT_INFERENCE["roi_mm"])}
    run = out / "final"
    run.mkdir(parents=True, exist_ok=True)
    _train_fold(config, str(data), run, ALL_SUBJECTS, 0, device, say)
    model = _export(run, inference)
    say(f"final model (every subject trained): {model}")
    return model


def run_cv(data: str, config: dict, out: str | Path, folds: int = 5, only: list[int] | None = None,
           device: str = "cpu", inference: dict | None = None, say: Say | None = None, tta: bool = False
           ) -> dict[str, Any]:
    """Train, export and evaluate every fold (or the folds in `only`); returns the summary over the
    evaluated folds' patients (`core.evaluation.real.summarise`, plus per-fold means). `tta`: evaluate
    with test-time augmentation (`eval_tta.json` per fold, `cv_tta.json` / `cv_tta.md`)."""
    say = say or (lambda msg: log.info("%s", msg))
    out = Path(out)
    if inference is None:  # a model trained on heart boxes runs on the same box size
        inference = {**DEFAULT_INFERENCE, "roi_mm": float(config.get("roi_mm") or DEFAULT_INFERENCE["roi_mm"])}
    if folds < 2:
        raise DataError(f"--folds must be at least 2, not {folds}")
    chosen = list(range(folds)) if only is None else sorted(set(only))
    bad = [k for k in chosen if not 0 <= k < folds]
    if bad:
        raise DataError(f"folds {bad} outside 0..{folds - 1}")
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"data": str(data), "folds": folds, "config": config, "inference": inference}
    atomic_write_text(out / "cv_recipe.json", dumps(recipe) + "\n")
    evaluated: dict[int, list[dict[str, Any]]] = {}
    for k in chosen:
        run = out / f"fold{k}"
        t0 = time.perf_counter()
        _train_fold(config, str(data), run, k, folds, device, say)
        _export(run, inference)
        evaluated[k] = _evaluate_fold(str(data), run, k, folds, device, say, tta)
        say(f"fold {k}: {len(evaluated[k])} patients evaluated ({time.perf_counter() - t0:.0f} s)")
    return write_cv_summary(out, str(data), folds, evaluated, tta)


def write_cv_summary(out: str | Path, data: str, folds: int, fold_rows: dict[int, list[dict[str, Any]]],
                     tta: bool = False) -> dict[str, Any]:
    """Pool the held-out rows of the evaluated folds (`fold_rows`: fold -> its rows) into `OUT/cv.json` and
    `OUT/cv.md` (`cv_tta.*` with `tta`): `core.evaluation.real.summarise` over all of them plus each fold's
    own; returns the summary with its markdown. `run_cv` writes it after its folds; folds evaluated by
    separate runs (their saved rows) are pooled with it the same way."""
    from gemini_cmr.core.evaluation.real import format_summary, summarise

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = sorted(fold_rows)
    rows = [r for k in chosen for r in fold_rows[k]]
    summary = {"data": data, "folds": folds, "evaluated_folds": chosen, "tta": tta, **summarise(rows),
               "per_fold": {k: summarise(fold_rows[k]) for k in chosen}}
    stem = "cv_tta" if tta else "cv"
    atomic_write_text(out / f"{stem}.json", dumps({"summary": summary, "rows": rows}) + "\n")
    how = ", test-time augmentation" if tta else ""
    text = (f"# Cross-validation: {len(chosen)} of {folds} folds, {len(rows)} held-out patients{how}\n\n"
            f"Data `{data}`; config in `cv_recipe.json`; the model of each fold is its last checkpoint.\n\n"
            + format_summary(summary) + "\n")
    atomic_write_text(out / f"{stem}.md", text)
    summary["markdown"] = text
    return summary


__all__ = ["DEFAULT_INFERENCE", "fold_init", "fold_studies", "run_cv", "train_final", "write_cv_summary"]
