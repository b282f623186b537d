"""The decoders' "bilinear 2x upsampling, then 3x3 convolution" against an exact polyphase rewrite
(one 3x3 convolution at the low resolution with 4x the output channels, `pixel_shuffle`, and the two
outer rows and columns recomputed from thin strips, where the upsampling clamps and the convolution pads),
on the bundled model's layer sizes (48 slices = 4 phases x 12 acquired slices, bf16, channels_last, CPU).
Prints the largest float32 difference (exactness) and the milliseconds of each variant. Issue 11, session 6
(five runs on a busy host): 72 -> 144 px x1.07-1.57 (1-6 ms saved per call, 10 calls per cine: about 3% of
the network time), 36 -> 72 px x0.90-1.25, 18 -> 36 px x0.65 (`pixel_shuffle` in channels_last and the border
strips cost about what the smaller convolution saves). Not integrated into the model.

    .venv/bin/python benchmarks/bench_upconv.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# u[2i + a] = sum_m C_a[m] x[i + m]; y = conv3x3(u)  =>  y[2i + a] = sum_m (sum_d P_a[m, d] W[d]) x[i + m]
P = torch.tensor([[[0.75, 0.25, 0.0], [0.25, 0.75, 0.75], [0.0, 0.0, 0.25]],
                  [[0.25, 0.0, 0.0], [0.75, 0.75, 0.25], [0.0, 0.25, 0.75]]])


def poly_kernel(w: torch.Tensor) -> torch.Tensor:
    co, ci = w.shape[:2]
    k = torch.einsum("ymd,xne,oide->oyximn", P, P, w)  # (co, ay, ax, ci, 3, 3)
    return k.reshape(co * 4, ci, 3, 3)


def plain(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), w, padding=1)


def polyphase(x: torch.Tensor, w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    y = F.pixel_shuffle(F.conv2d(x, k, padding=1), 2)
    y[..., :2, :] = plain(x[..., :3, :], w)[..., :2, :]
    y[..., -2:, :] = plain(x[..., -3:, :], w)[..., -2:, :]
    y[..., :, :2] = plain(x[..., :, :3], w)[..., :, :2]
    y[..., :, -2:] = plain(x[..., :, -3:], w)[..., :, -2:]
    return y


def bench(f, *args, n: int = 10) -> float:
    f(*args)
    t0 = time.perf_counter()
    for _ in range(n):
        f(*args)
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for ci, co, n in ((16, 8, 72), (32, 16, 36), (64, 32, 18)):
            x = torch.randn(48, ci, n, n, generator=g)
            w = torch.randn(co, ci, 3, 3, generator=g)
            k = poly_kernel(w)
            err = float((plain(x, w) - polyphase(x, w, k)).abs().max())
            xb, wb, kb = (t.to(memory_format=torch.channels_last).bfloat16() for t in (x, w, k))
            a = bench(plain, xb, wb)
            b = bench(polyphase, xb, wb, kb)
            print(f"{ci} -> {co} channels, {n} -> {2 * n} px: upsample + conv {a:.2f} ms, polyphase {b:.2f} ms "
                  f"(x{a / b:.2f}); largest float32 difference {err:.2g}")


if __name__ == "__main__":
    main()
