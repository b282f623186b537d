"""SR labels of an acquired-2d model with through-plane score residuals (`seg_tp_knots`) on the CPU: the knots
path (`score_knots` + `acquired_to_sr_host`, what `_infer_acquired` runs) against the same host path of a
linear model (no residuals) and against dense scores of every SR slice (`interpolate_rows` + `class_argmax` in
blocks, the GPU path), in one process, interleaved, on one network batch of the real path (4 phases x 12
acquired slices in a 64-slice SR stack, 4 classes, 144 x 144 heart box), random scores.

    .venv/bin/python benchmarks/bench_score_knots.py [--repeat 5] [--knots 1] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from gemini_cmr.core.models.gemini import (
    DENSE_LABEL_ROWS,
    acquired_plan,
    acquired_to_sr_host,
    class_argmax,
    interpolate_rows,
    score_knots,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--knots", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    b, d, h, w, k = 4, 64, 144, 144, 4
    x = torch.zeros(b, d, h, w)
    for bi in range(b):
        for j in range(12):
            x[bi, 2 + 5 * j: 7 + 5 * j] = torch.rand(h, w, generator=g) + 0.5
    plan = acquired_plan(x)
    a_img = torch.randn(plan.n, h, w, generator=g)
    a_seg = torch.randn(plan.n, k, h, w, generator=g)
    s_res = 0.3 * torch.randn(plan.n, 2 * args.knots, k, h, w, generator=g)
    sr_img = torch.zeros(len(plan.out), h, w)

    def linear():
        return acquired_to_sr_host(a_img, a_seg, plan, b * d, sr_img)[1]

    def knots():
        kn, kp, _ = score_knots(a_seg, s_res, plan)
        return acquired_to_sr_host(a_img, kn, kp, b * d, sr_img)[1]

    def dense():
        lab = torch.zeros((b * d, h, w), dtype=torch.uint8)
        for m0 in range(0, len(plan.out), DENSE_LABEL_ROWS):
            sl = slice(m0, m0 + DENSE_LABEL_ROWS)
            lab.index_copy_(0, plan.out[sl], class_argmax(interpolate_rows(a_seg, plan.ia[sl], plan.ib[sl],
                                                                           plan.t[sl], s_res)))
        return lab

    assert torch.equal(knots(), dense()), "the knots path must equal the dense scores"
    times: dict[str, list[float]] = {"linear_host": [], "knots_host": [], "dense": []}
    for _ in range(args.repeat):
        for name, f in (("linear_host", linear), ("knots_host", knots), ("dense", dense)):
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in times.items()}
    for name, v in times.items():
        print(f"{name:12s} median {med[name]:.3f} s  min {min(v):.3f} s  ({len(v)} runs)")
    print(f"knots / linear host: x{med['knots_host'] / med['linear_host']:.2f}; "
          f"dense / knots: x{med['dense'] / med['knots_host']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "knots": args.knots, "batch": [b, d, h, w], "n_acquired": plan.n,
                       "seconds": times, "median_s": med}, f, indent=2)


if __name__ == "__main__":
    main()
