"""The heart-finding pass of the real path (`Predictor._heart_roi`: one phase through the network on the
whole field of view, labels post-processed, the heart box around them) with the labels alone (the image
decoder skipped, `GeminiGenerator.infer(labels_only=True)`, the default) against the full inference
(image and labels), alternating in one process; the heart boxes and the whole-field labels of the two are
compared.

    .venv/bin/python benchmarks/bench_heart_pass.py [--study DIR] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from bench_motion import heart_pass_setup, study_args


def main() -> None:
    args = study_args(__doc__)
    env = heart_pass_setup(args.study)
    study, predictor, sr, phase = env["study"], env["predictor"], env["sr"], env["phase"]
    scale, roi_mm, norm = env["scale"], env["roi_mm"], env["norm"]
    real_run = predictor._run_safe
    labels: dict[str, np.ndarray] = {}

    def run(labels_only: bool, name: str):
        def spy(placed, scale=1.0, out=None, flips=(), **kw):
            img, lab = real_run(placed, scale, out, flips, labels_only=labels_only)
            labels.setdefault(name, lab.copy())
            return img, lab
        predictor._run_safe = spy
        try:
            return predictor._heart_roi(study, sr, phase, scale, roi_mm, norm)[0]
        finally:
            predictor._run_safe = real_run

    variants = {"image and labels": False, "labels only": True}
    times: dict[str, list[float]] = {k: [] for k in variants}
    boxes: dict[str, tuple] = {}
    for r in range(max(1, args.rounds)):
        for name, only in variants.items():
            t = time.perf_counter()
            boxes[name] = run(only, name)
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{times[k][-1]:.3f} s {k}" for k in variants), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["image and labels"] / med["labels only"]
    same_box = boxes["image and labels"] == boxes["labels only"]
    same_labels = bool(np.array_equal(labels["image and labels"], labels["labels only"]))
    print(f"heart-finding pass, medians over {args.rounds} rounds ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}): image and labels {med['image and labels']:.3f} s, labels only "
          f"{med['labels only']:.3f} s: x{ratio:.2f}; same heart box: {same_box} {boxes['labels only']}; "
          f"same whole-field labels: {same_labels}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "study": args.study, "model_id": predictor.model_id, "rounds": args.rounds, "phase": phase,
            "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "median_s": {k: round(v, 4) for k, v in med.items()}, "speedup": round(ratio, 3),
            "heart_box": list(boxes["labels only"]), "same_heart_box": same_box, "same_labels": same_labels,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
