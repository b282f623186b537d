"""Appearance check of a V-AMA adapter: does it make source-domain studies look like the target domain?

`python -m gemini_cmr.core.vama.appearance --adapter RUN --source DIR --target DIR [--split test] [--json]`

For the LR studies of both folders (paired dataset or NIfTI folders, as `gemini-cmr train vama` reads
them) every image is seen the way Gemini-GAN sees it: divided by its own 99.5th percentile. Reported per
domain row (target; source without adaptation; source after V-AMA): the mean normalised intensity of the
LV cavity, LV myocardium, RV cavity and background (labelled phases), the blood/myocardium ratio, and the
1-D Wasserstein distance between the study's intensity histogram and the pooled target histogram
(mean over studies). This is an intensity-level check; segmentation accuracy needs `gemini-cmr evaluate
--adapter` with a trained Gemini-GAN model.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from scipy.stats import wasserstein_distance

from gemini_cmr.core.models.preprocess import intensity_scale
from gemini_cmr.core.models.vama import PERCENTILE, Adapter
from gemini_cmr.core.vama.domains import DomainStudy, read_domain

TISSUES = {"lv_cavity": 1, "lv_myocardium": 2, "rv_cavity": 3, "background": 0}
_SAMPLES = 20000


def _norm(image: np.ndarray) -> np.ndarray:
    return image / intensity_scale(image, PERCENTILE)


def _stats(images: list[np.ndarray], studies: list[DomainStudy], reference: np.ndarray) -> dict:
    means = {k: [] for k in TISSUES}
    w1 = []
    for img, ds in zip(images, studies):
        n = _norm(img)
        for phase, lab in ds.phase_labels.items():
            for name, value in TISSUES.items():
                if (lab == value).any():
                    means[name].append(float(n[phase][lab == value].mean()))
        w1.append(wasserstein_distance(n.ravel(), reference))
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in means.items()}
    out["blood_myo_ratio"] = out["lv_cavity"] / out["lv_myocardium"]
    out["w1_to_target"] = float(np.mean(w1))
    return out


def compare(adapter: Adapter, source: list[DomainStudy], target: list[DomainStudy], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([_norm(t.image).ravel() for t in target])
    reference = rng.choice(pooled, size=min(_SAMPLES * len(target), pooled.size), replace=False)
    adapted = [adapter.adapt_array(s.image) for s in source]
    return {
        "target": _stats([t.image for t in target], target, reference),
        "source, no adaptation": _stats([s.image for s in source], source, reference),
        "source, V-AMA": _stats(adapted, source, reference),
        "n_source": len(source), "n_target": len(target), "adapter_id": adapter.adapter_id,
    }


def table(result: dict) -> str:
    cols = ["lv_cavity", "lv_myocardium", "rv_cavity", "background", "blood_myo_ratio", "w1_to_target"]
    head = "| domain | LV cavity | myocardium | RV cavity | background | blood/myo | W1 to target |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for row in ("target", "source, no adaptation", "source, V-AMA"):
        lines.append(f"| {row} | " + " | ".join(f"{result[row][c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gemini_cmr.core.vama.appearance", description=__doc__.splitlines()[0])
    p.add_argument("--adapter", required=True, help="V-AMA run folder or adapter")
    p.add_argument("--source", required=True, help="source-domain studies (with labels)")
    p.add_argument("--target", required=True, help="target-domain studies (with labels)")
    p.add_argument("--split", default="test", help="manifest split (default test; 'all' for every one)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from gemini_cmr.core.errors import GeminiError

    try:
        result = compare(Adapter.load(args.adapter), read_domain(args.source, "source", args.split),
                         read_domain(args.target, "target", args.split))
    except GeminiError as exc:
        print(f"appearance: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
