"""What the quality checks and their review image cost on a real study: one `SuperResolver.run` of a 20-phase
GE cine, then, alternating in one process, every output of the run written (`write_outputs`, DICOM included,
no meshes) against its parts that the quality checks add: the checks themselves (`core.qc.assess_labels`),
the review image (`core.outputs.qc_image`), `qc.png` and the DICOM Secondary Capture. Medians over the
rounds, and the added parts as a fraction of all the writing.

    .venv/bin/python benchmarks/bench_qc.py [--study DIR] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=ROOT.parent / "shared" / "data" / "sunnybrook" / "SCD0000101")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    from gemini_cmr.core import outputs, qc
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import dicom_write
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.resources import acdc_model_path

    study = load_study(args.study)
    result = SuperResolver(model=str(acdc_model_path()), device="cpu").run(study, phases="all", meshes="none")
    grid = study.grid
    times: dict[str, list[float]] = {k: [] for k in ("all outputs (write_outputs, DICOM)", "quality checks",
                                                     "review image", "qc.png", "DICOM Secondary Capture")}
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        tmp = Path(tmp)
        ctx = dicom_write.dicom_context(study, outputs.model_name(result), result.model_id, "bench")
        for r in range(args.rounds):
            t = time.perf_counter()
            outputs.write_outputs(result, tmp / f"out{r}", mesh_formats=(), dicom=True)
            times["all outputs (write_outputs, DICOM)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            qc.assess_labels(result.lr_labels, result.phases, grid.spacing[1::-1], (result.ed_phase, result.es_phase),
                             result.phenotypes["volume_curves_ml"], study.image, grid)
            times["quality checks"].append(time.perf_counter() - t)
            t = time.perf_counter()
            rgb = outputs.qc_image(result)
            times["review image"].append(time.perf_counter() - t)
            t = time.perf_counter()
            outputs.write_qc_snapshot(result, tmp / f"qc{r}.png", rgb)
            times["qc.png"].append(time.perf_counter() - t)
            t = time.perf_counter()
            dicom_write.write_quality_capture(tmp / f"QC{r}.dcm", rgb, ctx)
            times["DICOM Secondary Capture"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    added = med["review image"] + med["qc.png"] + med["DICOM Secondary Capture"]
    report = {"command": "benchmarks/bench_qc.py " + " ".join(argv or sys.argv[1:]), "study": str(args.study),
              "phases": len(result.phases), "rounds": args.rounds,
              "median_s": {k: round(v, 4) for k, v in med.items()},
              "runs_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
              "writing_added_s": round(added, 4),
              "writing_added_fraction": round(added / med["all outputs (write_outputs, DICOM)"], 4),
              "checks_in_run_s": round(result.timings.get("qc", float("nan")), 4)}
    for k, v in med.items():
        print(f"{k:40s} {v:.4f} s")
    print(f"added to the writing by qc.png and its Secondary Capture: {added:.3f} s, "
          f"{100 * report['writing_added_fraction']:.1f}% of all the outputs' writing")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
