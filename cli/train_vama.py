"""`gemini-cmr train vama`: train a V-AMA domain adapter (registered by `cli/train.py`)."""

from __future__ import annotations

import argparse
import json
import sys

SUMMARY = "train a V-AMA adapter so studies from another scanner work with Gemini-GAN"


def register(subparsers, summary: str | None = None) -> argparse.ArgumentParser:
    from gemini_cmr.core.vama import MIN_SLICES

    p = subparsers.add_parser(
        "vama", help=summary or SUMMARY, description=(summary or SUMMARY) + (
            ". SOURCE = studies of the new scanner (labels optional), TARGET = studies of the Gemini-GAN "
            "training domain; each what super-resolve reads: a folder of studies (DICOM series folders or "
            "zips, NIfTI files, subject folders), one study, a paired dataset folder (manifest.json) or a "
            "cohort (acdc:PATH, mnms:PATH, ukbb:PATH, pairs:MANIFEST.json). Any slice orientation; each "
            f"domain needs at least {MIN_SLICES} 2D slices (slices x phases: a 20-phase cine of 10 slices is "
            "200)."),
    )
    p.add_argument("--source", required=True, metavar="SRC",
                   help="source-domain studies (new scanner): folder, file, or acdc:/mnms:/ukbb:/pairs: cohort")
    p.add_argument("--target", required=True, metavar="TGT",
                   help="target-domain studies (the model's training domain), same forms as --source")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder: adapter + checkpoints")
    p.add_argument("--gemini", metavar="MODEL", default=None,
                   help="the Gemini-GAN model the adapter is for (default: the bundled model); it also "
                        "segments studies without labels for the alignment landmarks")
    p.add_argument("--epochs", type=int, default=20, help="epochs per stage (G_t, then G_s); default 20")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps per stage")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="default: source slices x phases / batch size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=64, help="training crop size in LR pixels (default 64)")
    p.add_argument("--split", default="train",
                   help="split of a paired dataset or cohort to use (train, val, test or all; default train)")
    p.add_argument("--identity-weight", type=float, default=0.0,
                   help="L1 penalty between the adapter's output and its input (keeps it near the identity; "
                        "default 0)")
    p.add_argument("--segment-phases", type=int, default=10,
                   help="phases of each unlabelled study that Gemini-GAN segments to pair it with the target "
                        "(default 10)")
    p.add_argument("--no-measure", dest="measure", action="store_false",
                   help="do not score the model with and without the adapter on labelled source studies")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.*")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress-json", action="store_true", help="one JSON event per line on stdout")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from gemini_cmr.core.errors import DataError
    from gemini_cmr.core.train.loop import StopFlag
    from gemini_cmr.core.train.vama import TrainSettings, train_vama

    if args.epochs < 1 or (args.max_steps is not None and args.max_steps < 1) or args.batch_size < 2:
        raise DataError("--epochs and --max-steps must be >= 1 and --batch-size >= 2")
    if args.crop < 16:
        raise DataError("--crop must be at least 16 pixels")
    if not args.identity_weight >= 0 or args.segment_phases < 1:
        raise DataError("--identity-weight must be >= 0 and --segment-phases >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    def progress(event: dict) -> None:
        event = {"kind": "vama"} | event
        if args.progress_json:
            print(json.dumps(event, default=float), flush=True)
        elif event["event"] in ("epoch", "done", "resume", "data", "start", "segment", "effect"):
            if event["event"] == "epoch":
                losses = " ".join(f"{k}={v:.4f}" for k, v in event["losses"].items())
                print(f"[{event['stage']} epoch {event['epoch']}] step {event['step']}/{event['total_steps']} "
                      f"{losses}", flush=True)
            elif event["event"] == "done":
                print(f"adapter written to {event['path']} (id {event['adapter_id'][:12]})", flush=True)
            elif event["event"] == "effect":
                pairs = ", ".join(f"{k} {event['before'][k]:.3f} -> {event['after'][k]:.3f}"
                                  for k in event["before"] if k in event["after"])
                print(f"Dice on {event['studies']} labelled source studies without -> with the adapter: {pairs}",
                      flush=True)
            else:
                print(" ".join(f"{k}={v}" for k, v in event.items() if k != "kind"), file=sys.stderr, flush=True)

    settings = TrainSettings(epochs=args.epochs, max_steps=args.max_steps, steps_per_epoch=args.steps_per_epoch,
                             batch_size=args.batch_size, crop=args.crop, seed=args.seed, device=args.device,
                             split=args.split, identity_weight=args.identity_weight,
                             segment_phases=args.segment_phases, measure=args.measure)
    stop = StopFlag()
    with stop.on_sigint():
        train_vama(args.source, args.target, args.out, gemini=args.gemini, settings=settings,
                   resume=args.resume, progress=progress, cancel=lambda: bool(stop))
    return 0
