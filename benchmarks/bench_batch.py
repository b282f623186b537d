"""`gemini-cmr batch` throughput: outputs written on a thread while the next study runs (the default)
against `--serial`, alternating fresh processes on the same cohort (copies of the demo study).

    .venv/bin/python benchmarks/bench_batch.py [--studies 6] [--rounds 2] [--device cpu]

Prints each run's studies/hour as the command reports it (studies done / wall time of the loop) and the
ratio of the medians.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.bench import DEMO_STUDY  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rates: dict[str, list[float]] = {"overlapped": [], "--serial": []}
    with tempfile.TemporaryDirectory(prefix="gemini-bench-batch-") as tmp:
        tmp = Path(tmp)
        cohort = tmp / "cohort"
        cohort.mkdir()
        for i in range(args.studies):
            shutil.copy(DEMO_STUDY, cohort / f"demo{i}.nii.gz")
        for r in range(args.rounds):
            for name in rates:
                out = tmp / f"out-{r}-{name.strip('-')}"
                cmd = [sys.executable, "-m", "core.cli.main", "batch", str(cohort), "--out", str(out),
                       "--device", args.device, "--quiet"] + (["--serial"] if name == "--serial" else [])
                res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                m = re.search(r"([\d,]+) studies/hour", res.stdout)
                if res.returncode != 0 or not m:
                    print(res.stdout, res.stderr, file=sys.stderr)
                    return 1
                rates[name].append(float(m.group(1).replace(",", "")))
                print(f"round {r + 1} {name:10} {rates[name][-1]:7.0f} studies/hour", flush=True)
                shutil.rmtree(out)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median: overlapped {med['overlapped']:.0f}, --serial {med['--serial']:.0f} studies/hour; "
          f"ratio x{med['overlapped'] / med['--serial']:.2f} ({args.studies} studies, {args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
