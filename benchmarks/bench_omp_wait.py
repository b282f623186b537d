"""OpenMP wait policy of the CPU path, idle and with other work on the cores:

    .venv/bin/python benchmarks/bench_omp_wait.py [--study DIR] [--repeat 3] [--json OUT.json]

Each measurement is a fresh process (the OpenMP runtime reads its environment once, when torch loads it) that
super-resolves the study `--repeat` times after one warm-up run (`SuperResolver.run`, the real-study path with
the model chosen automatically) and reports the network seconds (`predict_model`) and the engine's total per run.
Policies: `unset` (libgomp's default: idle threads spin before they sleep), `PASSIVE` (idle threads sleep at
once; what `gemini-cmr` sets unless OMP_WAIT_POLICY is in the environment) and `GOMP_SPINCOUNT=10000`. Loads:
none; a second process training a convolution stack on as many threads as there are cores, with the OpenMP
default (another program); the same with PASSIVE (a `gemini-cmr train` beside the app). The policies run
interleaved under each load; printed: median seconds and the ratio to `unset` under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

POLICIES = {"unset": {}, "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin10k": {"GOMP_SPINCOUNT": "10000"}}
LOADS = {"idle": None, "load_unset": {}, "load_passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

WORKER = r"""
import json, sys, time
from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.io import load_study
study = load_study(sys.argv[1])
sr = SuperResolver(device="cpu")
rows = []
for i in range(int(sys.argv[2]) + 1):
    res = sr.run(study, meshes="none")
    if i:
        rows.append({"predict_model": res.timings["predict_model"], "total": res.timings["total"]})
print(json.dumps(rows))
"""

LOAD = r"""
import torch
n = torch.get_num_threads()
conv = torch.nn.Sequential(*[torch.nn.Conv2d(32, 32, 3, padding=1) for _ in range(4)])
x = torch.randn(16, 32, 112, 112)
while True:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x).float().mean()
    y.backward()
"""


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    env.update(extra)
    return env


def measure(study: str, repeat: int, policy: dict[str, str]) -> list[dict[str, float]]:
    out = subprocess.run([sys.executable, "-c", WORKER, study, str(repeat)], env=clean_env(policy),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=None, help="default: the real cine `gemini-cmr bench` times (core.perf)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per process after the warm-up")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved processes per policy and load")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.study is None:
        from gemini_cmr.core.perf import default_real_study

        found = default_real_study()
        if found is None:
            raise SystemExit("no real study found: give --study (or set GEMINI_CMR_BENCH_REAL)")
        args.study = str(found)
    results: dict = {"study": args.study, "repeat": args.repeat, "rounds": args.rounds, "cpu_count": os.cpu_count(),
                     "loads": {}}
    for load_name, load_env in LOADS.items():
        proc = None
        if load_env is not None:
            proc = subprocess.Popen([sys.executable, "-c", LOAD], env=clean_env(load_env),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3.0)
        try:
            runs: dict[str, list[dict[str, float]]] = {p: [] for p in POLICIES}
            for _ in range(args.rounds):
                for name, env in POLICIES.items():
                    runs[name] += measure(args.study, args.repeat, env)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        summary = {}
        for name, rows in runs.items():
            summary[name] = {k: statistics.median(r[k] for r in rows) for k in ("predict_model", "total")}
            summary[name]["runs"] = rows
        base = summary["unset"]
        for name, s in summary.items():
            s["ratio_to_unset"] = {k: s[k] / base[k] for k in ("predict_model", "total")}
            print(f"{load_name:13s} {name:8s} network {s['predict_model']:6.2f} s (x{s['ratio_to_unset']['predict_model']:.2f})"
                  f"  engine total {s['total']:6.2f} s (x{s['ratio_to_unset']['total']:.2f})", flush=True)
        results["loads"][load_name] = summary
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
