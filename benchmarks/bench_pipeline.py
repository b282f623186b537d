"""Stage timings of the whole pipeline: study file -> all outputs (`gemini-cmr super-resolve`).

    .venv/bin/python benchmarks/bench_pipeline.py [--study PATH | --synth SEED [--phases 20]]
        [--model M] [--device auto|cpu|cuda] [--repeat 3] [--phase-mode all|ed,es] [--json]

Without --study the bundled demo study is timed. Each repeat runs: load_study, SuperResolver (model load), run
(predict, lr_labels, phenotypes, meshes at ED/ES) and write_outputs, and reports the median per stage.
With --synth SEED the study is a `core.synth` phantom subject written to a temporary NIfTI file (the
bundled demo study is seed 2024), and --oracle replaces the network by the phantom's HR ground truth (SR image and labels), which
times the engine's own stages (back-projection, phenotypes, meshes, writing) on realistic labels.
Performance figures live here, not in unit tests (docs/pipeline.md quotes measured runs). The measuring
code is shared with `gemini-cmr bench` (core/perf.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from gemini_cmr.core.io.nifti import save_nifti  # noqa: E402
from gemini_cmr.core.perf import DEMO_STUDY, OraclePredictor, run_once  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=None)
    ap.add_argument("--phases", type=int, default=20, help="with --synth: phases of the phantom")
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
            from gemini_cmr.core.synth.dataset import make_subject

            pair = make_subject(args.synth, n_phases=args.phases)
            study_path = tmp / "synth.nii.gz"
            save_nifti(study_path, pair.lr.image, pair.lr.affine, phase_interval_ms=40.0)
            t, z, y, x = pair.lr.image.shape
            what = f"synth phantom seed {args.synth}: {t} phases x {z} slices x {y}x{x}"
            what += " (oracle predictor)" if args.oracle else ""
        elif args.oracle:
            ap.error("--oracle needs --synth")
        elif args.study is None:
            study_path, what = DEMO_STUDY, "demo study"
        else:
            study_path, what = args.study, str(args.study)
        model = OraclePredictor(pair) if args.oracle else args.model
        runs = []
        for i in range(max(1, args.repeat)):
            tm = run_once(study_path, model, args.device, tmp / f"out{i}", args.phase_mode)
            tm.pop("_result")
            runs.append(tm)

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
             "phenotypes", "meshes", "end_to_end", "write", "files_to_outputs", "cpu_seconds"]
    for k in order + [k for k in keys if k not in order and k != "total"]:
        if k in med:
            print(f"  {k:<20} {med[k]:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
