"""How much PSNR there is to gain on the phantoms: for a few subjects (ukdhp-like domain, seeds given),
PSNR against the noisy HR truth of
- NN / linear / cubic B-spline interpolation of the LR stack (what the PSNR target is measured against),
- the same interpolations of an LR stack simulated *without* the per-slice breath-hold shifts,
- the noise-free HR blurred through-plane by the 8 mm slice profile (what a perfect aligner and denoiser
  that cannot recover through-plane detail would give),
- the noise-free HR itself (the noise floor);
- where B-spline's squared error lies (`--regions`): within 10 mm of the heart (HR labels), elsewhere in
  the body (HR above 5% of its range), background; and the PSNR B-spline would have with no error at all
  within 10 mm of the heart (what a perfect cardiac model alone could reach).

usage: .venv/bin/python scripts/psnr_ceilings.py [--seeds 11 12] [--regions]
"""

from __future__ import annotations

import argparse

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from gemini_cmr.core.baselines.interpolation import interpolate_image  # noqa: E402
from gemini_cmr.core.evaluation.metrics import psnr  # noqa: E402
from gemini_cmr.core.synth.dataset import make_subject  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    ap.add_argument("--regions", action="store_true", help="also where B-spline's error lies")
    args = ap.parse_args()
    for seed in args.seeds:
        pair = make_subject(seed, n_phases=2)
        hr = pair.hr.image[0].astype(np.float64)
        rng = float(hr.max() - hr.min())
        row = {}
        for tag, p in (("shifted", pair), ("no shifts", make_subject(seed, n_phases=2, misalign=False))):
            for name, order in (("NN", 0), ("linear", 1), ("B-spline", 3)):
                est = interpolate_image(p.lr.image[0].astype(np.float32), p.lr_grid, p.hr_grid, order)
                row[f"{name} ({tag})"] = psnr(est, hr, rng)
        clean = make_subject(seed, n_phases=2, noise=False, misalign=False).hr.image[0].astype(np.float64)
        slab = max(1, round(8.0 / float(pair.hr_grid.spacing[2])))
        row["clean HR, through-plane slab blur"] = psnr(ndimage.uniform_filter1d(clean, slab, axis=0), hr, rng)
        row["clean HR (noise floor)"] = psnr(clean, hr, rng)
        print(f"seed {seed}: " + "; ".join(f"{k} {v:.2f}" for k, v in row.items()))
        if args.regions:
            regions(pair, hr, rng)


def regions(pair, hr: np.ndarray, rng: float) -> None:
    from gemini_cmr.core.evaluation.metrics import heart_region

    est = interpolate_image(pair.lr.image[0].astype(np.float32), pair.lr_grid, pair.hr_grid, 3)
    err = (est.astype(np.float64) - hr) ** 2
    near = heart_region(pair.hr.labels[0], pair.hr_grid.spacing[::-1], 10.0)
    body = (hr > 0.05 * rng) & ~near
    rest = ~near & ~body
    tot = err.sum()
    shares = {"within 10 mm of the heart": near, "body elsewhere": body, "background": rest}
    print("  B-spline squared error: " + "; ".join(
        f"{k} {err[m].sum() / tot:.2f} of it ({m.mean():.2f} of the voxels)" for k, m in shares.items()))
    print(f"  B-spline PSNR {psnr(est, hr, rng):.2f} dB; with no error within 10 mm of the heart "
          f"{10 * np.log10(rng ** 2 / np.where(near, 0.0, err).mean()):.2f} dB")


if __name__ == "__main__":
    main()
