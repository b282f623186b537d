#!/usr/bin/env bash
# Re-create the optional slices-as-channels phantom model resources/models/gemini-phantom-sac/ (model
# 282a0c557b2e; recipes/gemini-phantom-sac/README.md). Stages 3 and 4 start from the previous stage's export
# in that folder.
#   1. 40 phantom subjects (28 train / 6 val / 6 test), seed 0, 20 phases, from `gemini-cmr synth`;
#   2. Gemini-GAN training with recipes/gemini-phantom-sac/stage1.json (600 steps, seed 0, 2 CPU threads),
#      then resumed to 1,200 steps with recipes/gemini-phantom-sac/stage2.json (128 px crops, lr 1e-3);
#   3. the best validation checkpoint exported as float16 safetensors + config.json;
#   3b. stage 3: fine-tuning that exported model with recipes/gemini-phantom-sac/stage3.json (init from
#      resources/models/gemini-phantom-sac, + soft Dice loss, 700 steps, seed 1, 1 CPU thread; 74 min on a
#      2-core CPU beside other work), its best checkpoint exported the same way;
#   3c. stage 4: fine-tuning the stage-3 export with recipes/gemini-phantom-sac/stage4.json (lr 3e-4, 480
#      steps, seed 2, 2 threads; 18 min), stage 5: fine-tuning stage 4's best checkpoint with
#      recipes/gemini-phantom-sac/stage5.json (MSE weight 10, 480 steps, seed 3, 1 thread; its "init" names
#      runs/gemini-phantom-stage4/best, the default RUN folder), stage 5's best checkpoint exported;
#   4. the held-out test split evaluated (3D / slice-wise Dice, PSNR/SSIM vs cubic B-spline).
# Run from anywhere; paths are relative to the repository root.
# Usage: recipes/gemini-phantom-sac/train.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
DATA=${1:-data/phantoms}
RUN=${2:-runs/gemini-phantom}
RUN3=${RUN}-stage3
export_best() {  # the run's best validation checkpoint -> resources/models/gemini-phantom-sac (float16)
  $PY scripts/export_model.py "$1/best" resources/models/gemini-phantom-sac --command recipes/gemini-phantom-sac/train.sh
}
if [ ! -f "$DATA/manifest.json" ]; then
  $PY -m gemini_cmr.cli.main synth "$DATA" --subjects 40 --seed 0 --phases 20
fi
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$RUN" --config recipes/gemini-phantom-sac/stage1.json \
  --device cpu --seed 0
# Stage 2 (warm restart): resume the same run to 1,200 steps with 128 px crops and lr 1e-3.
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$RUN" --config recipes/gemini-phantom-sac/stage2.json \
  --device cpu --seed 0 --resume
export_best "$RUN"
# Stage 3: fine-tune the exported stage-2 model with a soft Dice term (config "init" reads it).
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$RUN3" --config recipes/gemini-phantom-sac/stage3.json \
  --device cpu --seed 1
export_best "$RUN3"
# Stages 4 and 5: more fine-tuning; stage 5 weights the image MSE 10x.
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "${RUN}-stage4" --config recipes/gemini-phantom-sac/stage4.json \
  --device cpu --seed 2
$PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "${RUN}-stage5" --config recipes/gemini-phantom-sac/stage5.json \
  --device cpu --seed 3
export_best "${RUN}-stage5"
$PY scripts/eval_gemini.py --model resources/models/gemini-phantom-sac --data "$DATA" --split test \
  --json "${RUN}-stage5/test_metrics.json"
