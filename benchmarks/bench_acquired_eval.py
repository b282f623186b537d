"""The acquired-2d generator's eval path on the CPU against a gather-based reference implementation, on the
bundled model and the demo study, whole cines interleaved in one process (min of --repeat each), with the
largest output differences against the reference:
- "reference": through-plane mixing by index_select + index_add (copies), SR slices by (M, h, w) gathers;
- "mixing": the mixing as shifted row blocks added in place (`neighbour_blocks`), SR slices as before;
- "groups": that, and the SR image and labels computed on the host as the CPU path does
  (`acquired_to_sr_host`: NumPy, one thread);
- "product": that, and the 2x2 max pools as the maximum of the four phases (`MaxPool2x2`), as the product
  runs it.

    .venv/bin/python benchmarks/bench_acquired_eval.py [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gemini_cmr.core.io.loader import load_study  # noqa: E402
from gemini_cmr.core.models.blocks import MaxPool2x2  # noqa: E402
from gemini_cmr.core.models.gemini import GeminiGenerator  # noqa: E402
from gemini_cmr.core.predict import Predictor  # noqa: E402
from gemini_cmr.core.resources import demo_study_path  # noqa: E402


def gather_mixing(mix, f: torch.Tensor, pos: torch.Tensor, length: int) -> torch.Tensor:
    """The reference eval mixing: neighbours gathered by index_select, added back with index_add."""
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


def gather_infer(self, x: torch.Tensor, grouped: bool | None = None,
                 flips=()) -> tuple[torch.Tensor, torch.Tensor]:
    """`_infer_acquired`'s dense path (the GPU's): (M, h, w) gathers of both neighbours."""
    return infer(self, x, grouped=False, flips=flips)


infer = GeminiGenerator._infer_acquired


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(demo_study_path())
    pred = Predictor.load(None, device="cpu")
    mixing, pool = GeminiGenerator._mix_sequences, MaxPool2x2.forward

    def old_mixing(self, mix, f, pos, length, blocks=None):
        if self.training:
            return mixing(self, mix, f, pos, length, blocks)
        return gather_mixing(mix, f, pos, length)

    def old_pool(self, x):
        return torch.nn.functional.max_pool2d(x, 2)

    variants = {"reference": (old_mixing, gather_infer, old_pool), "mixing": (mixing, gather_infer, old_pool),
                "groups": (mixing, infer, old_pool), "product": (mixing, infer, pool)}

    def run(name):
        GeminiGenerator._mix_sequences, GeminiGenerator._infer_acquired, MaxPool2x2.forward = variants[name]
        try:
            t0 = time.perf_counter()
            out = pred.predict(study)
            return time.perf_counter() - t0, out
        finally:
            GeminiGenerator._mix_sequences, GeminiGenerator._infer_acquired, MaxPool2x2.forward = mixing, infer, pool

    for name in variants:  # warm-up
        run(name)
    times: dict[str, list[float]] = {name: [] for name in variants}
    outs = {}
    for _ in range(args.repeat):
        for name in variants:
            dt, outs[name] = run(name)
            times[name].append(dt)
    print(f"model {pred.model_id[:12]}, {pred.precision}, threads {torch.get_num_threads()}, "
          f"{study.n_phases} phases, min of {args.repeat} interleaved")
    base = min(times["reference"])
    ref = outs["reference"]
    for name, ts in times.items():
        o = outs[name]
        print(f"{name:10s} {min(ts):.3f} s per cine, median {float(np.median(ts)):.3f} (runs "
              f"{', '.join(f'{t:.2f}' for t in ts)}), x{base / min(ts):.3f} by min, "
              f"x{np.median(times['reference']) / np.median(ts):.3f} by median; labels equal to the reference: "
              f"{100 * float(np.mean(o.sr_labels == ref.sr_labels)):.4f}%, largest SR-image difference "
              f"{float(np.abs(o.sr_image - ref.sr_image).max()):.3g}")


if __name__ == "__main__":
    main()
