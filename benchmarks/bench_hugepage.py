"""numpy's transparent-huge-page hint (`madvise(MADV_HUGEPAGE)` on its large arrays) on the real path.

Runs `gemini-cmr bench --study STUDY --repeat 1 --reference-phases 1 --json` in fresh processes with numpy's
hint on (numpy's own default, NUMPY_MADVISE_HUGEPAGE=1) and off (NUMPY_MADVISE_HUGEPAGE=0; what the product
sets at predictor start-up, `core.parallel.numpy_hugepage_hint_off`), alternating for ROUNDS rounds
(`bench_batch.compare`), and prints the medians of the network time, the placement ("preprocess": the placed
stack written into the fresh full-field SR image), file to outputs and peak RSS, with the ratios off / on.
Where the kernel's THP mode is "madvise", faulting huge pages in on first touch can cost more than the 4 KB
pages it saves.

    .venv/bin/python benchmarks/bench_hugepage.py [--study ../shared/data/sunnybrook/SCD0000101] [--rounds 3]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_batch import compare


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp.read_text().strip() if thp.is_file() else "unknown"
    print(f"THP: {mode}", flush=True)
    res = compare(args.study, {"on": {"numpy_hugepage": True}, "off": {"numpy_hugepage": False}}, args.rounds)
    if args.json:
        args.json.write_text(json.dumps({"study": args.study, "thp": mode, "rounds": args.rounds, **res},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
