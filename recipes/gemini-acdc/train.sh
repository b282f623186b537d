#!/usr/bin/env bash
# Re-create the ACDC research model resources/models/gemini-acdc (recipes/gemini-acdc/README.md,
# docs/real-data.md).
# --cv: a two-stage recipe: 5-fold cross-validation of recipes/gemini-acdc/cpu.json (gemini-cmr
#   train cv; resumable) and the same recipe trained on all 100 patients (--final; model 269804efbfb8), then
#   stage 2, recipes/gemini-acdc/cpu_dropped.json, continuing each fold's and the final model with dropped-slice
#   self-supervision (600 steps), the dropped-slice test on fold 1, and the stage-2 final model exported with
#   its folds' figures (recipes/gemini-acdc/export_cv.py). Extra arguments go to `train cv` (e.g. --device cuda).
#   STAGE1=CONFIG and STAGE2=CONFIG replace cpu.json and cpu_dropped.json (the shipped weights' recipe:
#   ablations/steps2400_robust.json and ablations/steps2400_robust_dropped.json; stage 2's "init" is pointed at
#   RUN whatever run it names).
# --gpu: the recipe of the former weights (model 2a1f57e8a4eb): 176 mm heart-centred crops of the cohort
#   (recipes/gemini-acdc/crop_acdc.py), semi-supervised Gemini-GAN training ("acquired-2d" generator,
#   LR-label losses) with recipes/gemini-acdc/gpu.json on CUDA, 1,066 steps, seed 0 (about 5 min on an
#   H200), the best validation checkpoint exported with inference.roi_mm = 176 (heart-region inference),
#   then the 20 held-out subjects evaluated through the whole pipeline (scripts/eval_acdc.py).
# Without --gpu: the CPU recipe (whole fields of view, no heart box; model 72a346572130):
#   1. training on patients whose number is not a multiple of 5 (80 subjects x ED/ES), validation on the
#      other 20; recipes/gemini-acdc/cpu_stage1.json (batch 4, 200 steps), then resumed with
#      recipes/gemini-acdc/cpu_stage2.json (batch 2) to STEPS2 steps; seed 0, 1 CPU thread, bf16 autocast;
#   2. the best validation checkpoint exported as float16 safetensors + config.json (the command recorded);
#   3. the 20 held-out subjects evaluated through the whole pipeline (scripts/eval_acdc.py).
# ACDC terms: non-commercial research use; citing Bernard et al., IEEE TMI 37(11) 2018 is mandatory.
# Run from anywhere; paths are relative to the repository root.
# Usage: recipes/gemini-acdc/train.sh --cv [ACDC_TRAINING_DIR] [RUN_DIR] [train cv options]  (with STAGE1/STAGE2 above: the shipped model)
#        recipes/gemini-acdc/train.sh --gpu [ACDC_TRAINING_DIR] [RUN_DIR]     (the former model)
#        recipes/gemini-acdc/train.sh [ACDC_TRAINING_DIR] [RUN_DIR] [STEPS] [STEPS2]   (CPU)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
if [ "${1:-}" = "--cv" ]; then
  ACDC=${2:-../shared/data/acdc/training}
  RUN=${3:-runs/cv}
  shift $(( $# < 3 ? $# : 3 ))
  STAGE1=${STAGE1:-recipes/gemini-acdc/cpu.json}
  $PY -m gemini_cmr.cli.main train cv --data "acdc:$ACDC" --config "$STAGE1" --out "$RUN" "$@"
  $PY -m gemini_cmr.cli.main train cv --data "acdc:$ACDC" --config "$STAGE1" --out "$RUN" --final "$@"
  # stage 2: every fold and the final model continued from their own stage-1 model with dropped-slice
  # self-supervision and through-plane residuals (recipes/gemini-acdc/cpu_dropped.json)
  STAGE2=${STAGE2:-recipes/gemini-acdc/cpu_dropped.json}
  sed "s#\"init\": \"[^\"]*/{fold}/model\"#\"init\": \"$RUN/{fold}/model\"#" "$STAGE2" > "$RUN-dropped.config.json"
  $PY -m gemini_cmr.cli.main train cv --data "acdc:$ACDC" --config "$RUN-dropped.config.json" --out "$RUN-dropped" "$@"
  $PY -m gemini_cmr.cli.main train cv --data "acdc:$ACDC" --config "$RUN-dropped.config.json" --out "$RUN-dropped" \
    --final "$@"
  # the dropped-slice test on the first 10 patients of every trained fold, each by its own fold model
  FOLDS=$(ls -d "$RUN-dropped"/fold*/model | sed 's#.*/fold\([0-9]*\)/model$#\1#' | sort -n | tr '\n' ' ')
  # shellcheck disable=SC2086
  $PY -m gemini_cmr.cli.main evaluate dropped-slices --data "$ACDC" --fold $FOLDS --limit 10 \
    --model "$RUN-dropped/{fold}/model" --motion-correction on --json > "$RUN-dropped/dropped.json"
  $PY recipes/gemini-acdc/export_cv.py "$RUN-dropped" --recipe "$STAGE2" \
    --dropped "$RUN-dropped/dropped.json"
  exit 0
fi
if [ "${1:-}" = "--gpu" ]; then
  ACDC=${2:-../shared/data/acdc/training}
  RUN=${3:-runs/acdc-gpu}
  CROPPED=$RUN-data
  $PY recipes/gemini-acdc/crop_acdc.py "$ACDC" "$CROPPED"
  sed "s#/tmp/acdc_cache#$RUN-cache#" recipes/gemini-acdc/gpu.json > "$RUN.config.json"
  $PY -m gemini_cmr.cli.main train gemini --data "acdc:$CROPPED" --out "$RUN" --config "$RUN.config.json" \
    --device cuda --max-steps 1066 --seed 0
  $PY - "$RUN" <<'PYEOF'
import sys
from gemini_cmr.core.models.store import load_model, save_model
from gemini_cmr.core.resources import acdc_model_path
run = sys.argv[1]
m = load_model(f"{run}/best")
cfg = {k: v for k, v in m.config.items() if k not in ("kind", "version", "model", "weights_dtype")}
cfg["training"]["command"] = f"recipes/gemini-acdc/train.sh --gpu ACDC {run}"
cfg["licence"] = ("Research weights trained on ACDC (Bernard et al., IEEE TMI 37(11) 2018): non-commercial "
                  "research use only; citing that paper is mandatory. See LICENCE.md in this folder.")
cfg["inference"] = {"roi_mm": 176, "keep_largest_heart_component": True, "heart_component_by": "ventricle"}
save_model(acdc_model_path(), m.generator, cfg, half=True)
print("exported", acdc_model_path())
PYEOF
  $PY scripts/eval_acdc.py --data "$ACDC" --json "$RUN/val_metrics.json"
  exit 0
fi
ACDC=${1:-../shared/data/acdc/training}
RUN=${2:-runs/acdc-a2d}
STEPS=${3:-200}
STEPS2=${4:-560}
export OMP_NUM_THREADS=1
$PY -m gemini_cmr.cli.main train gemini --data "acdc:$ACDC" --out "$RUN" --config recipes/gemini-acdc/cpu_stage1.json \
  --device cpu --seed 0 --threads 1 --max-steps "$STEPS"
$PY -m gemini_cmr.cli.main train gemini --data "acdc:$ACDC" --out "$RUN" --config recipes/gemini-acdc/cpu_stage2.json \
  --device cpu --seed 0 --threads 1 --max-steps "$STEPS2" --resume
$PY - "$RUN" "$STEPS" "$STEPS2" <<'PYEOF'
import sys
from gemini_cmr.core.models.store import load_model, save_model
from gemini_cmr.core.resources import acdc_model_path
run, steps, steps2 = sys.argv[1], sys.argv[2], sys.argv[3]
m = load_model(f"{run}/best")
cfg = {k: v for k, v in m.config.items() if k not in ("kind", "version", "model", "weights_dtype")}
cfg["training"]["command"] = f"recipes/gemini-acdc/train.sh ACDC {run} {steps} {steps2}"
cfg["licence"] = ("Research weights trained on ACDC (Bernard et al., IEEE TMI 37(11) 2018): non-commercial "
                  "research use only; citing that paper is mandatory. See LICENCE.md in this folder.")
cfg["inference"] = {"keep_largest_heart_component": True, "heart_component_by": "myocardium"}  # core/postprocess.py
save_model(acdc_model_path(), m.generator, cfg, half=True)
print("exported", acdc_model_path())
PYEOF
$PY scripts/eval_acdc.py --data "$ACDC" --json "$RUN/val_metrics.json"
