"""The heart-finding pass's check against where the cine beats (`Predictor._where_it_beats`,
`core.postprocess.cine_motion_map`) on a real study: `Predictor._heart_roi` with the check against the same
pass without it (the map reported as absent), alternating in one process; the boxes of the two are compared
(on a clean study the check does not fire, so they must be the same). The map alone is timed too.

    .venv/bin/python benchmarks/bench_motion_check.py [--study DIR] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import json
import os
import statistics
import time

from bench_motion import heart_pass_setup, study_args


def main() -> None:
    args = study_args(__doc__)

    from gemini_cmr.core import postprocess

    env = heart_pass_setup(args.study)
    study, predictor, sr, phase = env["study"], env["predictor"], env["sr"], env["phase"]
    scale, roi_mm, norm = env["scale"], env["roi_mm"], env["norm"]
    real_map = postprocess.cine_motion_map
    times: dict[str, list[float]] = {"with the check": [], "without": [], "motion map alone": []}
    boxes: dict[str, tuple] = {}
    for _ in range(args.rounds):
        for name, motion_map in (("with the check", real_map), ("without", lambda image, grid: None)):
            postprocess.cine_motion_map = motion_map
            try:
                t = time.perf_counter()
                roi, net, _ = predictor._heart_roi(study, sr, phase, scale, roi_mm, norm)
                times[name].append(time.perf_counter() - t)
            finally:
                postprocess.cine_motion_map = real_map
            boxes[name] = (roi, net)
        t = time.perf_counter()
        real_map(study.image, study.grid)
        times["motion map alone"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"study": args.study, "phase": phase, "rounds": args.rounds, "cpu_count": os.cpu_count(),
           "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
           "median_s": {k: round(v, 4) for k, v in med.items()},
           "ratio_with_over_without": round(med["with the check"] / med["without"], 3),
           "same_boxes": boxes["with the check"] == boxes["without"], "boxes": boxes["with the check"]}
    for k, v in med.items():
        print(f"{k:18s} median {v:.4f} s  ({', '.join(f'{x:.4f}' for x in times[k])})")
    print(f"with / without: x{res['ratio_with_over_without']:.3f}; same boxes: {res['same_boxes']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
