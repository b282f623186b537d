#!/usr/bin/env bash
# One fold of the shipped recipe's 5-fold cross-validation, both stages, then its results saved to
# benchmarks/results (recipes/gemini-acdc/README.md):
#   1. stage 1, ablations/steps2400_robust.json (`train cv --only K`, runs/abl-steps2400-robust/foldK);
#   2. stage 2, ablations/steps2400_robust_dropped.json from that fold's stage-1 model
#      (runs/abl-steps2400-robust-dropped/foldK);
#   3. both stages' held-out rows saved with save_fold.py (cv_steps2400_robust_{stage1,dropped}_foldK.json) and
#      the dropped-slice test of the stage-2 fold model on the fold's first 10 patients (dropped_robust_foldK.json).
# Every step resumes or is reused: training continues from its last checkpoint, a finished fold's evaluation is
# kept, so rerunning after an interruption (or after it finished) picks up where it stopped. The training runs
# from a copy of the sources (runs/snapshot, made when missing) so that editing core/ meanwhile cannot break the
# evaluation that runs after the last step. About 1 h 55 min on 2 idle CPU cores.
# Pool the folds afterwards with pool_folds.py and put them on the shipped model's card with export_cv.py
# (the commands are in recipes/gemini-acdc/README.md).
# STAGE2=heads runs the heads-only stage 2 candidate (ablations/steps2400_robust_dropped_heads.json, about 7 min)
# in place of the shipped stage 2 (runs/abl-steps2400-robust-dropped-heads/foldK,
# cv_steps2400_robust_dropped_heads_foldK.json, dropped_robust_heads_foldK.json); stage 1 is the same.
# Usage: [STAGE2=shipped|heads] recipes/gemini-acdc/run_fold.sh K [ACDC_TRAINING_DIR]   (in the background:
#   (OMP_WAIT_POLICY=ACTIVE setsid nohup recipes/gemini-acdc/run_fold.sh K >> runs/fold_K.log 2>&1 &) )
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${1:?usage: run_fold.sh K [ACDC_TRAINING_DIR]}
ACDC=${2:-../shared/data/acdc/training}
PY=${PY:-.venv/bin/python}
SNAP=runs/snapshot
if [ ! -d "$SNAP/gemini_cmr/core" ]; then
  mkdir -p "$SNAP/gemini_cmr.tmp"
  cp -r app cli core resources "$SNAP/gemini_cmr.tmp/"
  touch "$SNAP/gemini_cmr.tmp/__init__.py"
  mv "$SNAP/gemini_cmr.tmp" "$SNAP/gemini_cmr"
fi
S1=recipes/gemini-acdc/ablations/steps2400_robust.json
case "${STAGE2:-shipped}" in
  shipped) TAG=dropped; WHAT2="stage 2 of the shipped recipe (ablations/steps2400_robust_dropped.json" ;;
  heads) TAG=dropped_heads; WHAT2="heads-only stage 2 (ablations/steps2400_robust_dropped_heads.json" ;;
  *) echo "STAGE2 must be shipped or heads, not ${STAGE2}" >&2; exit 2 ;;
esac
S2=recipes/gemini-acdc/ablations/steps2400_robust_$TAG.json
OUT2=runs/abl-steps2400-robust-${TAG//_/-}
CMD1="gemini-cmr train cv --data acdc:$ACDC --config $S1 --out runs/abl-steps2400-robust --only $K --threads 2"
CMD2="gemini-cmr train cv --data acdc:$ACDC --config $S2 --out $OUT2 --only $K --threads 2"
# shellcheck disable=SC2086
PYTHONPATH=$SNAP $PY -m gemini_cmr.cli.main ${CMD1#gemini-cmr }
# shellcheck disable=SC2086
PYTHONPATH=$SNAP $PY -m gemini_cmr.cli.main ${CMD2#gemini-cmr }
# Stage-1 rows already saved from another training of this fold are kept; a retrained model with other weights
# (another CPU, another torch) gets its own file, named by its model id, and stage 2 is described from it.
S1_OUT="benchmarks/results/cv_steps2400_robust_stage1_fold$K.json"
S1_ID=$(sha256sum "runs/abl-steps2400-robust/fold$K/model/model.safetensors" | cut -c1-12)
if [ -s "$S1_OUT" ] && [ "$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['model_id'])" "$S1_OUT")" != "$S1_ID" ]; then
  S1_OUT="benchmarks/results/cv_steps2400_robust_stage1_fold${K}_$S1_ID.json"
  echo "fold $K: stage-1 model $S1_ID differs from the one in the saved rows; its rows go to $S1_OUT"
fi
if [ ! -s "$S1_OUT" ]; then
  $PY recipes/gemini-acdc/save_fold.py runs/abl-steps2400-robust "$K" "$S1_OUT" --command "$CMD1" \
    --what "stage 1 of the shipped recipe (ablations/steps2400_robust.json), fold $K: its 20 held-out patients scored by the fold model"
fi
$PY recipes/gemini-acdc/save_fold.py "$OUT2" "$K" \
  "benchmarks/results/cv_steps2400_robust_${TAG}_fold$K.json" --command "$CMD2" \
  --what "$WHAT2, from fold $K's stage-1 model $S1_ID), fold $K: its 20 held-out patients scored by the fold model"
OUT="benchmarks/results/${TAG/dropped/dropped_robust}_fold$K.json"
if [ ! -s "$OUT" ]; then
  $PY -m gemini_cmr.cli.main evaluate dropped-slices --data "$ACDC" --fold "$K" --limit 10 \
    --model "$OUT2/{fold}/model" --motion-correction on --json > "$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
fi
echo "fold $K done: $(ls benchmarks/results/*_fold"$K".json | tr '\n' ' ')"
