"""The slice shifts undone in the placement on the SR grid (`Predictor.predict(shifts_mm=)`, one in-plane
interpolation) against a corrected copy of the cine placed as acquired (`core.motion.corrected_study`: a
cubic B-spline shift of every moved slice, then the placement's bilinear resampling), the way the engine did
it before.

Speed and agreement on a real study (default: the Sunnybrook GE cine), the whole `SuperResolver.run` in one
process, the two alternating: the `motion` stage (which held the correction of the whole cine), the
`predict` stage and the run, and the share of SR label voxels equal (all, and those labelled by either), of
the labels on the acquired slices, and the phenotypes. With `--runs RUN` also the accuracy on ACDC
cross-validation folds (`RUN/fold<k>/model`, each on its own held-out patients, the evaluation of `gemini-cmr
train cv`), paired against the corrected copy (`bench_roi_margin.accuracy`).

    .venv/bin/python benchmarks/bench_shift_placement.py [--study DIR] [--rounds 5]
        [--runs runs/abl-steps2400-robust-dropped --folds 2 --data acdc:../shared/data/acdc/training]
        [--json FILE]
"""

from __future__ import annotations

import statistics

import numpy as np
from bench_roi_margin import accuracy, agreement, finish_result, parse_args, start_result

from gemini_cmr.core import motion as motionlib

IN_PLACEMENT = motionlib.predict_corrected


def corrected_copy(predictor, study, shifts_mm, **kw):
    """The engine's former way: the prediction of `corrected_study` (cubic shift, then the placement)."""
    if shifts_mm is None:
        return predictor.predict(study, **kw)
    return predictor.predict(motionlib.corrected_study(study, shifts_mm), **kw)


def set_variant(predictor, value: float) -> None:
    """0: the corrected copy; 1: the shifts undone in the placement (what the engine calls is swapped)."""
    motionlib.predict_corrected = IN_PLACEMENT if value else corrected_copy


NAMES = {0.0: "corrected copy", 1.0: "in the placement"}


def speed(study_path: str, rounds: int) -> dict:
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io import load_study
    from gemini_cmr.core.resources import default_model_for

    study = load_study(study_path)
    model, _ = default_model_for(study)
    resolver = SuperResolver(model=model, device="cpu")
    resolver.run(study, meshes="none")  # warm-up
    stages = ("motion", "predict", "total")
    times = {v: {s: [] for s in stages} for v in NAMES}
    results = {}
    for r in range(max(1, rounds)):
        for v in NAMES:
            set_variant(resolver.predictor, v)
            res = resolver.run(study, meshes="none")
            for s in stages:
                times[v][s].append(float(res.timings[s]))
            results[v] = res
        print(f"round {r + 1}: " + ", ".join(
            f"{NAMES[v]}: motion {times[v]['motion'][-1]:.2f} s, predict {times[v]['predict'][-1]:.2f} s, "
            f"run {times[v]['total'][-1]:.2f} s" for v in NAMES), flush=True)
    set_variant(resolver.predictor, 1.0)
    a, b = results[0.0], results[1.0]
    sr_all, sr_either = agreement(a.sr_labels, b.sr_labels)
    lr_all, lr_either = agreement(a.lr_labels, b.lr_labels)
    keys = ("lv_edv_ml", "lv_esv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml", "rv_esv_ml", "rv_ef_pct")
    phen = {k: [a.phenotypes.get(k), b.phenotypes.get(k)] for k in keys}
    box = a.net_roi or (0, a.sr_image.shape[2], 0, a.sr_image.shape[3])
    y0, y1, x0, x1 = box
    ia, ib = a.sr_image[:, :, y0:y1, x0:x1], b.sr_image[:, :, y0:y1, x0:x1]
    rel = float(np.abs(ia - ib).mean() / max(float(np.abs(ia).mean()), 1e-9))
    out = {"study": str(study_path), "phases": study.n_phases, "model_id": resolver.model_id,
           "shifts_mm": np.asarray(a.motion.shifts_mm).round(3).tolist(),
           "medians_s": {NAMES[v]: {s: statistics.median(times[v][s]) for s in stages} for v in NAMES},
           "runs_s": {NAMES[v]: times[v] for v in NAMES},
           "sr_labels_equal": sr_all, "sr_labels_equal_labelled": sr_either,
           "lr_labels_equal": lr_all, "lr_labels_equal_labelled": lr_either,
           "sr_image_mean_abs_diff_rel_network_box": rel,
           "ed_es": [[a.ed_phase, a.es_phase], [b.ed_phase, b.es_phase]], "phenotypes": phen}
    m = out["medians_s"]
    print(f"medians over {rounds} rounds: " + "; ".join(
        f"{name}: motion {m[name]['motion']:.2f} s, predict {m[name]['predict']:.2f} s, run {m[name]['total']:.2f} s"
        for name in m))
    print(f"run x{m['corrected copy']['total'] / m['in the placement']['total']:.3f} (corrected copy / in the "
          f"placement); motion x{m['corrected copy']['motion'] / m['in the placement']['motion']:.3f}")
    print(f"SR labels equal {sr_all:.5f} ({sr_either:.4f} of the labelled), labels on the acquired slices "
          f"{lr_all:.5f} ({lr_either:.4f}); SR image in the network box: mean |difference| {rel:.4f} of the mean")
    print("phenotypes (corrected copy, in the placement): " + ", ".join(
        f"{k} {x if x is None else round(float(x), 2)} / {y if y is None else round(float(y), 2)}"
        for k, (x, y) in phen.items()))
    return out


def main() -> None:
    args = parse_args(__doc__, "variants", 1.0, 5)
    result = start_result()
    if not args.no_speed:
        result["speed"] = speed(args.study, args.rounds)
    if args.runs:
        result["accuracy"] = accuracy(args.data, args.runs, args.folds, [1.0], args.limit, setter=set_variant,
                                      base_name="corrected_copy", label="in_placement")
    finish_result(result, args.json)


if __name__ == "__main__":
    main()
