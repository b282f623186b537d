"""Time two or more Gemini-GAN models on the same study in one process (min of --repeat runs each,
interleaved), e.g. the default bundled phantom model against the optional acquired-2d one:

    .venv/bin/python benchmarks/bench_models.py resources/models/gemini-phantom resources/models/gemini-phantom-sac

Prints seconds per cine (`Predictor.predict`, all phases) and each model's ratio to the first.
"""

from __future__ import annotations

import argparse
import time

import torch  # noqa: E402

from gemini_cmr.core.io.loader import load_study  # noqa: E402
from gemini_cmr.core.predict import Predictor  # noqa: E402
from gemini_cmr.core.resources import demo_study_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--study", default=str(demo_study_path()))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(args.study)
    preds = [Predictor.load(m, device="cpu") for m in args.models]
    for p in preds:  # warm-up
        p.predict(study, phases=[0])
    times = [[] for _ in preds]
    for _ in range(args.repeat):
        for i, p in enumerate(preds):
            t0 = time.perf_counter()
            p.predict(study)
            times[i].append(time.perf_counter() - t0)
    base = min(times[0])
    print(f"study {args.study}: {study.n_phases} phases, torch threads {torch.get_num_threads()}, "
          f"min of {args.repeat}")
    for m, p, t in zip(args.models, preds, times):
        enc = p.config["model"].get("encoder", "slices-as-channels")
        print(f"{m} ({p.model_id[:12]}, {enc}, {p.precision}): {min(t):.2f} s per cine, "
              f"x{min(t) / base:.2f} the first")


if __name__ == "__main__":
    main()
