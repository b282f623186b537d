"""Seconds per phantom subject (HR + LR, in memory) for `gemini-cmr synth`.

    .venv/bin/python benchmarks/bench_synth.py [--subjects 5] [--phases 20] [--domain ukdhp-like] [--write]

Prints wall-clock and CPU seconds per subject (CPU time is the fairer number on a shared machine) and,
with --write, the time to write the four NIfTI files of one subject.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gemini_cmr.core.io.nifti import save_nifti
from gemini_cmr.core.synth import make_subject


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--phases", type=int, default=20)
    ap.add_argument("--domain", default="ukdhp-like")
    ap.add_argument("--write", action="store_true", help="also time writing the NIfTI files")
    args = ap.parse_args()
    make_subject(0, args.domain, 2)  # warm-up (imports, caches)
    walls, cpus, parts = [], [], []
    for i in range(args.subjects):
        w0, c0 = time.perf_counter(), time.process_time()
        pair = make_subject(1000 + i, args.domain, args.phases)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        parts.append(pair.timings)
        print(f"subject {i}: wall {walls[-1]:.2f} s, cpu {cpus[-1]:.2f} s "
              f"(lr {pair.timings['lr']:.2f}, hr {pair.timings['hr']:.2f}); "
              f"LR {pair.lr.image.shape}, HR {pair.hr.image.shape}")
    print(f"{args.domain}, {args.phases} phases: median wall {statistics.median(walls):.2f} s/subject, "
          f"median cpu {statistics.median(cpus):.2f} s/subject, min wall {min(walls):.2f} s")
    if args.write:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for name, st in (("lr", pair.lr), ("hr", pair.hr)):
                save_nifti(Path(tmp) / f"{name}_image.nii.gz", st.image, st.affine)
                save_nifti(Path(tmp) / f"{name}_labels.nii.gz", st.labels, st.affine)
            print(f"writing one subject's 4 NIfTI files: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
