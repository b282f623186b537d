"""One training step of the ACDC recipe on the CPU: the memory format and the decoder's skip concatenation,
measured against the step before in one process, on the same batches.

    .venv/bin/python benchmarks/bench_train_step.py [--config recipes/gemini-acdc/ablations/steps2400_robust.json]
        [--data acdc:../shared/data/acdc/training] [--fold 1/5] [--steps 12] [--block 1] [--threads 2] [--json FILE]
    .venv/bin/python benchmarks/bench_train_step.py --phantoms data/phantoms [--steps 20] [--json FILE]

The recipe's `SemiTrainer` is set up as `train cv` sets up a fold (the config's model, augmentation, crops and
bf16 autocast); then every step index 1..N is run once per variant, the variants' order rotating from one
index to the next, so each variant sees the same batches:

- "before": NCHW weights, and each decoder level convolves the concatenation of its skip connection and the
  upsampled features (`cat`), as the trainer did before;
- "channels_last": the 2D convolutions' weights (and so the activations) in channels_last, still `cat`;
- "current": channels_last and the concatenation's convolution as the sum of two convolutions with the weight
  split by input channels (`core.models.blocks.Up`), what `SemiTrainer` now does on the CPU.

`--block K`: each variant runs K step indices in a row (plus one untimed step after switching the memory
format), the next variant the same K indices, the order rotating per block: no switch between timed steps.

Each step changes the weights (an optimiser step), so the variants do not train the same model; the check
of the arithmetic is separate: on one batch, without an optimiser step, the loss and the gradient of every
parameter under each variant against "before" (per parameter |g - g_before| / |g_before|, median and
largest over the parameters), and, for scale, "before" in float32 against "before" in bf16.

`--phantoms DATA`: the phantom (GAN) trainer instead (`GeminiTrainer`, the bundled phantom model's training
config without its `init`, on that paired dataset, e.g. `gemini-cmr synth data/phantoms --subjects 40 --seed 0`):
the same timing of the three variants, without the gradient check.

Prints the seconds of every step, the median per variant, the ratio before / variant (median of the paired
ratios and ratio of the totals), and the gradient check. Run on an idle machine (pause other jobs): the
steps take 2.5-6 s each on the project's 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gemini_cmr.core.models import blocks
from gemini_cmr.core.train.semi import SemiConfig, SemiTrainer, acquired_losses

CURRENT_UP = blocks.Up.forward


def up_forward_cat(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """`Up.forward` as before in training: the convolution of the concatenation."""
    if not self.training:
        return CURRENT_UP(self, x, skip)
    x = self.up(x) if self.mode == "transposed" else F.interpolate(x, scale_factor=2, mode="bilinear",
                                                                   align_corners=False)
    if x.shape[-2:] != skip.shape[-2:]:
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
    return self.conv(torch.cat([skip, x], dim=1))


VARIANTS = {"before": (False, up_forward_cat), "channels_last": (True, up_forward_cat), "current": (True, CURRENT_UP)}


def use(trainer: SemiTrainer, name: str) -> None:
    channels_last, forward = VARIANTS[name]
    blocks.channels_last_convs(trainer.G, channels_last)
    blocks.Up.forward = forward


def gradients(trainer: SemiTrainer, step: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients of one batch (`trainer._batch(step)`), no optimiser step."""
    b = trainer._batch(step)
    trainer.G.train()
    trainer.G.zero_grad(set_to_none=True)
    parts = acquired_losses(trainer.G, b["x"], b["labels"], b["slab"], trainer.w_tensor, trainer.amp_dtype,
                            trainer.cfg.seg_target, context=b["context"])
    loss = parts["ce"] + trainer.cfg.lambda_dice * parts["dice"] + trainer.cfg.lambda_degrade * parts["degrade"]
    loss.backward()
    return float(loss.detach()), {n: p.grad.detach().clone() for n, p in trainer.G.named_parameters() if p.grad is not None}


def gradient_check(trainer: SemiTrainer, step: int, loss0: float, g0: dict[str, torch.Tensor]) -> dict:
    """This variant's loss and gradients of batch `step` against `loss0`/`g0`: per parameter the relative L2
    difference |g - g0| / |g0|, its median and largest value over the parameters."""
    loss, g = gradients(trainer, step)
    rel = [float((g[n].float() - g0[n].float()).norm() / g0[n].float().norm().clamp(min=1e-30)) for n in g0]
    return {"loss": loss, "loss_before": loss0, "median_relative_l2": statistics.median(rel),
            "max_relative_l2": max(rel)}


def recipe_trainer(config: str | Path, data: str, fold: str, threads: int, out: str | Path) -> SemiTrainer:
    """The recipe's `SemiTrainer` for one fold on the CPU, prepared as `train cv` prepares it (no validation)."""
    base = {k: v for k, v in json.loads(Path(config).read_text()).items() if not k.startswith("_")}
    cfg = SemiConfig.from_dict({**base, "fold": fold, "val_every": 10**9, "num_threads": threads})
    trainer = SemiTrainer(cfg, data, out, "cpu")
    trainer._prepare()
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="recipes/gemini-acdc/ablations/steps2400_robust.json")
    ap.add_argument("--data", default="acdc:../shared/data/acdc/training")
    ap.add_argument("--fold", default="1/5")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=1,
                    help="steps each variant runs in a row (after one untimed step following the switch)")
    ap.add_argument("--out", default=None, help="scratch folder for the trainer (default: a temporary one)")
    ap.add_argument("--phantoms", type=Path, default=None, help="time the phantom (GAN) trainer on this paired dataset")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        names = list(VARIANTS)
        check = {}
        if args.phantoms:
            from gemini_cmr.core.resources import bundled_model_path
            from gemini_cmr.core.train.gemini import GeminiTrainer, TrainConfig

            conf = json.loads((bundled_model_path() / "config.json").read_text())["training"]["config"]
            conf = {k: v for k, v in conf.items() if k not in ("init", "cache_dir")}
            trainer = GeminiTrainer(TrainConfig.from_dict({**conf, "val_every": 10**9, "num_threads": args.threads}),
                                    args.phantoms, args.out or tmp, "cpu")
            trainer._prepare()
        else:
            trainer = recipe_trainer(args.config, args.data, args.fold, args.threads, args.out or tmp)
            # the arithmetic: one batch's loss and gradients under each variant, from the same weights, against
            # "before"; bf16's own error for scale: "before" in float32 (autocast off) against "before"
            use(trainer, "before")
            loss0, g0 = gradients(trainer, 0)
            amp, trainer.amp_dtype = trainer.amp_dtype, None
            check["float32"] = gradient_check(trainer, 0, loss0, g0)
            trainer.amp_dtype = amp
            for name in names[1:]:
                use(trainer, name)
                check[name] = gradient_check(trainer, 0, loss0, g0)
        for name, c in check.items():
            print(f"{name} against before: loss {c['loss']:.6f} ({c['loss_before']:.6f}), gradients' relative "
                  f"L2 difference per parameter: median {c['median_relative_l2']:.2e}, largest "
                  f"{c['max_relative_l2']:.2e}", flush=True)
        for name in names:  # warm-up: one step each
            use(trainer, name)
            trainer._step(0)
        times: dict[str, list[float]] = {n: [] for n in names}
        first = 1
        while first <= args.steps:
            idx = list(range(first, min(args.steps, first + args.block - 1) + 1))
            r = (first - 1) // args.block
            for name in names[r % len(names):] + names[: r % len(names)]:
                use(trainer, name)
                if args.block > 1:
                    trainer._step(idx[0])  # after the switch, not timed
                for s in idx:
                    t0 = time.perf_counter()
                    trainer._step(s)
                    times[name].append(time.perf_counter() - t0)
            for j, s in enumerate(idx, start=len(times[names[0]]) - len(idx)):
                print(f"step {s}: " + ", ".join(f"{n} {times[n][j]:.3f} s" for n in names), flush=True)
            first += len(idx)
        blocks.Up.forward = CURRENT_UP
    rows = {}
    for name in names:
        paired = [b / t for b, t in zip(times["before"], times[name])]
        rows[name] = {"median_s": statistics.median(times[name]), "runs_s": [round(t, 3) for t in times[name]],
                      "ratio_before_over_this_paired_median": statistics.median(paired),
                      "ratio_of_totals": sum(times["before"]) / sum(times[name])}
        print(f"{name:14s} median {rows[name]['median_s']:.3f} s a step, before / this: paired median "
              f"{rows[name]['ratio_before_over_this_paired_median']:.3f}, totals {rows[name]['ratio_of_totals']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "trainer": "phantom GAN (GeminiTrainer)" if args.phantoms else "LR labels (SemiTrainer)",
            "config": "bundled gemini-phantom's training config" if args.phantoms else args.config,
            "data": str(args.phantoms or args.data), "fold": None if args.phantoms else args.fold,
            "block": args.block, "steps": args.steps, "threads": args.threads,
            "torch": torch.__version__, "amp": str(trainer.amp_dtype), "variants": rows, "gradient_check": check},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
