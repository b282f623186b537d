#!/usr/bin/env python
"""bf16 autocast against float32 for a real-study model on real cines, as `super-resolve` runs them.

    .venv/bin/python scripts/precision_check.py [--model DIR ...] [--study DICOM ...] [--json OUT]

For every model and study: the whole pipeline (heart box, motion correction, every phase) once with the
model in float32 and once in bf16 autocast (the CPU default where AVX512-BF16/AMX exist); printed: the share
of SR label voxels that agree, each structure's overlap (Dice between the two predictions) and the phenotypes
of both, and how the two runs' slice motion correction differ (`motion`: the slices each estimated, the largest
shift difference). The product's criterion: >= 99.9 % of label voxels equal; the test
`test_real_study_model_bf16_agrees_with_float32_on_a_real_study` also asks >= 0.99 overlap per structure on
two phases of SCD0000101.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("lv_edv_ml", "lv_esv_ml", "lv_ef_pct", "lv_mass_g", "rv_edv_ml", "rv_esv_ml")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model folder(s); default: the bundled gemini-acdc")
    ap.add_argument("--study", action="append", help="DICOM folder(s); default: two Sunnybrook series")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from gemini_cmr.core.engine import SuperResolver
    from gemini_cmr.core.io.loader import load_study
    from gemini_cmr.core.predict import Predictor
    from gemini_cmr.core.resources import acdc_model_path

    models = args.model or [str(acdc_model_path())]
    studies = args.study or ["../shared/data/sunnybrook/SCD0000101", "../shared/data/sunnybrook/SCD0000401"]
    rows = []
    for study_path in studies:
        study = load_study(study_path)
        for model in models:
            runs = {p: SuperResolver(model=Predictor.load(model, device="cpu", precision=p)).run(study, meshes="none")
                    for p in ("float32", "bfloat16")}
            a, b = (np.asarray(runs[p].sr_labels) for p in ("float32", "bfloat16"))
            overlap = {name: round(float(2 * np.sum((a == c) & (b == c)) / max(1, np.sum(a == c) + np.sum(b == c))), 4)
                       for c, name in ((1, "lv_cavity"), (2, "lv_myocardium"), (3, "rv_cavity"))}
            row = {"study": Path(study_path).name, "model": model, "model_id": runs["float32"].model_id[:12],
                   "labels_equal_pct": round(float(np.mean(a == b)) * 100, 3), "overlap": overlap,
                   "phenotypes": {p: {k: round(float(r.phenotypes[k]), 2) for k in KEYS if k in r.phenotypes}
                                  for p, r in runs.items()}}
            row["motion"] = _motion_difference(runs["float32"].motion, runs["bfloat16"].motion)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


def _motion_difference(a, b) -> dict | None:
    """How the two runs' slice motion correction differ: the slices each estimated (a slice without a clear LV
    section keeps its acquired position) and the largest difference of a slice's shift: a label difference that
    comes from the correction, not from the network's precision (a slice estimated in one run only has its
    own shift there; the other slices' shifts depend smoothly on the labels, `core.motion.fit_shifts`)."""
    if a is None or b is None:
        return None
    import numpy as np

    return {"estimated_float32": np.flatnonzero(a.estimated).tolist(),
            "estimated_bfloat16": np.flatnonzero(b.estimated).tolist(),
            "max_shift_difference_mm": round(float(np.abs(np.asarray(a.shifts_mm) - np.asarray(b.shifts_mm)).max()), 3)}


if __name__ == "__main__":
    raise SystemExit(main())
