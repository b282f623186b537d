"""torch.compile (inductor, freezing, static shapes) on the CPU, measured against eager in one process:
the bundled model's inference copy with its 2D encoder and both decoders compiled, the compile
time (first whole-cine prediction), then --repeat interleaved whole-cine predictions of each (min and
runs), and the accuracy check (label agreement, largest SR-image difference).

    .venv/bin/python benchmarks/bench_compile.py [--model DIR] [--repeat 4] [--dynamic]

Not used by the product (docs/performance.md): every new input shape (matrix, slice count, batch) is a new
compilation of about 45 s on the 2-core CPU; `--dynamic` (shape-generic) with freezing failed in torch
2.13 (an inductor stride assertion on channels_last convolutions).
"""

from __future__ import annotations

import argparse
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gemini_cmr.core.io.loader import load_study  # noqa: E402
from gemini_cmr.core.predict import Predictor  # noqa: E402
from gemini_cmr.core.resources import demo_study_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--study", default=str(demo_study_path()))
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--dynamic", action="store_true")
    args = ap.parse_args()
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    study = load_study(args.study)
    eager = Predictor.load(args.model, device="cpu")
    comp = Predictor.load(args.model, device="cpu")
    m = comp._inference_model()
    m._encode2d = torch.compile(m._encode2d, dynamic=args.dynamic)
    m.image_decoder = torch.compile(m.image_decoder, dynamic=args.dynamic)
    m.seg_decoder = torch.compile(m.seg_decoder, dynamic=args.dynamic)
    t0 = time.perf_counter()
    comp.predict(study)
    compile_s = time.perf_counter() - t0
    eager.predict(study)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    outs = {}
    for _ in range(args.repeat):
        for name, p in (("eager", eager), ("compiled", comp)):
            t0 = time.perf_counter()
            outs[name] = p.predict(study)
            times[name].append(time.perf_counter() - t0)
    print(f"model {eager.model_id[:12]}, {eager.precision}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, {study.n_phases} phases")
    print(f"first compiled prediction (compilation included): {compile_s:.1f} s")
    for name, ts in times.items():
        print(f"{name:9s} min {min(ts):.3f} s per cine, median {float(np.median(ts)):.3f} "
              f"(runs {', '.join(f'{t:.2f}' for t in ts)})")
    print(f"speed-up x{min(times['eager']) / min(times['compiled']):.2f} (min), "
          f"x{np.median(times['eager']) / np.median(times['compiled']):.2f} (median)")
    a, b = outs["eager"], outs["compiled"]
    print(f"label agreement {100 * float(np.mean(a.sr_labels == b.sr_labels)):.4f}%, "
          f"largest SR-image difference {float(np.abs(a.sr_image - b.sr_image).max()):.3g} "
          f"(image range {float(a.sr_image.max()):.0f})")


if __name__ == "__main__":
    main()
