"""Surface extraction of every phase of the demo cine: the current `core.mesh.phase_surfaces` against
the same function of an earlier commit (default: aeeca5b, per-structure export, `np.unique` and
whole-grid component labelling), interleaved in one process; the earlier `core/mesh.py` is read with `git show REV:core/mesh.py` (run inside the repository).

    .venv/bin/python benchmarks/bench_meshes.py [--repeat 5] [--baseline REV]

Prints the median seconds for all 20 phases with each, the ratio, and whether the meshes are identical
(points and faces of every structure of every phase); exit status 1 when they differ.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from gemini_cmr.core import mesh as current  # noqa: E402
from gemini_cmr.core.io import load_study  # noqa: E402
from gemini_cmr.core.perf import DEMO_STUDY  # noqa: E402
from gemini_cmr.core.predict import Predictor  # noqa: E402


def load_baseline(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{rev}:core/mesh.py"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    # revisions before the gemini_cmr namespace imported the engine as `core`
    src = re.sub(r"(?m)^(\s*)from core([.\s])", r"\1from gemini_cmr.core\2", src)
    mod = types.ModuleType(f"mesh_{rev}")
    mod.__file__ = f"{rev}:core/mesh.py"
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - this repository's own history
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", default="aeeca5b", help="git revision of the baseline core/mesh.py")
    args = ap.parse_args()
    base = load_baseline(args.baseline)
    study = load_study(DEMO_STUDY)
    pred = Predictor.load(None, device="cpu").predict(study)
    variants = {args.baseline: base, "current": current}
    times: dict[str, list[float]] = {k: [] for k in variants}
    out = {}
    for _ in range(max(1, args.repeat)):
        for name, mod in variants.items():
            t = time.perf_counter()
            out[name] = mod.phase_surfaces(pred.sr_labels, pred.sr_grid, pred.phases)
            times[name].append(time.perf_counter() - t)
    a, b = out[args.baseline], out["current"]
    same = a.keys() == b.keys() and all(
        a[p].keys() == b[p].keys()
        and all(np.array_equal(a[p][s].points, b[p][s].points) and np.array_equal(a[p][s].faces, b[p][s].faces)
                for s in a[p])
        for p in a
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:10} median {med[k]:.3f} s for {len(pred.phases)} phases (runs {', '.join(f'{x:.3f}' for x in v)})")
    print(f"ratio {args.baseline} / current: x{med[args.baseline] / med['current']:.2f}; meshes identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
