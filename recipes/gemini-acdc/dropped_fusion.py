"""Dropped slices: does fusing the SR labels with shape-based interpolation of the kept neighbours help?

At each removed slice (every other short-axis slice removed, as `gemini-cmr evaluate dropped-slices`; the
first 10 patients of each fold, each scored by its own fold model `RUN/fold<k>/model`, motion correction on),
per structure the weighted mean of the signed distance maps of the kept slice above, the kept slice below and
the SR labels (`ens50`: 1/4, 1/4, 1/2; `ens33`: thirds; `ens67`: 1/6, 1/6, 2/3), against the SR labels and
shape-based interpolation alone. Prints the pooled Dice after each fold (cumulative) and per structure at
the end.

    .venv/bin/python recipes/gemini-acdc/dropped_fusion.py [RUN] [--data acdc:DIR] [--folds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse

import numpy as np

from gemini_cmr.core.engine import SuperResolver
from gemini_cmr.core.evaluation.motion import (
    DiceAccumulator,
    _signed_distance,
    keep_every_other,
    shape_interpolate,
)
from gemini_cmr.core.geometry import resample_nearest_stack
from gemini_cmr.core.study import STRUCTURES, Grid
from gemini_cmr.core.train.cv import fold_studies

FUSIONS = {"ens50": (0.25, 0.25, 0.5), "ens33": (1 / 3, 1 / 3, 1 / 3), "ens67": (1 / 6, 1 / 6, 2 / 3)}


def fuse(maps: list[np.ndarray], weights: tuple[float, ...]) -> np.ndarray:
    """Per structure the weighted mean of the label maps' signed distances; the most negative structure
    where any is negative (as `shape_interpolate`, which is this with two maps and equal weights)."""
    best = np.full(maps[0].shape, 1e-9)
    out = np.zeros(maps[0].shape, np.uint8)
    for v in STRUCTURES:
        sd = sum(w * _signed_distance(m == v) for m, w in zip(maps, weights, strict=True))
        take = sd < best
        out[take] = v
        best = np.minimum(best, sd)
    return out


def score_study(resolver, study, acc: dict[str, DiceAccumulator]) -> None:
    phases = sorted({int(study.meta.ed_phase), int(study.meta.es_phase)})
    kept_study, kept, removed = keep_every_other(study)
    res = resolver.run(kept_study, phases=phases, meshes="none", motion_correction=True)
    sr_on_full = resample_nearest_stack(res.sr_labels, res.sr_grid, Grid(study.grid.shape, study.affine))
    pos = {int(k): i for i, k in enumerate(kept)}
    for t in phases:
        row = res.phase_row(t)
        lr = res.lr_labels[row]
        for k in removed:
            truth = study.labels[t, k]
            above, below, sr = lr[pos[int(k) - 1]], lr[pos[int(k) + 1]], sr_on_full[row, k]
            acc["sr"].add(sr, truth)
            acc["shape"].add(shape_interpolate(above, below), truth)
            for name, weights in FUSIONS.items():
                acc[name].add(fuse([above, below, sr], weights), truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", default="runs/abl-continue600-dropped")
    ap.add_argument("--data", default="acdc:../shared/data/acdc/training")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--limit", type=int, default=10)
    args = ap.parse_args()
    acc = {k: DiceAccumulator() for k in ("sr", "shape", *FUSIONS)}
    for k in args.folds:
        resolver = SuperResolver(model=f"{args.run}/fold{k}/model", device="cpu")
        for _sid, load in fold_studies(args.data, k, 5)[: args.limit]:
            score_study(resolver, load(), acc)
        print(
            f"after fold {k}: " + ", ".join(f"{n} {a.dice()['mean']:.4f}" for n, a in acc.items()), flush=True
        )
    for name, a in acc.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in a.dice().items()))


if __name__ == "__main__":
    main()
