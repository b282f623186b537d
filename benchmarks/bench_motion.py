"""The motion-correction stage of the real path, split and measured: the network prediction of the
estimation phases (with the whole-field pass that finds the heart box), the estimation
(`core.motion.estimate_from_prediction`) and the correction of the whole cine (`core.motion.apply_shifts`,
what `corrected_study` does; the engine's `motion` timing includes it). The correction is timed against its
former form (one 3D cubic resampling of each moved slice's (T, Y, X) cine, `former_apply_shifts` below) and
against itself on one thread (`core.parallel.thread_workers` set to 1), alternating in one process, and the
corrected images are compared voxel by voxel.

    .venv/bin/python benchmarks/bench_motion.py [--study DIR] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = ROOT.parent / "shared" / "data" / "sunnybrook" / "SCD0000101"


def former_apply_shifts(image: np.ndarray, grid, shifts_mm: np.ndarray, order: int = 3) -> np.ndarray:
    """`core.motion.apply_shifts` as it was: each moved slice's (T, Y, X) cine resampled in 3D, no shift
    along T."""
    from gemini_cmr.core.geometry import shifts_in_pixels

    out = np.array(image, dtype=np.float32, copy=True)
    for k, (di, dj) in enumerate(shifts_in_pixels(shifts_mm, grid)):
        if abs(di) < 1e-6 and abs(dj) < 1e-6:
            continue
        out[:, k] = ndimage.shift(out[:, k], (0.0, -dj, -di), order=order, mode="nearest")
    return out


def study_args(doc: str) -> argparse.Namespace:
    """--study, --rounds, --json (shared with `bench_heart_pass.py`)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(DEFAULT_STUDY))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    return ap.parse_args()


def warm_predictor(study_path: str):
    """(study, CPU predictor of the model `super-resolve` chooses for it), after one warm-up prediction
    (first-call allocations and kernel selection)."""
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.resources import default_model_for

    study = load_study(study_path)
    model, _ = default_model_for(study)
    predictor = Predictor.load(model, device="cpu")
    predictor.predict(study, phases=[0])
    return study, predictor


def heart_pass_setup(study_path: str) -> dict:
    """What `Predictor._heart_roi` takes for a real study, after `warm_predictor`: study, predictor, sr (the SR
    grid), phase (ED, else 0), scale (the whole cine's intensity scale), roi_mm, norm (shared by the heart-pass
    benchmarks)."""
    from gemini_cmr.core.geometry import sr_grid
    from gemini_cmr.core.models.preprocess import DEFAULT_PERCENTILE, intensity_scale

    study, predictor = warm_predictor(study_path)
    norm = predictor.config.get("normalisation", {})
    return {"study": study, "predictor": predictor, "sr": sr_grid(study.grid), "phase": study.meta.ed_phase or 0,
            "scale": intensity_scale(study.image, float(norm.get("percentile", DEFAULT_PERCENTILE))),
            "roi_mm": float((predictor.config.get("inference") or {})["roi_mm"]), "norm": norm}


def main() -> None:
    args = study_args(__doc__)

    from gemini_cmr.core import motion

    study, predictor = warm_predictor(args.study)
    t = time.perf_counter()
    est = motion.estimate_motion(predictor, study)
    t_motion = time.perf_counter() - t
    grid = study.grid
    moved = int((np.abs(est.shifts_mm).sum(axis=1) > 0).sum())
    print(f"estimate_motion: {t_motion:.2f} s: network prediction of phases {motion.estimation_phases(study)} "
          f"{est.timings['predict']:.2f} s (heart box included), estimation {est.timings['estimate']:.3f} s; "
          f"{moved} of {grid.shape[0]} slices moved", flush=True)

    def one_thread(image, grid, shifts_mm):
        workers = motion.thread_workers
        motion.thread_workers = lambda: 1
        try:
            return motion.apply_shifts(image, grid, shifts_mm)
        finally:
            motion.thread_workers = workers

    variants = {"former": former_apply_shifts, "one thread": one_thread, "current": motion.apply_shifts}
    times: dict[str, list[float]] = {k: [] for k in variants}
    images: dict[str, np.ndarray] = {}
    for r in range(max(1, args.rounds)):
        for name, fn in variants.items():
            t = time.perf_counter()
            img = fn(study.image, grid, est.shifts_mm)
            times[name].append(time.perf_counter() - t)
            images.setdefault(name, img)
        print(f"round {r + 1}: correction " + ", ".join(f"{times[k][-1]:.2f} s {k}" for k in variants), flush=True)
    threads_differ = int((images["one thread"] != images["current"]).sum())
    differ = int((images["former"] != images["current"]).sum())
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["former"] / med["current"]
    print(f"correction of the {study.n_phases}-phase cine, medians over {args.rounds} rounds ({os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}): former {med['former']:.2f} s, current {med['current']:.2f} s: "
          f"x{ratio:.2f}; one thread {med['one thread']:.2f} s: x{med['one thread'] / med['current']:.2f} on "
          f"{motion.thread_workers()} threads; voxels differing: {differ} of {images['current'].size} (former), "
          f"{threads_differ} (one thread)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "study": args.study, "model_id": predictor.model_id, "rounds": args.rounds,
            "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "estimate_motion_s": round(t_motion, 3), "estimation_phases": motion.estimation_phases(study),
            "motion_timings_s": {k: round(v, 4) for k, v in est.timings.items()}, "slices_moved": moved,
            "correction_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "correction_median_s": {k: round(v, 4) for k, v in med.items()}, "correction_speedup": round(ratio, 3),
            "threads": motion.thread_workers(), "threads_speedup": round(med["one thread"] / med["current"], 3),
            "voxels_differing": differ, "voxels_differing_one_thread": threads_differ,
            "voxels": int(images["current"].size),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
