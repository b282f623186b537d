"""Where a Gemini-GAN model's 3D Dice is lost: per subject and phase, predicted / true volume of each structure
and the share of its false-positive voxels that lie in SR slices where the truth has none of it (i.e. beyond
the base or the apex, the through-plane extent error) rather than in-plane at the boundary.

usage: .venv/bin/python scripts/diagnose_volumes.py [--model DIR] --data DIR [--split test]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gemini_cmr.core.evaluation.paired import labels_on_sr  # noqa: E402
from gemini_cmr.core.geometry import sr_grid  # noqa: E402
from gemini_cmr.core.io.manifest import read_manifest  # noqa: E402
from gemini_cmr.core.io.nifti import read_nifti_array  # noqa: E402
from gemini_cmr.core.predict import Predictor  # noqa: E402
from gemini_cmr.core.study import Grid, Study  # noqa: E402

NAMES = {1: "LV", 2: "myo", 3: "RV"}


def diagnose(pred: np.ndarray, truth: np.ndarray) -> dict[str, tuple[float, float]]:
    """{structure: (predicted / true volume, share of false positives in slices without that structure)}."""
    out = {}
    for k, name in NAMES.items():
        p, t = pred == k, truth == k
        fp = p & ~t
        empty = ~t.any(axis=(1, 2))  # SR slices where the truth has none of k
        n_fp = int(fp.sum())
        out[name] = (float(p.sum() / max(int(t.sum()), 1)),
                     float(fp[empty].sum() / n_fp) if n_fp else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.data)
    predictor = Predictor.load(args.model, device="cpu")
    print(f"model {predictor.model_id[:12]}: volume ratio pred/true (share of false positives beyond the "
          "true extent)")
    for e in [e for e in read_manifest(root)["subjects"] if e["split"] == args.split]:
        lr_img, lr_aff, _ = read_nifti_array(root / e["lr_image"])
        hr_lab, hr_aff, _ = read_nifti_array(root / e["hr_labels"])
        lr = Grid(lr_img.shape[1:], lr_aff)
        sr, hr = sr_grid(lr), Grid(hr_lab.shape[1:], hr_aff)
        phases = {"ED": int(e["ed_phase"]), "ES": int(e["es_phase"])}
        pred = predictor.predict(Study(lr_img, lr_aff), phases=list(phases.values()))
        for i, (ph, t) in enumerate(phases.items()):
            d = diagnose(pred.sr_labels[i], labels_on_sr(hr_lab[t], hr, sr))
            print(e["id"], ph, "  ".join(f"{n} {r:.2f} ({s:.0%})" for n, (r, s) in d.items()))


if __name__ == "__main__":
    main()
