"""`gemini-cmr evaluate --data DIR --model M`: the paper's evaluation on a paired dataset.

For every subject of the split (default `test`) in DIR/manifest.json (layout: docs/DEVELOPING.md), the
LR cine is super-resolved at ED and ES (the manifest's phases; else max/min of the ground-truth LV
cavity volume) and compared with the HR ground truth on the SR grid (HR files not exactly on the SR
grid are resampled by world coordinates: image linear, labels nearest):
- Dice per structure at ED and ES: 3D volumetric (primary) and the paper's slice-wise variant;
- PSNR and SSIM (3D, 7x7x7 window) of the SR image at ED and ES, data range = the HR image's range
  (max - min) in that phase; the paper's slice-wise variants (PSNR per 2D slice on the slices with
  ground-truth labels, SSIM per slice) on the second row; the PSNR within 10 mm of the labelled heart in
  the JSON output and under the table;
- phenotype errors, SR labels minus HR labels: bias and 95% limits of agreement (bias +/- 1.96 sd) for
  LVEDV, LVESV, LVEF, LV mass and RVEDV (and RVESV, RVEF).
Values are mean (sd) over subjects. `--json` prints everything, per subject included, as JSON.

`gemini-cmr evaluate motion --data DIR`: the slice misalignment correction on phantoms against the
simulator's shifts (with and without correction: median per-slice shift error, 3D Dice and surface distance
to the HR truth, PSNR within 10 mm of the heart against cubic B-spline); `--long-axis-input 4ch 2ch` gives
the phantoms' long-axis cines (`synth --long-axis`) to the correction as evidence.
`gemini-cmr evaluate dropped-slices --data ACDC [--patients 11 21 ...] [--fold R [R ...]]`: every other
short-axis slice removed, the rest super-resolved, the labels at the removed slices scored against their manual
labels (pooled Dice) for the SR labels, the nearest kept slice's labels and shape-based interpolation; with
several folds and `--model RUN/{fold}/model`, each fold's patients by its own cross-validation model, pooled.
`--motion-correction on|off|both` (default both) for these two.
`gemini-cmr evaluate long-axis --data DIR [--long-axis-input VIEW ...] [--held-out VIEW ...]`: the long-axis
consistency test: 3D labels cut along a labelled long-axis plane that was not an input, against its labels (Dice,
mean contour distance), for the input's own labels and the product's labels on the acquired grid (nearest slice),
the same linear between slices, the SR labels (and the HR truth on phantoms), each at its own best in-plane
shift (the breath-hold offset between acquisitions). DIR: a phantom dataset written with `synth --long-axis`, or
UK Biobank / M&Ms-2 subject folders with labelled long-axis cines.
`gemini-cmr evaluate robustness --data STUDY [--contours DIR] [--perturbation NAME ...]`: the study's labelled
phases super-resolved as acquired and perturbed as other scanners and sites acquire (in-plane pixel size, field of
view, stored orientation, intensity scale, contrast, bias field, noise, twice the slice spacing, breath-hold
offsets between slices; `core.evaluation.robustness`), each run's labels scored on the original grid against the
study's labels (Dice per structure, paired against the unperturbed run; with the offsets, also how well the slice
motion correction recovers them; and which runs failed a quality check). STUDY: any labelled study (an ACDC patient folder, NIfTI with
labels, DICOM with `--contours` for Sunnybrook expert contours); an ACDC training folder with `--patients` or
`--fold` (each fold's patients by `--model RUN/{fold}/model`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemini_cmr.core.errors import GeminiError


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser("evaluate", help=summary, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", default="paired", choices=("paired", "motion", "dropped-slices", "long-axis", "robustness"),
                   help="paired (default): the paper's table; motion: misalignment correction on phantoms; "
                        "dropped-slices: through-plane shape on an ACDC training folder; long-axis: consistency "
                        "with held-out labelled long-axis planes; robustness: a labelled study perturbed as "
                        "other scanners acquire")
    p.add_argument("--data", type=Path, required=True,
                   help="paired dataset folder (with manifest.json); dropped-slices: ACDC training folder; "
                        "robustness: a labelled study, or an ACDC training folder with --patients / --fold")
    p.add_argument("--model", type=Path, default=None, help="Gemini-GAN model (default: bundled)")
    p.add_argument("--adapter", type=Path, default=None, help="V-AMA adapter applied to the LR input first")
    p.add_argument("--split", default="test", help="subjects of this split (train, val, test; 'all' = every one)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many subjects")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--motion-correction", choices=("on", "off", "both"), default="both",
                   help="motion, dropped-slices: with, without or both (default)")
    p.add_argument("--patients", nargs="+", default=None,
                   help="dropped-slices, robustness: ACDC patients (e.g. 11 patient021)")
    p.add_argument("--fold", type=int, nargs="+", default=None,
                   help="dropped-slices, robustness: the ACDC patients whose number %% 5 is this (without --patients); "
                        "several folds are pooled, each scored by --model with {fold} replaced by foldK "
                        "(e.g. runs/cv/{fold}/model: every patient by the model that never saw it)")
    p.add_argument("--acquired", action="store_true",
                   help="dropped-slices: also score the removed slices as the product labels them when they are "
                        "acquired (a run on the whole stack): the reference that acquiring them gives")
    p.add_argument("--long-axis-input", nargs="+", default=(), metavar="VIEW",
                   help="long-axis: views given to the product as inputs (e.g. 4ch); the others are held out; "
                        "motion: long-axis cines given as evidence for the correction (e.g. 4ch 2ch)")
    p.add_argument("--held-out", nargs="+", default=None, metavar="VIEW",
                   help="long-axis: the views to score (default: every labelled view not used as input)")
    p.add_argument("--contours", type=Path, default=None,
                   help="robustness: Sunnybrook contour folder for a DICOM --data (the study's labels)")
    p.add_argument("--perturbation", nargs="+", default=None, metavar="NAME",
                   help="robustness: the perturbations to run (default: all; 'none', the reference, is always run)")
    p.set_defaults(func=run)


def acdc_groups(args: argparse.Namespace) -> list[tuple[int | None, Path | None, list]]:
    """(fold, model, [(patient, loader)]) of an ACDC training folder at --data: the --patients (one group), else
    each --fold's patients with --model's "{fold}" for that fold, else every patient; at most --limit each."""
    from gemini_cmr.core.evaluation.motion import acdc_patients

    groups = []
    for fold in ([None] if args.patients or not args.fold else args.fold):
        studies = acdc_patients(args.data, args.patients, None if fold is None else f"fold{fold}")
        if args.limit:
            studies = studies[: args.limit]
        if not studies:
            raise GeminiError(f"no ACDC patients chosen in {args.data}" + ("" if fold is None else f" for fold {fold}"))
        groups.append((fold, fold_model(args.model, fold), studies))
    return groups


def robustness_groups(args: argparse.Namespace) -> list[tuple[Path | None, list]]:
    """(model, [(name, loader)]) groups of `evaluate robustness`: ACDC patients by fold or name, else the one
    study at --data (with --contours attached)."""
    if args.patients or args.fold:
        return [(model, studies) for _, model, studies in acdc_groups(args)]

    def load():
        from gemini_cmr.core.io.contours import attach_contours
        from gemini_cmr.core.io.loader import load_study

        study = load_study(args.data.expanduser())
        if args.contours is not None:
            study = attach_contours(study, args.contours.expanduser())
        if study.labels is None or not study.labelled_phases:
            raise GeminiError(f"{args.data}: the study has no labels to score against (give --contours, or a "
                              "labelled study)")
        return study

    return [(fold_model(args.model, None), [(args.data.name, load)])]


def run_robustness(args: argparse.Namespace) -> int:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation import robustness as ev
    from gemini_cmr.core.io.jsonio import dumps

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    names = list(ev.PERTURBATIONS) if not args.perturbation else ["none", *dict.fromkeys(
        n for n in args.perturbation if n != "none")]
    unknown = [n for n in names if n not in ev.PERTURBATIONS]
    if unknown:
        raise GeminiError(f"unknown perturbation {', '.join(unknown)} (one of {', '.join(ev.PERTURBATIONS)})")
    rows = []
    for model, studies in robustness_groups(args):
        resolver = SuperResolver(model=model, adapter=args.adapter, device=args.device)
        for name, load in studies:
            rows += ev.evaluate_study(resolver, load(), name, names, say=say)
    models = sorted({r["model_id"] for r in rows})
    res = {"model_id": ",".join(models), "n_studies": len({r["study"] for r in rows}),
           "perturbations": {n: ev.PERTURBATIONS[n][0] for n in names},
           "summary": ev.summarise(rows), "rows": rows}
    if args.json:
        print(dumps(res, indent=2))
    else:
        print(ev.format_summary(res["summary"]))
        print(f"\nmodel {', '.join(m[:12] for m in models)}, {res['n_studies']} studies; Dice on the original "
              "grid, (mean paired difference against 'none', worst)")
    sys.stdout.flush()
    return 0


def run_long_axis(args: argparse.Namespace) -> int:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation import longaxis as ev
    from gemini_cmr.core.io.jsonio import dumps

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    data = args.data.expanduser()
    if (data / "manifest.json").is_file():
        ev.phantom_studies(data, args.split)  # fail fast, before loading the model
    resolver = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
    res = ev.evaluate_long_axis(data, resolver, args.split, args.limit, tuple(args.long_axis_input),
                                None if args.held_out is None else tuple(args.held_out), say=say)
    if args.json:
        print(dumps(res, indent=2))
    else:
        print(ev.format_summary(res["summary"]))
        inputs = ", ".join(res["inputs"]) or "none"
        print(f"\nmodel {res['model_id'][:12]}, {res['n']} studies, {res['summary']['planes']} held-out planes, "
              f"long-axis inputs: {inputs}")
    sys.stdout.flush()
    return 0


def run_motion_tasks(args: argparse.Namespace) -> int:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation import motion as ev
    from gemini_cmr.core.io.jsonio import dumps

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    modes = ev.MODES[args.motion_correction]
    if args.task == "motion":
        labelled_subjects_check(args)
        resolver = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
        res = ev.evaluate_motion_phantoms(args.data, resolver, args.split, args.limit, modes, say=say,
                                          long_axis_views=tuple(args.long_axis_input))
        table = ev.format_motion_summary(res["summary"])
    else:
        groups = acdc_groups(args)
        res = ev.dropped_slices_folds(
            [(fold, SuperResolver(model=model, adapter=args.adapter, device=args.device), studies)
             for fold, model, studies in groups], modes, say=say, acquired=args.acquired)
        table = ev.format_dropped_summary(res["summary"])
        for fold, f in res.get("folds", {}).items():
            table += (f"\nfold {fold}: model {f['model_id'][:12]}, {f['n']} subjects, SR "
                      + ", ".join(f"{key} {d['sr']['mean']:.3f} (shape-based {d['shape_interpolation']['mean']:.3f}"
                                  + (f", acquired {d['acquired']['mean']:.3f}" if "acquired" in d else "") + ")"
                                  for key, d in f["summary"].items()))
    if args.json:
        print(dumps(res, indent=2))
    else:
        print(table)
        models = ", ".join(m[:12] for m in res["model_id"].split(","))
        print(f"\nmodel {models}, {res['n']} subjects")
    sys.stdout.flush()
    return 0


def fold_model(model: Path | None, fold: int | None) -> Path | None:
    """`--model` for one fold: "{fold}" replaced by the fold's run folder name (foldK, as `train cv` names
    it); a model path with "{fold}" needs --fold."""
    if model is None or "{fold}" not in str(model):
        return model
    if fold is None:
        raise GeminiError(f"--model {model} names {{fold}}: give --fold")
    return Path(str(model).replace("{fold}", f"fold{fold}"))


def labelled_subjects_check(args: argparse.Namespace) -> None:
    from gemini_cmr.core.evaluation.paired import labelled_subjects

    labelled_subjects(args.data.expanduser(), args.split)


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.cli.super_resolve import StderrProgress
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.evaluation.paired import evaluate_dataset, format_table, labelled_subjects
    from gemini_cmr.core.io.jsonio import dumps

    if args.limit is not None and args.limit < 1:
        raise GeminiError("--limit must be at least 1")
    if args.task == "long-axis":
        return run_long_axis(args)
    if args.task == "robustness":
        return run_robustness(args)
    if args.task != "paired":
        return run_motion_tasks(args)
    labelled_subjects(args.data.expanduser(), args.split)  # fail fast, before loading the model
    resolver = SuperResolver(model=args.model, adapter=args.adapter, device=args.device)
    res = evaluate_dataset(args.data, resolver, args.split, args.limit, progress=StderrProgress(True))
    if args.json:
        print(dumps(res, indent=2))
    else:
        print(format_table(res))
    sys.stdout.flush()
    return 0
