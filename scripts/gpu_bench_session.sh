#!/usr/bin/env bash
# One lent-GPU call for issue 11's GPU figures (session 7), everything written under $OUT:
#   1. the CUDA tests (tests/core/models: the CUDA-only test compares the GPU prediction with the CPU's);
#   2. benchmarks/bench_gpu_variants.py: placement on the device vs the host, batches 4/10/20,
#      cudnn.benchmark, channels_last, bf16/fp16, and a torch.profiler table of one cine;
#   3. `gemini-cmr bench --device cuda --no-meshes --repeat 5 --json` with the default batch and batch 20;
#   all packed into $OUT/results.tgz (variants.log and session.log also beside it).
# Usage (repository root; the GPU image lacks nibabel/pydicom: carry their wheels in .whl):
#   OUT=/tmp/gpu_out scripts/gpu_bench_session.sh
# Env: VARIANTS=0 (skip step 2), BATCHES ("default 20": the bench's batch sizes, "default" = the predictor's).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
FINAL=${OUT:-/tmp/gpu_out}
OUT=${WORK:-/tmp/gpu_bench}  # everything here, packed into $FINAL/results.tgz (a lent machine returns <= 8 files)
mkdir -p "$OUT" "$FINAL"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! $PY -c "import nibabel, pydicom" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/session.log"; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/session.log"
say "tests"
timeout 180 $PY -m pytest -q -x -p no:cacheprovider tests/core/models/test_predict.py tests/core/models/test_acquired.py \
  tests/core/test_geometry.py > "$OUT/tests.log" 2>&1; echo "tests rc $?" | tee -a "$OUT/session.log"
if [ "${VARIANTS:-1}" = 1 ]; then
say "variants"
timeout 240 $PY benchmarks/bench_gpu_variants.py --device cuda --repeat 7 --json "$OUT/variants.json" \
  --profile "$OUT/profile.txt" > "$OUT/variants.log" 2>&1; echo "variants rc $?" | tee -a "$OUT/session.log"
fi
for b in ${BATCHES:-default 20}; do
  say "bench batch $b"
  extra=(); [ "$b" != default ] && extra=(--batch-size "$b")
  timeout 120 $PY -m gemini_cmr.cli.main bench --device cuda --no-meshes --repeat 5 --json "${extra[@]}" \
    > "$OUT/bench_$b.json" 2> "$OUT/bench_$b.err"; echo "bench $b rc $?" | tee -a "$OUT/session.log"
done
say "done"
tar czf "$FINAL/results.tgz" -C "$OUT" . && cp "$OUT"/*.log "$FINAL/" 2>/dev/null
[ -f "$OUT/variants.log" ] && tail -n 25 "$OUT/variants.log"; tail -n 3 "$OUT/tests.log"
