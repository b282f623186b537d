"""Network time of narrower variants of the real-study model, before training any: the shipped model
against the same architecture with other `widths` (random weights, the same config otherwise), each
running `Predictor.predict` on every phase of a real study inside the shipped model's heart and network
boxes (found once and reused, so every variant sees the same input), interleaved in one process.

    .venv/bin/python benchmarks/bench_widths.py [--study DIR] [--widths 16,16,32,64,64 8,16,32,64,64 ...]
        [--rounds 3] [--json FILE]

Prints the network seconds per cine (`Prediction.timings["model"]`, median of the rounds), the ratio to the
shipped model and the model FLOPs per cine. Only the time: a variant's accuracy needs its own training
(`recipes/gemini-acdc/ablations/narrow.json`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
from pathlib import Path

import numpy as np
from bench_motion import DEFAULT_STUDY, warm_predictor

DEFAULT_WIDTHS = ["12,24,48,96,96", "16,32,48,96,96", "16,16,32,64,64", "16,32,64,64,64", "8,16,32,64,64"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(DEFAULT_STUDY))
    ap.add_argument("--widths", nargs="+", default=DEFAULT_WIDTHS, help="comma-separated widths per variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch

    from gemini_cmr.core.models.gemini import GeminiConfig, GeminiGenerator
    from gemini_cmr.core.models.preprocess import pad_amounts
    from gemini_cmr.core.models.store import LoadedModel
    from gemini_cmr.core.perf import model_flops, network_input
    from gemini_cmr.core.predict import Predictor

    study, shipped = warm_predictor(args.study)
    first = shipped.predict(study, phases=[0, 1])  # finds the boxes every variant reuses
    roi, net = first.roi, first.net_roi
    variants = {"shipped " + ",".join(map(str, shipped.model.config.widths)): shipped}
    for spec in args.widths:
        cfg = copy.deepcopy(shipped.config)
        cfg["model"]["widths"] = [int(w) for w in spec.split(",")]
        torch.manual_seed(0)
        gen = GeminiGenerator(GeminiConfig.from_dict(cfg["model"])).eval()
        variants[spec] = Predictor(LoadedModel(generator=gen, config=cfg, model_id="0" * 64, weights_path=None),
                                   torch.device("cpu"))
    # one phase of the network's input in the box (as `core.perf` counts it) for the FLOPs of the acquired-2d
    # network, whose work depends on the acquired slices
    mult = shipped.model.config.multiple
    example = network_input(study, shipped.model.config.depth, mult)
    box = net or roi
    if box:
        h, w = first.sr_grid.shape[1:]
        full = example[:, :, pad_amounts(h, mult)[0]:, pad_amounts(w, mult)[0]:]
        crop = full[:, :, box[0]:box[1], box[2]:box[3]]
        (py0, py1), (px0, px1) = pad_amounts(crop.shape[2], mult), pad_amounts(crop.shape[3], mult)
        example = np.pad(crop, ((0, 0), (0, 0), (py0, py1), (px0, px1)))
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(max(1, args.rounds)):
        for name, p in variants.items():
            times[name].append(p.predict(study, roi=roi, net_roi=net).timings["model"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    base = statistics.median(next(iter(times.values())))
    rows = []
    for name, p in variants.items():
        cfg = p.model.config
        flop = model_flops(p.model, example.shape, example) * study.n_phases
        med = statistics.median(times[name])
        rows.append({"widths": list(cfg.widths), "seconds_per_cine": times[name], "median_s": med,
                     "ratio_to_shipped": med / base, "gflop_per_cine": flop / 1e9})
        print(f"{name:28s} {med:.2f} s per cine  x{med / base:.2f}  {flop / 1e9:.0f} GFLOP")
    if args.json:
        out = {"study": args.study, "phases": study.n_phases, "roi_sr_yx": list(roi or ()),
               "network_roi_sr_yx": list(net or ()), "precision": shipped.precision,
               "batch_size": shipped.batch_size, "torch_threads": torch.get_num_threads(),
               "cpu_count": os.cpu_count(), "load_1min": os.getloadavg()[0], "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
