#!/usr/bin/env bash
# Fine-tune the shipped ACDC research model on two Sunnybrook GE series (LV contours only: no RV, the
# myocardium on some phases) and compare it with the shipped model on the third series; then measure what
# the fine-tuned model keeps on ACDC (docs/real-data.md, "Fine-tuning on your own studies").
#
#   scripts/finetune_sunnybrook.sh [RUN] [SUNNYBROOK] [ACDC]
#   defaults: data/finetune-sunnybrook-NNN (NNN from HOLDOUT, e.g. -401), ../shared/data/sunnybrook, ../shared/data/acdc/training
#
# HOLDOUT=SCD0000401 (the default) holds that series out; the two others fine-tune. SCD0000501's epicardial
# contour files are copies of SCD0000101's (core.io.contours refuses them), so it trains and scores on its LV
# cavity only and cannot show the myocardium when held out.
# Seed 0, CPU, 2 threads; the recipe is `finetune_config` (core/train/semi.py) for 4 training stacks;
# CONFIG=FILE adds a training config's keys over it.
set -euo pipefail
SB=$(cd "${2:-../shared/data/sunnybrook}" && pwd)
ACDC=${3:-../shared/data/acdc/training}
BIN=${BIN:-.venv/bin}
HOLDOUT=${HOLDOUT:-SCD0000401}
case "$HOLDOUT" in
  SCD0000101) HOLD_CONTOURS=SC-HF-I-1 ;;
  SCD0000401) HOLD_CONTOURS=SC-HF-I-5 ;;
  SCD0000501) HOLD_CONTOURS=SC-HF-I-6 ;;
  *) echo "HOLDOUT must be SCD0000101, SCD0000401 or SCD0000501" >&2; exit 2 ;;
esac
RUN=${1:-data/finetune-sunnybrook-${HOLDOUT#SCD0000}}
CONFIG_ARGS=()
if [ -n "${CONFIG:-}" ]; then CONFIG_ARGS=(--config "$CONFIG"); fi
mkdir -p "$RUN"
cat > "$RUN/subjects.json" <<EOF
{"subjects": [
  {"id": "SCD0000101", "image": "$SB/SCD0000101", "contours": "$SB/contours/SC-HF-I-1", "group": "HF-I"},
  {"id": "SCD0000401", "image": "$SB/SCD0000401", "contours": "$SB/contours/SC-HF-I-5", "group": "HF-I"},
  {"id": "SCD0000501", "image": "$SB/SCD0000501", "contours": "$SB/contours/SC-HF-I-6", "group": "HF-I"}
]}
EOF
start=$(date +%s)
"$BIN/gemini-cmr" train gemini --data "pairs:$RUN/subjects.json" --init gemini-acdc --holdout "$HOLDOUT" \
    --out "$RUN" --device cpu --threads 2 --seed 0 "${CONFIG_ARGS[@]}"
echo "fine-tuning and the before/after comparison: $(( $(date +%s) - start )) s"
# the held-out series with the existing contour protocol (scripts/eval_sunnybrook.py)
"$BIN/python" scripts/eval_sunnybrook.py --study "$SB/$HOLDOUT" --contours "$SB/contours/$HOLD_CONTOURS" \
    --model resources/models/gemini-acdc --model "$RUN/model" --threads 2
# forgetting: the 20 ACDC validation patients, shipped and fine-tuned model
for model in resources/models/gemini-acdc "$RUN/model"; do
    "$BIN/python" scripts/eval_acdc.py --model "$model" --data "$ACDC" --threads 2 \
        --json "$RUN/acdc-$(basename "$(dirname "$model")")-$(basename "$model").json"
done
