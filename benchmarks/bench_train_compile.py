"""One training step of the ACDC recipe on the CPU, eager against `torch.compile` (Inductor), in one process.

    .venv/bin/python benchmarks/bench_train_compile.py [--config recipes/gemini-acdc/ablations/steps2400_robust.json]
        [--data acdc:../shared/data/acdc/training] [--fold 1/5] [--steps 8] [--threads 2] [--json FILE]

The recipe's `SemiTrainer` is set up as `train cv` sets up a fold (as in `bench_train_step.py`); the 2D encoder
(`GeminiGenerator._encode2d`: `inc` and `downs`) and both decoders are compiled with `dynamic=True` (the
number of acquired slices varies between batches); the through-plane mixing and the losses stay eager. Three
compiled steps warm up (the first one compiles; its time is printed), then blocks of 4 step indices run under each mode in turn (one untimed
step after every switch), the order alternating between blocks, so both modes see the same batches.
Prints the seconds of every step, the medians and the ratio eager / compiled. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_train_step import recipe_trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="recipes/gemini-acdc/ablations/steps2400_robust.json")
    ap.add_argument("--data", default="acdc:../shared/data/acdc/training")
    ap.add_argument("--fold", default="1/5")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per mode (a multiple of 4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = recipe_trainer(args.config, args.data, args.fold, args.threads, tmp)
        g = trainer.G
        eager = {"seg_decoder": g.seg_decoder, "image_decoder": g.image_decoder}
        compiled = {k: torch.compile(m, dynamic=True) for k, m in eager.items()}
        encoder = torch.compile(g._encode2d, dynamic=True)  # the bound method: `inc` and `downs`

        def use(on: bool) -> None:
            for k in eager:
                g._modules[k] = compiled[k] if on else eager[k]
            if on:
                g._encode2d = encoder
            else:
                g.__dict__.pop("_encode2d", None)

        use(False)
        trainer._step(0)
        use(True)
        warm = []
        for i in range(3):
            t0 = time.perf_counter()
            trainer._step(10_000 + i)
            warm.append(time.perf_counter() - t0)
            print(f"compiled warm-up step {i}: {warm[-1]:.2f} s", flush=True)
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for block, first in enumerate(range(1, args.steps + 1, 4)):
            for on in ((False, True) if block % 2 == 0 else (True, False)):
                use(on)
                trainer._step(first)  # after the switch, not timed
                for s in range(first, first + 4):
                    t0 = time.perf_counter()
                    trainer._step(s)
                    times["compiled" if on else "eager"].append(time.perf_counter() - t0)
        use(False)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:9s} median {med[k]:.3f} s a step: " + ", ".join(f"{t:.2f}" for t in v))
    ratio, totals = med["eager"] / med["compiled"], sum(times["eager"]) / sum(times["compiled"])
    print(f"eager / compiled: medians {ratio:.3f}, totals {totals:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "config": args.config, "fold": args.fold, "threads": args.threads, "torch": torch.__version__,
            "amp": str(trainer.amp_dtype), "compile_warmup_s": warm,
            "runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()}, "median_s": med,
            "ratio_eager_over_compiled_medians": ratio, "ratio_of_totals": totals}, indent=2) + "\n")


if __name__ == "__main__":
    main()
