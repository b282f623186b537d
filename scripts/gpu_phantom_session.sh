#!/usr/bin/env bash
# One lent-GPU session for the phantom models (issues 5 and 11), everything under one wall-clock budget:
#   1. `gemini-cmr bench --device cuda --no-meshes --repeat 5 --json` for the bundled model and the
#      optional slices-as-channels phantom model (issue 11's GPU figure);
#   2. the 40-subject phantom dataset (`gemini-cmr synth --seed 0 --workers N`, the same files as
#      data/phantoms) and its training cache, built in parallel;
#   3. two fine-tuning runs side by side on the one GPU, each stopped by SIGINT at the deadline at the
#      latest (the loop then writes its last checkpoint; the best validation checkpoint is kept):
#      scripts/gemini_phantom_a2d_gpu.json (acquired-2d, from resources/models/gemini-phantom) and
#      scripts/gemini_phantom_sac_gpu.json (slices-as-channels, from resources/models/gemini-phantom-sac);
#      (in session 5 these started from the then acquired-2d and default models: docs/gemini.md)
#   4. both best checkpoints exported (float16) and evaluated on the test split (scripts/eval_gemini.py).
# Usage (repository root; OUT = where results go):
#   OUT=/tmp/gpu_out TRAIN_S=300 scripts/gpu_phantom_session.sh
# Env: PY (python), OUT, TRAIN_S (seconds for the training runs), WORKERS (synth processes),
#      DEVICE (cuda), STEPS (max steps, overrides the configs), SUBJECTS (40), SKIP_BENCH=1,
#      RUNS (configs scripts/gemini_phantom_<name>_gpu.json to train side by side; default "a2d sac"),
#      EVAL=0 (no test-split evaluation). Everything under OUT is also packed into OUT/results.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_out}
TRAIN_S=${TRAIN_S:-300}
WORKERS=${WORKERS:-14}
DEVICE=${DEVICE:-cuda}
SUBJECTS=${SUBJECTS:-40}
RUNS=${RUNS:-a2d sac}
EVAL=${EVAL:-1}
WORK=${WORK:-/tmp/gpu_work}
mkdir -p "$OUT" "$WORK"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/session.log"; }
if [ -d .whl ] && ! $PY -c "import nibabel, pydicom" 2>/dev/null; then
  $PY -m pip install -q --no-deps --target "$WORK/site" .whl/*.whl && export PYTHONPATH="$WORK/site:$PWD"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/session.log"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  say "bench: bundled model"
  $PY -m gemini_cmr.cli.main bench --device "$DEVICE" --no-meshes --repeat 5 --json > "$OUT/bench_default.json" 2> "$OUT/bench_default.err"
  say "bench: slices-as-channels phantom model"
  $PY -m gemini_cmr.cli.main bench --device "$DEVICE" --no-meshes --repeat 5 --json \
    --model resources/models/gemini-phantom-sac > "$OUT/bench_sac.json" 2> "$OUT/bench_sac.err"
fi

say "synth $SUBJECTS subjects, $WORKERS processes"
$PY -m gemini_cmr.cli.main synth "$WORK/phantoms" --subjects "$SUBJECTS" --seed 0 --phases 20 --workers "$WORKERS" \
  --quiet --force > /dev/null
say "training cache"
$PY -c "
import sys
from gemini_cmr.core.train.data import load_split
work = sys.argv[1]
load_split(f'{work}/phantoms', 'train', cache_dir=f'{work}/cache', max_phases=10, workers=14)
load_split(f'{work}/phantoms', 'val', cache_dir=f'{work}/cache', max_phases=2, workers=6)
" "$WORK"

left=$(( TRAIN_S - ($(date +%s) - T0) ))
[ "$left" -lt 60 ] && left=60
say "training, both runs stopped at the latest in $left s"
for name in $RUNS; do
  sed "s#/tmp/cache_phantoms#$WORK/cache#" "scripts/gemini_phantom_${name}_gpu.json" > "$WORK/$name.json"
  extra=()
  [ -n "${STEPS:-}" ] && extra=(--max-steps "$STEPS")
  timeout -s INT "$left" $PY -m gemini_cmr.cli.main train gemini --data "$WORK/phantoms" --out "$WORK/run-$name" \
    --config "$WORK/$name.json" --device "$DEVICE" --seed 1 "${extra[@]}" > "$OUT/train_$name.log" 2>&1 &
done
wait
say "export and evaluate"
for name in $RUNS; do
  cp "$WORK/run-$name/history.json" "$OUT/history_$name.json" 2>/dev/null
  $PY scripts/export_model.py "$WORK/run-$name/best" "$OUT/model-$name" \
    --command "OUT=... scripts/gpu_phantom_session.sh (scripts/gemini_phantom_${name}_gpu.json, seed 1)" \
    >> "$OUT/session.log" 2>&1
done
[ "$EVAL" = 1 ] && for name in $RUNS; do
  [ -d "$OUT/model-$name" ] && $PY scripts/eval_gemini.py --model "$OUT/model-$name" --data "$WORK/phantoms" \
    --split test --device "$DEVICE" --threads 4 --json "$OUT/eval_$name.json" > "$OUT/eval_$name.txt" 2>&1 &
done
wait
say "done"
# one archive of everything (a lent machine returns only a few files)
tar czf "$WORK/results.tgz" -C "$OUT" . && mv "$WORK/results.tgz" "$OUT/results.tgz"
