"""Study loading speed: `load_study` on the 240-file Sunnybrook series vs a plain pydicom baseline.

Baseline (same process): read every file with `pydicom.dcmread` and decode its pixels, nothing else.
Run: .venv/bin/python benchmarks/bench_io.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pydicom

from gemini_cmr.core.io import load_study

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sunnybrook" / "SCD0000101"


def plain_pydicom(folder: Path) -> int:
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            n += ds.pixel_array.size
    return n


def best_of(fn, repeats: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    study = load_study(args.path)  # warm-up: imports and disk cache
    w_load, c_load = best_of(lambda: load_study(args.path), args.repeats)
    w_base, c_base = best_of(lambda: plain_pydicom(args.path), args.repeats)
    print(f"study: {args.path} shape {list(study.image.shape)}")
    print(f"load_study            wall {w_load:.3f} s  cpu {c_load:.3f} s")
    print(f"pydicom read+decode   wall {w_base:.3f} s  cpu {c_base:.3f} s  (baseline)")
    print(f"ratio load_study / baseline (wall): {w_load / w_base:.2f}")


if __name__ == "__main__":
    main()
