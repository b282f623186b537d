#!/usr/bin/env bash
# The real Sunnybrook series (GE, ../shared/data/sunnybrook/SCD0000101) end to end with and
# without a V-AMA adapter trained on unlabelled studies of that domain; LV Dice vs the Sunnybrook contours.
#
#   scripts/train_sunnybrook_vama.sh [WORK]        (default WORK = runs/sunnybrook_vama; CPU only)
#
# Source domain: there is ONE Sunnybrook subject. `train vama` needs >= 4 source studies, so the cine is
# split into single-phase studies (one 3D NIfTI per cardiac phase), leaving out the two contoured phases
# (7, 18) that the evaluation scores; no contour is read. Each phase's ED landmarks come from Gemini-GAN's
# own segmentation (the source studies are unlabelled).
# Target domain: 20 ACDC training-split patients (number % 5 != 0; 4 per pathology group), ED + ES with
# their labels (landmarks only).
# Geometry: ACDC's NIfTI affines carry no patient orientation (slice normal = voxel z axis for all 100
# patients), while the Sunnybrook DICOM affine is the real oblique short-axis one (normal 71 deg from z),
# so `train vama`'s orientation check (45 deg) refuses the true affine. The source studies are therefore
# written in a rotated world frame: affine' = R @ affine, R the smallest proper rotation taking the slice
# normal to +z. This is a rigid change of world coordinates (spacings, handedness, voxel data unchanged);
# V-AMA's landmark (Kabsch) alignment absorbs any global rigid motion and its networks work per 2D slice,
# so training is otherwise unaffected. At evaluation the adapter runs on the original DICOM study.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-${1:-runs/sunnybrook_vama}}
PY=${PY:-.venv/bin/python}
MODEL=resources/models/gemini-acdc
EXCLUDE_PHASES=${EXCLUDE_PHASES:-7,18}
STEPS=${STEPS:-4000}  # optimiser steps per stage (~25 min on one CPU thread)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK"

nice "$PY" - "$WORK" "$EXCLUDE_PHASES" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from gemini_cmr.core.io.loader import load_study
from gemini_cmr.core.io.nifti import save_nifti

work, exclude = Path(sys.argv[1]), {int(p) for p in sys.argv[2].split(",") if p}
sb = load_study("../shared/data/sunnybrook/SCD0000101")
n = sb.grid.normal / np.linalg.norm(sb.grid.normal)
z = np.array([0.0, 0.0, 1.0])
v, c = np.cross(n, z), float(n @ z)
vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
R = np.eye(3) + vx + vx @ vx / (1 + c)  # Rodrigues: proper rotation, R @ n = z
assert np.allclose(R @ n, z) and abs(np.linalg.det(R) - 1) < 1e-9
rot = np.eye(4)
rot[:3, :3] = R
src = work / "source"
src.mkdir(parents=True, exist_ok=True)
for t in range(sb.n_phases):
    if t in exclude:
        continue
    save_nifti(src / f"sunnybrook_phase{t:02d}.nii.gz", sb.image[t], rot @ sb.affine,
               description=f"SCD0000101 phase {t} (rotated frame)")
    back = load_study(src / f"sunnybrook_phase{t:02d}.nii.gz")
    assert np.allclose(back.image[0], sb.image[t]) and np.allclose(back.grid.normal, z, atol=1e-4)
    assert np.allclose(back.spacing, sb.spacing, atol=1e-3)
tgt = work / "target"
tgt.mkdir(parents=True, exist_ok=True)
acdc = Path("../shared/data/acdc/training").resolve()
order = [20 * g + k for k in (1, 6, 12, 17) for g in range(5)]  # 4 per pathology group, interleaved
assert all(p % 5 for p in order)
for i, p in enumerate(order):
    link = tgt / f"t{i:02d}_patient{p:03d}"
    if not link.exists():
        link.symlink_to(acdc / f"patient{p:03d}", target_is_directory=True)
print(f"source: {len(list(src.glob('*.nii.gz')))} single-phase Sunnybrook studies; target: {len(order)} ACDC")
EOF

[ "${PREP_ONLY:-0}" = 1 ] && exit 0

# V-AMA: CPU, one thread, seed 0; STEPS optimiser steps per stage (G_t, then G_s), a checkpoint every 250
START=$(date +%s)
nice "$PY" -m gemini_cmr.cli.main train vama --source "$WORK/source" --target "$WORK/target" --out "$WORK/run" \
    --gemini "$MODEL" --epochs $(( (STEPS + 249) / 250 )) --steps-per-epoch 250 --max-steps "$STEPS" --device cpu --threads 1 --seed 0 \
    2>&1 | tee "$WORK/train.log"
echo "training wall time: $(( $(date +%s) - START )) s" | tee -a "$WORK/train.log"

nice "$PY" scripts/eval_sunnybrook.py --model "$MODEL" | tee "$WORK/eval_no_adapter.txt"
nice "$PY" scripts/eval_sunnybrook.py --model "$MODEL" --adapter "$WORK/run" | tee "$WORK/eval_vama.txt"
