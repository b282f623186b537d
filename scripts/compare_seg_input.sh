#!/usr/bin/env bash
# Softmax probabilities vs one-hot argmax as the segmentation input of D_SR (docs/gemini.md).
# Two short trainings from scratch, identical except `seg_input`, run side by side (1 thread each),
# then both `best` models are evaluated on the validation split.
# Usage: scripts/compare_seg_input.sh [DATA_DIR] [OUT_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=${1:-data/phantoms}
OUT=${2:-runs/seg-input}
STEPS=${3:-100}
CACHE=${CACHE:-runs/cache}  # preprocessed samples shared by both runs
mkdir -p "$OUT"
for mode in softmax argmax; do
  $PY - "$mode" "$STEPS" "$CACHE" > "$OUT/$mode.json" <<'PYEOF'
import json, sys
cfg = json.load(open("recipes/gemini-phantom-sac/stage1.json"))
cfg.update(seg_input=sys.argv[1], max_steps=int(sys.argv[2]), num_threads=1, crop=64, val_every=1000,
           checkpoint_every=1000, cache_dir=sys.argv[3])
print(json.dumps(cfg))
PYEOF
  $PY -m gemini_cmr.cli.main train gemini --data "$DATA" --out "$OUT/$mode" --config "$OUT/$mode.json" \
    --device cpu --progress-json > "$OUT/$mode.jsonl" 2> "$OUT/$mode.err" &
done
wait
for mode in softmax argmax; do
  echo "== $mode"
  $PY scripts/eval_gemini.py --model "$OUT/$mode/best" --data "$DATA" --split val --threads 1 \
    --json "$OUT/$mode-val.json"
done
