"""Where the network time goes on a GPU: `Predictor.predict` on the demo study under variants, one run.

    python benchmarks/bench_gpu_variants.py [--device cuda] [--repeat 7] [--json OUT.json] [--profile OUT.txt]

Variants (each: a fresh Predictor, two warm-up cines, then --repeat timed cines; the figure is the
median of the predictor's own "model" timing, i.e. `run_stacks`: the network input on the device, the
network, the copies back, the labels): the default (float32, the predictor's memory format, the LR phases
placed on the SR grid on the device, outputs in pinned host memory, the predictor's default batch); NCHW
weights; pageable outputs; placement on the host (the placed stacks copied to the device); batches of 10
and 20 phases; cudnn.benchmark; bf16 and fp16 autocast. The ratio column is against the first row,
measured in the same process; labels are compared with the first row's (fraction of equal voxels), images
by the largest absolute difference, and every variant with the CPU's float32 prediction
(`core.perf.precision_agreement`: label agreement, and for the bundled model the PSNR change against the
demo phantom's HR truth; acceptance: >= 99.5% and < 0.1 dB).
--profile: a torch.profiler table (CUDA and CPU time per operator) of one cine with the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gemini_cmr.core.io import load_study  # noqa: E402
from gemini_cmr.core.perf import DEMO_STUDY, precision_agreement  # noqa: E402
from gemini_cmr.core.predict import Predictor, resolve_device  # noqa: E402
from gemini_cmr.core.synth.dataset import make_subject  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--profile", type=Path, default=None, help="write a torch.profiler table of one cine")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    study = load_study(DEMO_STUDY)
    real_pin = torch.Tensor.pin_memory
    variants = [
        ("default", {}),
        ("NCHW weights", {"cl": False}),
        ("NCHW, pageable outputs", {"cl": False, "pageable": True}),
        ("NCHW, host placement, pageable outputs", {"cl": False, "placement": "host", "pageable": True}),
        ("batch 10", {"batch": 10}),
        ("batch 20", {"batch": 20}),
        ("batch 20, cudnn.benchmark", {"batch": 20, "cudnn": True}),
        ("batch 20, NCHW weights", {"batch": 20, "cl": False}),
        ("bf16 autocast", {"precision": "bfloat16"}),
        ("batch 20, bf16 autocast", {"batch": 20, "precision": "bfloat16"}),
        ("batch 20, fp16 autocast", {"batch": 20, "precision": "float16"}),
    ]
    # Accuracy reference: the CPU, float32, same model (and the phantom's HR truth for the PSNR change).
    cpu = Predictor.load(args.model, device="cpu", precision="float32").predict(study)
    hr = make_subject(2024).hr.image.astype("float32") if args.model is None else None
    rows, ref, base = [], None, None
    for name, v in variants:
        torch.backends.cudnn.benchmark = bool(v.get("cudnn"))
        torch.Tensor.pin_memory = (lambda self, *a, **k: self) if v.get("no_pin") else real_pin
        try:
            p = Predictor.load(args.model, device=dev, batch_size=v.get("batch"),
                               precision=v.get("precision", "float32"))
            p.placement = v.get("placement", "auto")
            p.pinned_outputs = not v.get("pageable")
            p.channels_last = v.get("cl")
            for _ in range(2):
                p.predict(study)
            model_s, pre_s, total_s, pred = [], [], [], None
            for _ in range(max(1, args.repeat)):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                pred = p.predict(study)
                model_s.append(pred.timings["model"])
                pre_s.append(pred.timings["preprocess"])
                total_s.append(pred.timings["total"])
        except Exception as exc:  # one variant failing must not lose the others' figures
            print(json.dumps({"variant": name, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        m = statistics.median(model_s)
        base = base or m
        if ref is None:
            ref = (pred.sr_image, pred.sr_labels)
        row = {"variant": name, "batch": p.batch_size, "model_s_per_cine": round(m, 4),
               "preprocess_s_per_cine": round(statistics.median(pre_s), 4),
               "predict_s_per_cine": round(statistics.median(total_s), 4),
               "ratio_vs_default": round(base / m, 2), "label_agreement": float(np.mean(pred.sr_labels == ref[1])),
               "image_max_abs_diff": float(np.abs(pred.sr_image - ref[0]).max()),
               "vs_cpu_float32": precision_agreement(cpu, pred, hr),
               "all_model_s": [round(x, 4) for x in model_s]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    torch.Tensor.pin_memory = real_pin
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"\n{gpu}, demo study (20 phases), bundled model, torch {torch.__version__}")
    print(f"{'variant':40} {'model s':>8} {'place s':>8} {'predict s':>9} {'x first':>8} {'labels eq':>9} "
          f"{'img diff':>9} {'eq CPU':>8} {'dPSNR':>7}")
    for r in rows:
        c = r["vs_cpu_float32"]
        print(f"{r['variant']:40} {r['model_s_per_cine']:8.3f} {r['preprocess_s_per_cine']:8.3f} "
              f"{r['predict_s_per_cine']:9.3f} {r['ratio_vs_default']:8.2f} {r['label_agreement']:9.5f} "
              f"{r['image_max_abs_diff']:9.2e} {c['label_agreement']:8.5f} {c.get('psnr_change_db', 0.0):7.4f}")
    if args.json:
        args.json.write_text(json.dumps({"gpu": gpu, "torch": torch.__version__, "rows": rows}, indent=2))
    if args.profile:
        profile(args, dev, study)
    return 0


def profile(args, dev, study) -> None:
    """One cine with the default predictor under torch.profiler: operators by device and by host time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.backends.cudnn.benchmark = False
    p = Predictor.load(args.model, device=dev)
    for _ in range(2):
        p.predict(study)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        p.predict(study)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    ka = prof.key_averages()
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    text = (f"batch {p.batch_size}\n" + ka.table(sort_by=key, row_limit=40)
            + "\n" + ka.table(sort_by="self_cpu_time_total", row_limit=40))
    args.profile.write_text(text)
    print(text[:6000])


if __name__ == "__main__":
    sys.exit(main())
