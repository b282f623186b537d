"""`gemini-cmr bench`: time the pipeline on a 20-phase cine against the paper's reference configuration.

With --study STUDY: that study as `super-resolve` runs it (the model it chooses, the heart box, every output,
DICOM outputs for DICOM input). Without: the demo study and a real study (--real, or the Sunnybrook cine of
../shared/data), reported side by side (JSON keys "demo" and "real", each with model_per_cine_s,
end_to_end_s, write_s, file_to_outputs_s, reference_per_cine_s, speedup).

Measured side by side in one run: study load, model load, preprocessing, the network per phase and per
cine, back-projection, phenotypes, ED/ES meshes, end to end and writing; peak RSS (and GPU memory);
the model's achieved GFLOP/s against this machine's matmul GFLOP/s; and the speed-up against the paper's
reference network (widths 64-128-256-512-512, input 100 x 400 x 400, batch 1, float32, one phase per
call), of which --reference-phases phases are measured and the time extrapolated to the cine's phases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers, summary: str) -> None:
    p = subparsers.add_parser(
        "bench", help=summary, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--study", type=Path, default=None,
                   help="time this study the way super-resolve would (its model chosen automatically unless "
                        "--model, the heart box, every output); default: the demo study and a real study")
    p.add_argument("--real", type=Path, default=None,
                   help="without --study: the real 20-phase cine timed beside the demo (default: "
                        "../shared/data/sunnybrook/SCD0000101 beside the repository when present)")
    p.add_argument("--model", type=Path, default=None,
                   help="Gemini-GAN model (default: the one super-resolve chooses for the study)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16", "float16"),
        default=None,
        help="network precision (default: the predictor's default)",
    )
    p.add_argument("--phases", type=int, default=20, help="phases of the cine (the demo study has 20)")
    p.add_argument(
        "--reference-phases",
        type=int,
        default=2,
        help="phases of the reference configuration actually measured (default 2); the time is "
        "extrapolated to the cine's phases",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="phases per network call (default: the predictor's default for the device)")
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test of the command; no real figures)"
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="pipeline runs; the median per stage is shown (default 3)"
    )
    p.add_argument("--no-meshes", action="store_true",
                   help="leave out ED/ES meshes and output writing (machines without VTK, e.g. a GPU node)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gemini_cmr.core.errors import GeminiError
    from gemini_cmr.core.perf import format_report, run_bench

    if args.reference_phases < 1:
        raise GeminiError("--reference-phases must be at least 1")

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    report = run_bench(
        study=args.study,
        device=args.device,
        phases=args.phases,
        reference_phases=args.reference_phases,
        model=args.model,
        precision=args.precision,
        quick=args.quick,
        threads=args.threads,
        repeat=args.repeat,
        log=log,
        meshes=not args.no_meshes,
        batch_size=args.batch_size,
        real=args.real,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
