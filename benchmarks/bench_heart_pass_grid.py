"""The heart-finding pass on a coarse grid (`inference.heart_pass_mm`: the whole field of view through the
network at that in-plane spacing to place a first heart box, then the SR-grid pass within that box alone)
against the whole field on the SR grid (heart_pass_mm = 0), for each spacing asked for.

On a real study (default: the Sunnybrook GE cine), in one process with the variants alternating: the heart
pass alone (`Predictor._heart_roi`, the first phase) and `predict` of all phases, their times and ratios
against the whole field, the pixels the heart pass puts through the network, the boxes, and the share of SR
label voxels equal to the whole field's. With `--runs RUN` also accuracy on ACDC cross-validation folds (each
fold's model on its own held-out patients, `benchmarks/bench_roi_margin.accuracy`).

    .venv/bin/python benchmarks/bench_heart_pass_grid.py [--study DIR] [--spacings 3.0] [--rounds 5]
        [--runs runs/abl-steps2400-dropped --folds 0 2 --data acdc:../shared/data/acdc/training] [--json FILE]
"""

from __future__ import annotations

import statistics
import time

from bench_motion import warm_predictor
from bench_roi_margin import accuracy, finish_result, parse_args, speed, start_result


def set_heart_pass(predictor, mm: float) -> None:
    """The predictor's model config with `inference.heart_pass_mm` = mm (0: the whole field on the SR grid)."""
    inf = dict(predictor.config.get("inference") or {})
    inf["heart_pass_mm"] = float(mm)
    predictor.config["inference"] = inf


def network_pixels(study, predictor, mm: float) -> int:
    """In-plane pixels per slice the heart pass puts through the network (each pass padded to the model's
    multiple): the whole SR field, or the coarse field plus the SR-grid box (the box the pass finds here)."""
    from gemini_cmr.core.geometry import sr_grid

    mult = predictor.model.config.multiple

    def padded(h: int, w: int) -> int:
        return -(-h // mult) * mult * (-(-w // mult) * mult)

    sr = sr_grid(study.grid)
    if mm <= float(sr.spacing[0]):
        return padded(*sr.shape[1:])
    coarse = sr_grid(study.grid, inplane_mm=mm)
    roi_mm = float(predictor.config["inference"]["roi_mm"])
    box = min(sr.shape[1], round(roi_mm / float(sr.spacing[1]))), min(sr.shape[2], round(roi_mm / float(sr.spacing[0])))
    return padded(*coarse.shape[1:]) + padded(*box)


def heart_pass_times(study_path: str, spacings: list[float], rounds: int) -> dict:
    """The heart pass alone, alternating: seconds per variant, the boxes, pixels through the network."""
    from gemini_cmr.core.geometry import sr_grid
    from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, intensity_scale

    study, predictor = warm_predictor(study_path)
    norm = predictor.config.get("normalisation", {})
    scale = intensity_scale(study.image, float(norm.get("percentile", DEFAULT_PERCENTILE)))
    roi_mm = float(predictor.config["inference"]["roi_mm"])
    sr = sr_grid(study.grid)
    variants = [0.0] + spacings
    times: dict[float, list[float]] = {m: [] for m in variants}
    boxes: dict[float, tuple] = {}
    for r in range(max(1, rounds)):
        for m in variants:
            set_heart_pass(predictor, m)
            t = time.perf_counter()
            boxes[m] = predictor._heart_roi(study, sr, 0, scale, roi_mm, norm)
            times[m].append(time.perf_counter() - t)
        print(f"heart pass, round {r + 1}: " + ", ".join(f"{m:g} mm: {times[m][-1]:.3f} s" for m in variants),
              flush=True)
    base = statistics.median(times[0.0])
    out = {}
    for m in variants:
        med = statistics.median(times[m])
        px = network_pixels(study, predictor, m)
        out[f"{m:g}"] = {"heart_pass_mm": m, "seconds": times[m], "seconds_median": med,
                         "speedup_vs_whole_field": base / med, "network_pixels_per_slice": px,
                         "roi_sr_yx": list(boxes[m][0] or ()), "network_roi_sr_yx": list(boxes[m][1] or ())}
        print(f"{m:g} mm: heart pass median {med:.3f} s (x{base / med:.2f}), {px} pixels per slice through the "
              f"network, box {boxes[m][0]}, network box {boxes[m][1]}", flush=True)
    return out


def main() -> None:
    args = parse_args(__doc__, "spacings", 3.0, 5)
    result = start_result()
    if not args.no_speed:
        result["heart_pass"] = heart_pass_times(args.study, args.values, args.rounds)
        result["speed"] = speed(args.study, args.values, args.rounds, set_heart_pass, "whole_field", "heart_pass_mm",
                                "heart_pass_mm")
    if args.runs:
        result["accuracy"] = accuracy(args.data, args.runs, args.folds, args.values, args.limit, set_heart_pass,
                                      "whole_field", "heart_pass_mm")
    finish_result(result, args.json)


if __name__ == "__main__":
    main()
