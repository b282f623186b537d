"""`gemini-cmr train gemini`: train Gemini-GAN on a paired dataset (docs/gemini.md).

Writes RUN/config.json, RUN/best/ and RUN/last/ (model.safetensors + config.json, usable with
`super-resolve --model RUN/best`), RUN/last/state.* for --resume, RUN/history.json (validation).
Ctrl-C stops after the current step and writes the last checkpoint (a second Ctrl-C aborts).
Runs unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel, gloo on CPU).
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
                        "(M&Ms layout) or pairs:MANIFEST.json (image + label NIfTI pairs)")
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
    p.set_defaults(func=run)


def _bar(e: dict) -> str:
    step, total = e.get("step", 0), max(1, e.get("total_steps", 1))
    n = int(30 * step / total)
    eta = e.get("eta_s")
    eta_s = "--:--" if eta is None else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
    return (f"\r[{'#' * n}{'.' * (30 - n)}] step {step}/{total} epoch {e.get('epoch', 0):.2f} "
            f"loss {e.get('loss', float('nan')):.4f} (ce {e.get('ce', float('nan')):.3f} "
            f"mse {e.get('mse', float('nan')):.4f}) ETA {eta_s}")


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig
    from gemini_cmr.core.train.lr_data import parse_source

    if parse_source(args.data) is not None:  # LR-labelled cohort (core.train.lr_data)
        from gemini_cmr.core.train.semi import SemiConfig as TrainConfig  # noqa: N814
        from gemini_cmr.core.train.semi import SemiTrainer as GeminiTrainer  # noqa: N814

    overrides = {"epochs": args.epochs, "max_steps": args.max_steps, "seed": args.seed,
                 "num_threads": args.threads, "amp": args.amp}
    if args.config:
        cfg = TrainConfig.from_file(args.config, **overrides)
    else:
        cfg = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if args.resume and not args.config and (args.out / "config.json").exists():
        saved = json.loads((args.out / "config.json").read_text(encoding="utf-8"))["training"]
        saved.update({k: v for k, v in overrides.items() if v is not None})
        cfg = TrainConfig.from_dict(saved)

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

    from gemini_cmr.core.train.loop import StopFlag

    stop = StopFlag()
    trainer = GeminiTrainer(cfg, args.data, args.out, args.device, callback, stop)
    with stop.on_sigint():
        summary = trainer.run(resume=args.resume)
    return 130 if summary["status"] == "interrupted" else 0
