"""Phases per network call on the CPU: time and peak memory of the real path at each batch size.

Runs `gemini-cmr bench --study STUDY --repeat 1 --batch-size B --json` in a fresh process per run (peak RSS is
per process), the batch sizes alternating for ROUNDS rounds, and prints per batch size the median network
time per cine, file-to-outputs time and peak RSS, with their ratios against the first batch size.

    .venv/bin/python benchmarks/bench_batch.py [--study ../shared/data/sunnybrook/SCD0000101] [--sizes 4 2]
        [--rounds 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(study: str, batch: int) -> dict:
    cmd = [sys.executable, "-m", "gemini_cmr.cli.main", "bench", "--study", study, "--repeat", "1",
           "--batch-size", str(batch), "--reference-phases", "1", "--json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return {"network_s": d["model_per_cine_s"], "file_to_outputs_s": d["file_to_outputs_s"],
            "peak_rss_mib": d["peak_rss_mb"], "load_average_1min": d.get("load_average_1min"),
            "model_id": d.get("model_id", "")[:12]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    runs: dict[int, list[dict]] = {b: [] for b in args.sizes}
    for r in range(args.rounds):
        for b in args.sizes:
            runs[b].append(one_run(args.study, b))
            x = runs[b][-1]
            print(f"round {r + 1} batch {b}: network {x['network_s']:.2f} s, file to outputs "
                  f"{x['file_to_outputs_s']:.2f} s, peak RSS {x['peak_rss_mib']:.0f} MiB", flush=True)
    med = {b: {k: statistics.median(x[k] for x in rs) for k in ("network_s", "file_to_outputs_s", "peak_rss_mib")}
           for b, rs in runs.items()}
    base = args.sizes[0]
    for b in args.sizes:
        m = med[b]
        print(f"batch {b}: median network {m['network_s']:.2f} s (x{m['network_s'] / med[base]['network_s']:.3f}), "
              f"file to outputs {m['file_to_outputs_s']:.2f} s (x{m['file_to_outputs_s'] / med[base]['file_to_outputs_s']:.3f}), "
              f"peak RSS {m['peak_rss_mib']:.0f} MiB (x{m['peak_rss_mib'] / med[base]['peak_rss_mib']:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"study": args.study, "rounds": args.rounds, "runs": runs, "median": med},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
