"""Phases per network call on the CPU: time and peak memory of the real path at each batch size.

Runs `gemini-cmr bench --study STUDY --repeat 1 --batch-size B --json` in a fresh process per run (peak RSS is
per process), the batch sizes alternating for ROUNDS rounds, and prints per batch size the median network
time per cine, file-to-outputs time and peak RSS, with their ratios against the first batch size.
`compare` is shared with `bench_hugepage.py`.

    .venv/bin/python benchmarks/bench_batch.py [--study ../shared/data/sunnybrook/SCD0000101] [--sizes 4 2]
        [--rounds 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"network_s": lambda d: d["model_per_cine_s"],
          "preprocess_s": lambda d: d["stages_s"]["predict_preprocess"],
          "file_to_outputs_s": lambda d: d["file_to_outputs_s"],
          "peak_rss_mib": lambda d: d["peak_rss_mb"]}


def bench_study(study: str, extra: list[str] | None = None, numpy_hugepage: bool | None = None) -> dict:
    """One `gemini-cmr bench --study STUDY --repeat 1 --reference-phases 1 --json [EXTRA]` in a fresh process
    (numpy's huge-page hint chosen with NUMPY_MADVISE_HUGEPAGE when `numpy_hugepage` is given; the product
    then leaves it as chosen): `FIELDS` of its report."""
    argv = ["bench", "--study", study, "--repeat", "1", "--reference-phases", "1", "--json", *(extra or [])]
    env = dict(os.environ)
    env.pop("NUMPY_MADVISE_HUGEPAGE", None)
    if numpy_hugepage is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = "1" if numpy_hugepage else "0"
    code = f"import sys; from gemini_cmr.cli.main import main; sys.exit(main({argv!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    d = json.loads(out.stdout)
    return {k: f(d) for k, f in FIELDS.items()}


def compare(study: str, variants: dict[str, dict], rounds: int) -> dict:
    """`bench_study(study, **kwargs)` for each variant name -> kwargs, alternating for `rounds` rounds; prints
    each run and the medians with their ratios against the first variant. Returns {"runs", "median"}."""
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, kwargs in variants.items():
            runs[name].append(bench_study(study, **kwargs))
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[name][-1].items()),
                  flush=True)
    med = {name: {k: statistics.median(x[k] for x in rs) for k in FIELDS} for name, rs in runs.items()}
    base = med[next(iter(variants))]
    for name, m in med.items():
        print(f"{name}: median " + ", ".join(f"{k} {m[k]:.3f} (x{m[k] / base[k]:.3f})" for k in FIELDS))
    return {"runs": runs, "median": med}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = compare(args.study, {str(b): {"extra": ["--batch-size", str(b)]} for b in args.sizes}, args.rounds)
    if args.json:
        args.json.write_text(json.dumps({"study": args.study, "rounds": args.rounds, **res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
