"""Network precision and batch size on one device: speed and accuracy side by side in one run.

    .venv/bin/python benchmarks/bench_precision.py [--device cpu|cuda] [--precisions float32 bfloat16 float16]
        [--batches 4 20] [--repeat 5] [--json OUT.json]

On the bundled demo study (20 phases; it is `core.synth.dataset.make_subject(2024)`), for every
(precision, batch) the bundled model's `Predictor.predict` is timed (median of --repeat runs after a
warm-up, the device synchronised), and compared with float32 at the same batch by
`core.perf.precision_agreement`: SR label agreement and the PSNR change against the phantom's HR
ground truth (acceptance: agreement >= 99.5% of voxels, |PSNR change| < 0.1 dB).
The speed-up column is against the first row (float32, first batch) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch  # noqa: E402

from gemini_cmr.core.io import load_study  # noqa: E402
from gemini_cmr.core.perf import DEMO_STUDY, precision_agreement  # noqa: E402
from gemini_cmr.core.predict import Predictor, resolve_device  # noqa: E402
from gemini_cmr.core.synth.dataset import make_subject  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--batches", nargs="+", type=int, default=[4])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    study = load_study(DEMO_STUDY)
    hr = make_subject(2024).hr.image.astype("float32")
    rows, base = [], None
    for batch in args.batches:
        ref = None
        for prec in ["float32"] + [p for p in args.precisions if p != "float32"]:
            p = Predictor.load(None, device=dev, batch_size=batch, precision=prec)
            p.predict(study, phases=list(range(min(batch, study.n_phases))))  # warm-up
            times, pred = [], None
            for _ in range(max(1, args.repeat)):
                _sync(dev)
                t = time.perf_counter()
                pred = p.predict(study)
                _sync(dev)
                times.append(time.perf_counter() - t)
            sec = statistics.median(times)
            base = base or sec
            row = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                   "precision": prec, "batch": batch, "predict_s_per_cine": round(sec, 4),
                   "all_s": [round(v, 4) for v in times], "speedup_vs_first_row": round(base / sec, 2)}
            if ref is None:
                ref = pred
            else:
                row.update({k: (round(v, 5) if isinstance(v, float) else v)
                            for k, v in precision_agreement(ref, pred, hr).items()})
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'precision':10} {'batch':>5} {'s/cine':>8} {'speed-up':>8} {'agreement':>10} {'dPSNR dB':>9}")
    for r in rows:
        print(f"{r['precision']:10} {r['batch']:5d} {r['predict_s_per_cine']:8.3f} {r['speedup_vs_first_row']:8.2f} "
              f"{r.get('label_agreement', 1.0):10.5f} {r.get('psnr_change_db', 0.0):9.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
