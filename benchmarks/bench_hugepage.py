"""numpy's transparent-huge-page hint (`madvise(MADV_HUGEPAGE)` on its large arrays) on the real path.

Runs `gemini-cmr bench --study STUDY --repeat 1 --reference-phases 1 --json` in fresh processes with numpy's
hint on (numpy's default) and off, alternating for ROUNDS rounds, and prints the medians of the network
time, the placement ("preprocess": the placed stack written into the fresh full-field SR image), file to
outputs and peak RSS, with the ratios off / on. Where the kernel's THP mode is "madvise", faulting huge
pages in on first touch can cost more than the 4 KB pages it saves.

    .venv/bin/python benchmarks/bench_hugepage.py [--study ../shared/data/sunnybrook/SCD0000101] [--rounds 3]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("import sys, numpy; numpy._core.multiarray._set_madvise_hugepage({flag}); "
        "from gemini_cmr.cli.main import main; sys.exit(main(['bench', '--study', {study!r}, '--repeat', '1', "
        "'--reference-phases', '1', '--json']))")
KEYS = ("network_s", "preprocess_s", "file_to_outputs_s", "peak_rss_mib")


def one_run(study: str, flag: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CODE.format(flag=flag, study=study)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return {"network_s": d["model_per_cine_s"], "preprocess_s": d["stages_s"]["predict_preprocess"],
            "file_to_outputs_s": d["file_to_outputs_s"], "peak_rss_mib": d["peak_rss_mb"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="../shared/data/sunnybrook/SCD0000101")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp.read_text().strip() if thp.is_file() else "unknown"
    print(f"THP: {mode}", flush=True)
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for r in range(args.rounds):
        for key, flag in (("on", True), ("off", False)):
            runs[key].append(one_run(args.study, flag))
            x = runs[key][-1]
            print(f"round {r + 1} hint {key}: " + ", ".join(f"{k} {x[k]:.3f}" for k in KEYS), flush=True)
    med = {key: {k: statistics.median(x[k] for x in rs) for k in KEYS} for key, rs in runs.items()}
    for k in KEYS:
        print(f"{k}: on {med['on'][k]:.3f}, off {med['off'][k]:.3f} (off/on x{med['off'][k] / med['on'][k]:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"study": args.study, "thp": mode, "rounds": args.rounds, "runs": runs,
                                         "median": med}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
