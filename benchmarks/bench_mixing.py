"""The acquired-2d generator's eval-mode through-plane mixing (issue 11): shifted row blocks added in place
(`neighbour_blocks`, the product) against the earlier gather + index_add version (kept here as the
reference), on the bundled model and the demo study: the whole cine interleaved in one process (min of
--repeat each) and the largest output difference.

    .venv/bin/python benchmarks/bench_mixing.py [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.io.loader import load_study  # noqa: E402
from core.models.gemini import GeminiGenerator  # noqa: E402
from core.predict import Predictor  # noqa: E402
from core.resources import demo_study_path  # noqa: E402


def gather_mixing(mix, f: torch.Tensor, pos: torch.Tensor, length: int) -> torch.Tensor:
    """The session-5 eval mixing: neighbours gathered by index_select, added back with index_add."""
    norm, conv = mix.norm, mix.conv
    k = conv.kernel_size[0]
    r = k // 2
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    wt = conv.weight[:, :, :, 0, 0] * scale[:, None, None]
    y = torch.nn.functional.conv2d(f, wt[:, :, r, None, None], shift)
    n = f.shape[0]
    slot = torch.full((length,), -1, dtype=torch.long, device=f.device)
    slot[pos] = torch.arange(n, device=f.device)
    for j in range(k):
        o = j - r
        if o == 0:
            continue
        q = pos + o
        ok = (q >= 0) & (q < length)
        nb = torch.full_like(pos, -1)
        nb[ok] = slot[q[ok]]
        rows = torch.nonzero(nb >= 0).flatten()
        if rows.numel():
            z = torch.nn.functional.conv2d(f.index_select(0, nb[rows]), wt[:, :, j, None, None])
            y = y.index_add(0, rows, z)
    return f + torch.relu(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(demo_study_path())
    pred = Predictor.load(None, device="cpu")
    product = GeminiGenerator._mix_sequences

    def reference(self, mix, f, pos, length, blocks=None):
        if self.training:
            return product(self, mix, f, pos, length, blocks)
        return gather_mixing(mix, f, pos, length)

    def run(variant):
        GeminiGenerator._mix_sequences = reference if variant == "gather" else product
        try:
            t0 = time.perf_counter()
            out = pred.predict(study)
            return time.perf_counter() - t0, out
        finally:
            GeminiGenerator._mix_sequences = product

    run("blocks"), run("gather")  # warm-up
    times: dict[str, list[float]] = {"gather": [], "blocks": []}
    outs = {}
    for _ in range(args.repeat):
        for v in times:
            dt, outs[v] = run(v)
            times[v].append(dt)
    print(f"model {pred.model_id[:12]}, {pred.precision}, threads {torch.get_num_threads()}, "
          f"{study.n_phases} phases, min of {args.repeat} interleaved")
    for v, ts in times.items():
        print(f"{v:7s} {min(ts):.3f} s per cine (runs {', '.join(f'{t:.2f}' for t in ts)})")
    print(f"speed-up x{min(times['gather']) / min(times['blocks']):.3f}")
    a, b = outs["gather"], outs["blocks"]
    print(f"label agreement {100 * float(np.mean(a.sr_labels == b.sr_labels)):.4f}%, largest SR-image "
          f"difference {float(np.abs(a.sr_image - b.sr_image).max()):.3g}")


if __name__ == "__main__":
    main()
