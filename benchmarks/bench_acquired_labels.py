"""The acquired-2d generator's last step on the CPU, from the acquired slices' image and class scores to the
SR image and labels (`GeminiGenerator._infer_acquired` after `acquired_parts`), on a real study with the
model `super-resolve` picks for it (the ACDC model: heart-box input, 4 phases per network call):
- "per-group": the former CPU path, torch ops per group of SR slices between the same two acquired slices
  (`previous_infer` below: copy, interpolate, nonzero and gathers per group);
- "host": the current one (`acquired_to_sr_host`: NumPy, one thread, the label disagreements of all SR
  slices gathered at once).
Part 1 times the step alone on the acquired-slice outputs of one `Predictor.predict` (every network call
of the cine, the whole-field heart-finding pass included), the two alternating, min and median of
--repeat per cine, both checked bit for bit against the dense path (`grouped=False`). Part 2 runs whole
`predict` calls alternating (--rounds each) and reports the step's time inside them, the network time and
whether the two predictions are identical.

    .venv/bin/python benchmarks/bench_acquired_labels.py [--study DIR] [--repeat 20] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gemini_cmr.core.models.gemini import GeminiGenerator, acquired_groups, class_argmax, tta_scores

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = ROOT.parent / "shared" / "data" / "sunnybrook" / "SCD0000101"


def previous_infer(self, x: torch.Tensor, grouped: bool | None = None,
                   flips: Sequence[tuple[int, ...]] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """The former CPU path of `_infer_acquired` (linear image, no `tp_knots`): torch ops per group."""
    b, d, h, w = x.shape
    a_img, a_seg, plan, a_res = self.acquired_parts(x)
    assert a_res is None
    if flips and plan.n:
        a_seg = tta_scores(a_seg, [self.acquired_parts(x.flip(dims))[1] for dims in flips], flips)
    img, lab = previous_tail(a_img, a_seg, plan, b * d)
    return img.view(b, d, h, w), lab.view(b, d, h, w)


def previous_tail(a_img, a_seg, plan, rows):
    n, h, w = a_img.shape
    img = torch.zeros((rows, h, w), dtype=torch.float32)
    lab = torch.zeros((rows, h, w), dtype=torch.uint8)
    if not plan.n:
        return img, lab
    a_img, a_seg = a_img.float(), a_seg.float()
    a_lab = class_argmax(a_seg)
    tt = plan.t
    for o0, o1, ja, jb, m0 in acquired_groups(plan):
        t = tt[m0:m0 + o1 - o0]
        tv = t[:, None, None]
        torch.add((1 - tv) * a_img[ja], tv * a_img[jb], out=img[o0:o1])
        lab[o0:o1] = a_lab[ja]
        if ja == jb:
            continue
        yy, xx = torch.nonzero(a_lab[ja] != a_lab[jb], as_tuple=True)
        if yy.numel():
            tk = t[:, None, None]
            s = (1 - tk) * a_seg[ja, :, yy, xx] + tk * a_seg[jb, :, yy, xx]
            lab[o0:o1, yy, xx] = class_argmax(s)
    return img, lab


def host_tail(a_img, a_seg, plan, rows):
    from gemini_cmr.core.models.gemini import acquired_to_sr_host

    return acquired_to_sr_host(a_img, a_seg, plan, rows)


def stats(ts: list[float]) -> dict:
    return {"min_s": round(min(ts), 4), "median_s": round(statistics.median(ts), 4),
            "runs_s": [round(t, 4) for t in ts]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(DEFAULT_STUDY))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.resources import default_model_for

    study = load_study(args.study)
    model_path, _ = default_model_for(study)
    pred = Predictor.load(model_path, device="cpu")
    current = GeminiGenerator._infer_acquired
    parts = GeminiGenerator.acquired_parts

    captured = []
    net = {"s": 0.0}

    def capture(self, x, seg_levels=None, seg_res=None):
        t = time.perf_counter()
        out = parts(self, x, seg_levels, seg_res)
        net["s"] += time.perf_counter() - t
        if captured is not None:
            captured.append((x.shape[0] * x.shape[1], *out))
        return out

    GeminiGenerator.acquired_parts = capture
    try:
        pred.predict(study)
        calls = list(captured)
        captured = None
        shapes = [list(a_seg.shape) + [str(a_seg.dtype).replace("torch.", "")] for _, _, a_seg, _, _ in calls]
        print(f"model {pred.model_id[:12]} ({model_path}), {pred.precision}, threads {torch.get_num_threads()}, "
              f"{study.n_phases} phases, {len(calls)} network calls per cine, acquired-slice scores {shapes[:2]}")

        # part 1: the step alone, alternating
        exact = True
        with torch.inference_mode():
            for rows, a_img, a_seg, plan, _ in calls:
                model = pred._inference_model()
                x = torch.zeros((rows // model.config.depth, model.config.depth, *a_img.shape[1:]))
                ref = fixed(model, a_img, a_seg, plan, x, grouped=False)
                for tail in (previous_tail, host_tail):
                    img, lab = tail(a_img, a_seg, plan, rows)
                    exact &= torch.equal(img, ref[0].flatten(0, 1)) and torch.equal(lab, ref[1].flatten(0, 1))
            times: dict[str, list[float]] = {"per-group": [], "host": []}
            for _ in range(args.repeat):
                for name, tail in (("per-group", previous_tail), ("host", host_tail)):
                    t = time.perf_counter()
                    for rows, a_img, a_seg, plan, _ in calls:
                        tail(a_img, a_seg, plan, rows)
                    times[name].append(time.perf_counter() - t)
        part1 = {name: stats(ts) for name, ts in times.items()}
        part1["ratio_min"] = round(min(times["per-group"]) / min(times["host"]), 2)
        part1["ratio_median"] = round(statistics.median(times["per-group"]) / statistics.median(times["host"]), 2)
        part1["identical_to_dense"] = bool(exact)
        print(f"step alone per cine, {args.repeat} alternating: per-group {part1['per-group']['min_s']:.4f} s min "
              f"{part1['per-group']['median_s']:.4f} median, host {part1['host']['min_s']:.4f} min "
              f"{part1['host']['median_s']:.4f} median: x{part1['ratio_min']} by min, x{part1['ratio_median']} by "
              f"median; both identical to the dense path: {exact}")

        # part 2: whole predictions, alternating
        step: dict[str, list[float]] = {"per-group": [], "host": []}
        network: dict[str, list[float]] = {"per-group": [], "host": []}
        model_s: dict[str, list[float]] = {"per-group": [], "host": []}
        outs = {}
        infer_s = {"s": 0.0}

        def timed(fn):
            def run(self, x, grouped=None, flips=()):
                t = time.perf_counter()
                try:
                    return fn(self, x, grouped=grouped, flips=flips)
                finally:
                    infer_s["s"] += time.perf_counter() - t
            return run

        variants = {"per-group": timed(previous_infer), "host": timed(current)}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                GeminiGenerator._infer_acquired = fn
                net["s"] = infer_s["s"] = 0.0
                p = pred.predict(study)
                GeminiGenerator._infer_acquired = current
                step[name].append(infer_s["s"] - net["s"])
                network[name].append(net["s"])
                model_s[name].append(p.timings["model"] + p.timings.get("roi", 0.0))
                outs[name] = p
        same = bool(np.array_equal(outs["per-group"].sr_labels, outs["host"].sr_labels)
                    and np.array_equal(outs["per-group"].sr_image, outs["host"].sr_image))
        part2 = {"step_s": {k: stats(v) for k, v in step.items()},
                 "acquired_parts_s": {k: stats(v) for k, v in network.items()},
                 "model_and_roi_s": {k: stats(v) for k, v in model_s.items()},
                 "step_ratio_median": round(statistics.median(step["per-group"]) / statistics.median(step["host"]), 2),
                 "predictions_identical": same}
        print(f"in predict, {args.rounds} alternating: step per cine per-group "
              f"{part2['step_s']['per-group']['median_s']:.3f} s median, host {part2['step_s']['host']['median_s']:.3f} "
              f"(x{part2['step_ratio_median']}); model+roi {part2['model_and_roi_s']['per-group']['median_s']:.2f} s "
              f"-> {part2['model_and_roi_s']['host']['median_s']:.2f}; predictions identical: {same}")
    finally:
        GeminiGenerator.acquired_parts = parts
        GeminiGenerator._infer_acquired = current

    if args.json:
        res = {"study": str(args.study), "model": pred.model_id, "model_path": str(model_path),
               "precision": pred.precision, "batch_size": pred.batch_size, "threads": torch.get_num_threads(),
               "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "loadavg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__,
               "network_calls_per_cine": len(calls), "acquired_scores": shapes,
               "step_alone_per_cine": part1, "in_predict_per_cine": part2}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.json}")


def fixed(model, a_img, a_seg, plan, x, grouped):
    """`_infer_acquired` of `model` on given acquired-slice outputs."""
    model.acquired_parts = lambda inp, *a, **k: (a_img, a_seg, plan, None)
    try:
        return GeminiGenerator._infer_acquired(model, x, grouped=grouped)
    finally:
        del model.acquired_parts


if __name__ == "__main__":
    main()
