"""Time the whole pipeline (`SuperResolver.run`, every phase, no meshes) of a real study without test-time
augmentation, with it at ED and ES only (`--tta-ed-es`) and, with --all, on every phase (`--tta`), in one
process, interleaved; prints the median seconds of the network stages (motion pass excluded: the same in
every mode) and each mode's ratio to the plain run:

    .venv/bin/python benchmarks/bench_tta.py [--study ../shared/data/sunnybrook/SCD0000101] [--repeat 3] [--all]
        [--json benchmarks/results/tta_cpu_real.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics

import torch

from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.io.loader import load_study

NETWORK = ("predict", "predict_tta")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="also time --tta (every phase: 4x)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(args.study)
    engine = SuperResolver(device="cpu")  # the model chosen for the study, as super-resolve does
    modes = ["off", "ed_es"] + (["all"] if args.all else [])
    engine.run(study, phases="0", meshes="none", motion_correction=False)  # warm-up, model choice
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeat):
        for m in modes:
            r = engine.run(study, phases="all", meshes="none", motion_correction=False, tta=m)
            times[m].append(sum(float(r.timings.get(k, 0.0)) for k in NETWORK))
    base = statistics.median(times["off"])
    out = {"study": args.study, "model_id": engine.model_id, "phases": study.n_phases, "repeat": args.repeat,
           "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "network_s": {m: [round(v, 3) for v in t] for m, t in times.items()},
           "median_s": {m: round(statistics.median(t), 3) for m, t in times.items()},
           "ratio_to_off": {m: round(statistics.median(t) / base, 3) for m, t in times.items()}}
    for m in modes:
        print(f"tta {m:6s}: network {out['median_s'][m]:.2f} s per {study.n_phases}-phase cine (median of "
              f"{args.repeat}), x{out['ratio_to_off'][m]:.2f} the plain run")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
