"""The allocator setting of `core.parallel.tune_malloc`, measured: `benchmarks/bench_models.py`
run in fresh processes with the setting off (GEMINI_CMR_MALLOC=0) and on, alternating, so both see the same
machine load; prints the min seconds per cine of each model under each setting and the ratio.

    .venv/bin/python benchmarks/bench_malloc.py [MODEL ...] [--rounds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(?P<model>\S+) \(.*\): (?P<s>[0-9.]+) s per cine")


def run(models: list[str], repeat: int, tuned: bool) -> dict[str, float]:
    env = dict(os.environ, GEMINI_CMR_MALLOC="1" if tuned else "0")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_models.py"), *models,
                          "--repeat", str(repeat)], env=env, capture_output=True, text=True, check=True).stdout
    return {m["model"]: float(m["s"]) for m in map(LINE.match, out.splitlines()) if m}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["resources/models/gemini-phantom",
                                                  "resources/models/gemini-phantom-sac"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    best: dict[tuple[str, bool], float] = {}
    for r in range(args.rounds):
        for tuned in (False, True):
            for m, s in run(args.models, args.repeat, tuned).items():
                best[(m, tuned)] = min(s, best.get((m, tuned), float("inf")))
            print(f"round {r + 1}/{args.rounds} {'tuned' if tuned else 'glibc default'} done", flush=True)
    print(f"min over {args.rounds} processes x {args.repeat} cines each (demo study, Predictor.predict):")
    for m in args.models:
        off, on = best[(m, False)], best[(m, True)]
        print(f"{m}: glibc default {off:.2f} s, tune_malloc {on:.2f} s per cine: x{off / on:.2f}")


if __name__ == "__main__":
    main()
