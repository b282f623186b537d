#!/usr/bin/env bash
# Re-create the bundled phantom model resources/models/gemini-phantom/ (recipes/gemini-phantom/README.md):
# the acquired-2d generator (widths 8-16-32-64), model 8bd5874cf0be.
#   1. 40 phantom subjects (28 train / 6 val / 6 test), seed 0, 20 phases, from `gemini-cmr synth`;
#   2. stage 1: recipes/gemini-phantom/stage1.json (2,000 steps, batch 2 of 64 px crops, seed 0, bf16);
#   3. stage 2: recipes/gemini-phantom/stage2.json (from stage 1's best checkpoint, lr 3e-4, MSE weight
#      10, 400 steps, seed 4), stage 3: recipes/gemini-phantom/stage3.json (from stage 2's best, lr
#      1.5e-4, 600 steps, seed 5); stage 3's best validation checkpoint exported as float16;
#   4. the held-out test split evaluated (3D / slice-wise Dice, PSNR/SSIM vs cubic B-spline).
# The shipped weights (8bd5874cf0be) are this recipe's output (stage 1 608 s, stage 2 141 s, stage 3 187 s
# on a 2-core CPU, bf16 autocast). Run from anywhere; paths are relative to the repository root.
# Usage: recipes/gemini-phantom/train.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
DATA=${1:-data/phantoms}
RUN=${2:-runs/phantom-a2d}
if [ ! -f "$DATA/manifest.json" ]; then
  $PY -m gemini_cmr.cli.main synth "$DATA" --subjects 40 --seed 0 --phases 20
fi
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$RUN" --config recipes/gemini-phantom/stage1.json \
  --device cpu --seed 0
# Stages 2 and 3 read their "init" from runs/phantom-a2d/best and runs/phantom-a2d-stage2/best.
sed "s#runs/phantom-a2d/best#$RUN/best#" recipes/gemini-phantom/stage2.json > "$RUN-stage2.json"
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$RUN-stage2" --config "$RUN-stage2.json" \
  --device cpu --seed 4
sed "s#runs/phantom-a2d-stage2/best#$RUN-stage2/best#" recipes/gemini-phantom/stage3.json > "$RUN-stage3.json"
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$RUN-stage3" --config "$RUN-stage3.json" \
  --device cpu --seed 5
$PY scripts/export_model.py "$RUN-stage3/best" resources/models/gemini-phantom \
  --command recipes/gemini-phantom/train.sh
$PY scripts/eval_gemini.py --data "$DATA" --split test --json "$RUN-stage3/test_metrics.json"
