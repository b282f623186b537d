"""Where the network time goes on a GPU: `Predictor.predict` on the demo study under variants, one run.

    python benchmarks/bench_gpu_variants.py [--device cuda] [--repeat 7] [--json OUT.json]

Variants (each: a fresh Predictor, two warm-up cines, then --repeat timed cines; the figure is the
median of the predictor's own "model" timing, i.e. `run_stacks`: host tensor, copy to the device, network,
copies back, argmax): the default (float32, batch 4, pinned host memory, channels_last weights);
without pinned memory; with cudnn.benchmark; batch 10 and 20 (with cudnn.benchmark); contiguous (NCHW)
weights instead of channels_last; bf16 autocast. The ratio column is against the default, measured
in the same process. Labels are compared with the default's (fraction of equal voxels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.bench import DEMO_STUDY  # noqa: E402
from core.io import load_study  # noqa: E402
from core.predict import Predictor, resolve_device  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    study = load_study(DEMO_STUDY)
    real_pin = torch.Tensor.pin_memory
    variants = [
        ("default (fp32, batch 4, pinned, channels_last)", {}),
        ("no pinned memory", {"no_pin": True}),
        ("cudnn.benchmark", {"cudnn": True}),
        ("cudnn.benchmark, batch 10", {"cudnn": True, "batch": 10}),
        ("cudnn.benchmark, batch 20", {"cudnn": True, "batch": 20}),
        ("contiguous weights (no channels_last)", {"nchw": True}),
        ("contiguous weights + cudnn.benchmark", {"nchw": True, "cudnn": True}),
        ("bf16 autocast + cudnn.benchmark", {"cudnn": True, "precision": "bfloat16"}),
    ]
    rows, ref_labels, base = [], None, None
    for name, v in variants:
        torch.backends.cudnn.benchmark = bool(v.get("cudnn"))
        torch.Tensor.pin_memory = (lambda self, *a, **k: self) if v.get("no_pin") else real_pin
        p = Predictor.load(None, device=dev, batch_size=v.get("batch", 4), precision=v.get("precision", "float32"))
        if v.get("nchw"):
            p._inference_model().to(memory_format=torch.contiguous_format)
        for _ in range(2):
            p.predict(study)
        model_s, total_s, pred = [], [], None
        for _ in range(max(1, args.repeat)):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            pred = p.predict(study)
            model_s.append(pred.timings["model"])
            total_s.append(pred.timings["total"])
        m = statistics.median(model_s)
        base = base or m
        if ref_labels is None:
            ref_labels = pred.sr_labels
        row = {"variant": name, "model_s_per_cine": round(m, 4), "predict_s_per_cine": round(statistics.median(total_s), 4),
               "ratio_vs_default": round(base / m, 2), "label_agreement": float(np.mean(pred.sr_labels == ref_labels)),
               "all_model_s": [round(x, 4) for x in model_s]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    torch.Tensor.pin_memory = real_pin
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"\n{gpu}, demo study (20 phases), bundled model, torch {torch.__version__}")
    print(f"{'variant':50} {'model s':>8} {'predict s':>9} {'x default':>9} {'labels eq':>9}")
    for r in rows:
        print(f"{r['variant']:50} {r['model_s_per_cine']:8.3f} {r['predict_s_per_cine']:9.3f} "
              f"{r['ratio_vs_default']:9.2f} {r['label_agreement']:9.5f}")
    if args.json:
        args.json.write_text(json.dumps({"gpu": gpu, "torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
