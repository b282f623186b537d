"""Stage timings of the whole pipeline: study file -> all outputs (`gemini-cmr super-resolve`).

    .venv/bin/python benchmarks/bench_pipeline.py [--study PATH] [--phases 20] [--slices 10] [--size 128]
        [--model M] [--device auto|cpu|cuda] [--repeat 3] [--phase-mode all|ed,es] [--json]

Without --study a phantom cine is generated (an ellipsoidal LV cavity + myocardium and an RV beating
over the cycle, 1.8 mm in-plane, 8 mm slices, oblique) and written to a temporary NIfTI file, so the
figures include reading the file. Each repeat runs: load_study, SuperResolver (model load), run
(predict, lr_labels, phenotypes, meshes at ED/ES) and write_outputs, and reports the median per stage.
With --synth SEED the study is a `core.synth` phantom subject instead (the bundled demo study is seed
2024), and --oracle replaces the network by the phantom's HR ground truth (SR image and labels), which
times the engine's own stages (back-projection, phenotypes, meshes, writing) on realistic labels.
Performance figures live here, not in unit tests (docs/pipeline.md quotes measured runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.geometry import rotation_matrix  # noqa: E402
from core.io.nifti import save_nifti  # noqa: E402
from core.study import Grid  # noqa: E402


def phantom(n_phases: int, n_slices: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, Z, Y, X) float32 cine and affine: a beating two-ventricle phantom on an oblique stack."""
    rot = rotation_matrix(np.array([0.3, 1.0, 0.2]), 25.0)
    aff = np.eye(4)
    aff[:3, :3] = rot * np.array([1.8, 1.8, 8.0])
    grid = Grid((n_slices, size, size), aff)
    aff[:3, 3] = -grid.centre()
    grid = Grid((n_slices, size, size), aff)
    local = (grid.voxel_centres() - np.array([-8.0, 0.0, 0.0])) @ rot
    rng = np.random.default_rng(seed)
    body = np.sqrt(np.sum((local[..., :2] / (0.45 * size * 1.8)) ** 2, axis=-1)) < 1.0
    frames = []
    for t in range(n_phases):
        s = 1.0 - 0.3 * math.sin(math.pi * t / n_phases) ** 2
        r = np.sqrt(np.sum((local / (np.array([22.0, 18.0, 30.0]) * s)) ** 2, axis=-1))
        rv = np.sqrt(np.sum(((local - [40.0, 0, 0]) / (np.array([12.0, 22.0, 26.0]) * s)) ** 2, axis=-1))
        img = np.where(body, 60.0, 5.0)
        img = np.where(rv < 1.0, 240.0, img)
        img = np.where(r < 1.0 + 8.0 / (22.0 * s), 80.0, img)
        img = np.where(r < 1.0, 300.0, img)
        frames.append(img + rng.normal(0, 6.0, img.shape))
    return np.stack(frames).astype(np.float32), aff


class OraclePredictor:
    """Predictor interface returning a phantom's HR ground truth (no network)."""

    model_id = "oracle"
    device = "cpu"

    def __init__(self, pair):
        self.pair = pair

    def predict(self, study, phases=None, progress=None, cancel=None):
        from core.predict import Prediction

        phases = list(range(study.n_phases)) if phases is None else list(phases)
        hr = self.pair.hr
        return Prediction(hr.grid, phases, hr.image[phases], hr.labels[phases], self.model_id)


def run_once(study_path: Path, args, out: Path, pair=None) -> dict[str, float]:
    from core.engine import SuperResolver, write_outputs
    from core.io import load_study

    t0 = time.perf_counter()
    c0 = time.process_time()
    study = load_study(study_path)
    t_load = time.perf_counter() - t0
    model = OraclePredictor(pair) if args.oracle else args.model
    engine = SuperResolver(model=model, device=args.device)
    result = engine.run(study, phases=args.phase_mode, meshes="ed_es")
    write_outputs(result, out, ["stl"])
    total = time.perf_counter() - t0
    tm = dict(result.timings)
    tm["load_study"] = t_load
    tm["files_to_outputs"] = total
    tm["cpu_seconds"] = time.process_time() - c0  # all threads of this process
    tm["_device"] = engine.device
    tm["_sr_shape"] = list(result.sr_grid.shape)
    tm["_n_phases"] = len(result.phases)
    return tm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=None)
    ap.add_argument("--phases", type=int, default=20)
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--size", type=int, default=128, help="in-plane matrix of the phantom (1.8 mm pixels)")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--phase-mode", default="all", help="'all' or 'ed,es'")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--synth", type=int, default=None, metavar="SEED", help="use a core.synth phantom subject")
    ap.add_argument("--oracle", action="store_true", help="with --synth: HR truth instead of the network")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gemini-bench-") as tmp:
        tmp = Path(tmp)
        pair = None
        if args.synth is not None:
            from core.synth.dataset import make_subject

            pair = make_subject(args.synth, n_phases=args.phases)
            study_path = tmp / "synth.nii.gz"
            save_nifti(study_path, pair.lr.image, pair.lr.affine, phase_interval_ms=40.0)
            t, z, y, x = pair.lr.image.shape
            what = f"synth phantom seed {args.synth}: {t} phases x {z} slices x {y}x{x}"
            what += " (oracle predictor)" if args.oracle else ""
        elif args.oracle:
            ap.error("--oracle needs --synth")
        elif args.study is None:
            image, aff = phantom(args.phases, args.slices, args.size)
            study_path = tmp / "phantom.nii.gz"
            save_nifti(study_path, image, aff, phase_interval_ms=40.0)
            what = f"phantom {args.phases} phases x {args.slices} slices x {args.size}^2 (1.8 x 1.8 x 8 mm)"
        else:
            study_path, what = args.study, str(args.study)
        runs = [run_once(study_path, args, tmp / f"out{i}", pair) for i in range(max(1, args.repeat))]

    keys = [k for k in runs[0] if not k.startswith("_")]
    med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    info = {
        "study": what, "device": runs[0]["_device"], "sr_grid": runs[0]["_sr_shape"],
        "phases": runs[0]["_n_phases"], "repeats": len(runs), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "median_s": {k: round(v, 3) for k, v in med.items()},
    }  # fmt: skip
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{what}; SR grid {info['sr_grid']} (D, H, W); {info['phases']} phases; device {info['device']}"
          f"{' (' + info['gpu'] + ')' if info['gpu'] else ''}; {info['cpu_count']} CPUs, "
          f"torch threads {info['torch_threads']}; median of {len(runs)}; load average "
          f"{info['load_average_1min'][0]:.1f} before, {info['load_average_1min'][1]:.1f} after")
    order = ["load_study", "load_model", "adapt", "predict", "predict_preprocess", "predict_model", "lr_labels",
             "phenotypes", "meshes", "write", "files_to_outputs", "cpu_seconds"]
    for k in order + [k for k in keys if k not in order and k != "total"]:
        if k in med:
            print(f"  {k:<20} {med[k]:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
