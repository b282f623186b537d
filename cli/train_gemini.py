"""`gemini-cmr train gemini`: train Gemini-GAN on a paired dataset (docs/gemini.md).

Writes RUN/config.json, RUN/best/ and RUN/last/ (model.safetensors + config.json, usable with
`super-resolve --model RUN/best`), RUN/last/state.* for --resume, RUN/history.json (validation).
Ctrl-C stops after the current step and writes the last checkpoint (a second Ctrl-C aborts).
Runs unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel, gloo on CPU).

Fine-tuning on your own LR-labelled cohort (docs/real-data.md, "Fine-tuning on your own studies"):
  gemini-cmr train gemini --data pairs:subjects.json --init gemini-acdc --out RUN
starts from the shipped research weights with the real-data recipe scaled to the cohort, holds out 20% of
the subjects (stratified by group; --holdout to choose), never lets them choose the checkpoint, and at the
end compares the starting and the fine-tuned model on them and writes RUN/model/ (model, config with the
figures, MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers, summary: str | None = None) -> None:
    p = subparsers.add_parser("gemini", help=summary or "train Gemini-GAN on a paired LR/HR dataset",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True,
                   help="paired dataset folder (manifest.json), or a cohort with LR labels only "
                        "(semi-supervised, docs/real-data.md): acdc:PATH (ACDC layout), mnms:PATH "
                        "(M&Ms layout), ukbb:PATH (UK Biobank layout) or pairs:MANIFEST.json (image NIfTI or "
                        "DICOM series + label NIfTI or contour folder)")
    p.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and logs")
    p.add_argument("--config", type=Path, help="training config JSON (keys of core.train.gemini.TrainConfig)")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides the config)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps in total")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last exactly")
    p.add_argument("--seed", type=int, help="random seed (overrides the config; default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = torch default)")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision (auto: bf16 on CPUs with AMX/AVX512-BF16, AMP on CUDA)")
    p.add_argument("--progress-json", action="store_true", help="one JSON event per line on stdout")
    p.add_argument("--init", metavar="MODEL",
                   help="start from this model's generator weights (a model folder, or the name of a bundled "
                        "model: gemini-acdc); with an LR-labelled cohort the real-data recipe scaled to the "
                        "cohort is used, under the keys of --config")
    p.add_argument("--holdout", metavar="auto|N|ID,ID",
                   help="LR-labelled cohorts: subjects held out from training, validated for the curves but never "
                        "choosing the checkpoint, and compared before/after at the end: auto (20%%, stratified by "
                        "group; the default with --init), a number, or subject ids")
    p.set_defaults(func=run)


def _command_line(args: argparse.Namespace) -> str:
    """This command as typed (its options), for the model card."""
    import shlex

    words = ["gemini-cmr", "train", "gemini", "--data", str(args.data), "--out", str(args.out)]
    for opt in ("config", "init", "holdout", "epochs", "max_steps", "device", "seed", "threads", "amp"):
        value = getattr(args, opt)
        if value is not None and not (opt == "device" and value == "auto"):
            words += ["--" + opt.replace("_", "-"), str(value)]
    return shlex.join(words + (["--resume"] if args.resume else []))


def _init_path(value: str) -> str:
    """A model folder, or the name of a bundled model (resources/models/NAME)."""
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.resources import resources_dir

    p = Path(value)
    if p.exists():
        return str(p)
    bundled = resources_dir() / "models" / value
    if "/" not in value and bundled.is_dir():
        return str(bundled)
    raise DataError("--init: model not found (a model folder, or a bundled model name such as gemini-acdc)", value)


def _holdout(value: str, subjects) -> list[str]:
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.train.lr_data import choose_holdout

    if value == "auto":
        return choose_holdout(subjects)
    if value.isdigit():
        return choose_holdout(subjects, n=int(value))
    ids = [v.strip() for v in value.split(",") if v.strip()]
    known = {s.sid for s in subjects}
    missing = [v for v in ids if v not in known]
    if missing or not ids:
        raise DataError(f"--holdout: subject(s) {', '.join(missing) or '(none)'} not in the data")
    if len(ids) >= len(subjects):
        raise DataError(f"--holdout: {len(ids)} of {len(subjects)} subjects held out: none left to train")
    return ids


def _lr_config(args: argparse.Namespace, kind: str, root: Path, overrides: dict) -> dict:
    """The LR-label training config: the file (or the resumed run's), with --init: the scaled real-data
    recipe beneath it and the starting model's architecture; the held-out subjects."""
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.train.gemini import read_training_config
    from gemini_cmr.core.train.lr_data import lr_subjects
    from gemini_cmr.core.train.semi import finetune_config, init_model_config

    base: dict = {}
    if args.config:
        base = read_training_config(args.config)
    elif args.resume and (args.out / "config.json").exists():
        return {**json.loads((args.out / "config.json").read_text(encoding="utf-8"))["training"], **overrides}
    init = _init_path(args.init) if args.init else base.get("init")
    if init:
        base["init"] = init
    if args.holdout or init:
        subjects = lr_subjects(kind, root)
        if args.holdout or not base.get("holdout"):
            base["holdout"] = _holdout(args.holdout or "auto", subjects)
            sys.stderr.write(f"held out (never choose the checkpoint): {', '.join(base['holdout'])}\n")
        if init:  # the scaled recipe beneath the config's own keys
            n_items = 2 * (len(subjects) - len(base["holdout"]))  # ED and ES of every training subject
            base = {**finetune_config(n_items, init, base["holdout"]), **base}
    if init and "model" not in base:
        base["model"] = init_model_config(init)["model"]
    if base.get("holdout") and base.get("fold"):
        raise DataError("--holdout and a cross-validation fold cannot be combined")
    return {**base, **overrides}


def _bar(e: dict) -> str:
    step, total = e.get("step", 0), max(1, e.get("total_steps", 1))
    n = int(30 * step / total)
    eta = e.get("eta_s")
    eta_s = "--:--" if eta is None else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
    return (f"\r[{'#' * n}{'.' * (30 - n)}] step {step}/{total} epoch {e.get('epoch', 0):.2f} "
            f"loss {e.get('loss', float('nan')):.4f} (ce {e.get('ce', float('nan')):.3f} "
            f"mse {e.get('mse', float('nan')):.4f}) ETA {eta_s}")


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig
    from gemini_cmr.core.train.lr_data import parse_source

    source = parse_source(args.data)
    if source is not None:  # LR-labelled cohort (core.train.lr_data)
        from gemini_cmr.core.train.semi import SemiConfig as TrainConfig  # noqa: N814
        from gemini_cmr.core.train.semi import SemiTrainer as GeminiTrainer  # noqa: N814
    elif args.holdout:
        raise DataError("--holdout needs an LR-labelled cohort (acdc:, mnms:, ukbb: or pairs:)", args.data)

    overrides = {"epochs": args.epochs, "max_steps": args.max_steps, "seed": args.seed,
                 "num_threads": args.threads, "amp": args.amp}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if source is not None:
        cfg = TrainConfig.from_dict(_lr_config(args, *source, overrides))
    else:
        if args.config:
            cfg = TrainConfig.from_file(args.config, **overrides)
        else:
            cfg = TrainConfig.from_dict(overrides)
        if args.resume and not args.config and (args.out / "config.json").exists():
            saved = json.loads((args.out / "config.json").read_text(encoding="utf-8"))["training"]
            saved.update(overrides)
            cfg = TrainConfig.from_dict(saved)
        if args.init:
            cfg.init = _init_path(args.init)

    def callback(e: dict) -> None:
        if args.progress_json:
            print(json.dumps(e), flush=True)
            return
        kind = e["event"]
        if kind == "step":
            sys.stderr.write(_bar(e))
            sys.stderr.flush()
        elif kind == "val":
            sys.stderr.write(f"\nvalidation epoch {e['epoch']:.0f}: Dice LV {e['lv_cavity']:.3f} "
                             f"myo {e['lv_myocardium']:.3f} RV {e['rv_cavity']:.3f}, PSNR {e['psnr']:.2f} dB, "
                             f"SSIM {e['ssim']:.3f}{' (best)' if e['best'] else ''}\n")
        elif kind == "start":
            sys.stderr.write(f"training Gemini-GAN: {e['n_train_items']} training items, {e['n_val']} "
                             f"validation samples, {e['total_steps']} steps on {e['device']} "
                             f"(amp {e['amp']}, {e['world_size']} process(es))\n")
        elif kind in ("done", "interrupted", "stopped"):
            sys.stderr.write(f"\n{kind}: step {e['step']}/{e['total_steps']} in {e['elapsed_s']:.0f} s; "
                             f"checkpoints in {e['out']}\n")
        elif kind == "compare":
            sys.stderr.write(f"held-out {e['index']}/{e['total']} {e['subject']}: {e['model']} model\n")
        elif kind == "compared":
            sys.stderr.write(f"\n{e['markdown']}\n\nmodel {e['model_id']} in {e['path']} (MODEL_CARD.md)\n")

    from gemini_cmr.core.train.loop import StopFlag

    stop = StopFlag()
    trainer = GeminiTrainer(cfg, args.data, args.out, args.device, callback, stop)
    with stop.on_sigint():
        summary = trainer.run(resume=args.resume)
    if summary["status"] == "done" and getattr(cfg, "holdout", None):
        from gemini_cmr.core.train.semi import finish_finetune

        finish_finetune(cfg, str(args.data), args.out, args.device, callback, summary["train_seconds"],
                        _command_line(args))
    return 130 if summary["status"] == "interrupted" else 0
