#!/usr/bin/env bash
# Smoke test of the desktop bundle built by packaging/build.sh (`make package-smoke`):
#   1. `gemini-cmr --version` prints this source tree's version;
#   2. `gemini-cmr info` and `super-resolve --dicom` run headless on the demo study shipped inside the bundle
#      and write every output (images, labels, meshes, phenotypes, DICOM series that load back, run record);
#      a JPEG Lossless DICOM cine (made by the source tree, SRC_PY) loads in the bundle with the same pixels;
#   3. `gemini-cmr view DEMO --super-resolve --screenshot OUT.png --quit` opens the window under Xvfb
#      (QT_QPA_PLATFORM=xcb) and the screenshot is checked to be non-blank;
#   4. with SMOKE_TRAIN=1, `synth` + a 2-step `train gemini` (what the app's training wizard runs).
# The bundle runs from an empty folder with a minimal environment (no PYTHONPATH, no venv, HOME in a
# temporary folder), so it cannot fall back on this source tree.
# Usage: packaging/smoke_test.sh [BUNDLE_DIR (default dist/gemini-cmr)] ; KEEP=DIR keeps the outputs there.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=$(cd "${1:-dist/gemini-cmr}" 2>/dev/null && pwd) || { echo "smoke: no bundle folder ${1:-dist/gemini-cmr}: run make package" >&2; exit 1; }
EXE="$BUNDLE/gemini-cmr"
[[ -x "$EXE" ]] || { echo "smoke: $EXE is missing: run make package" >&2; exit 1; }
PYCHECK=${PYCHECK:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/gemini-smoke.XXXXXX")
if [[ -n "${KEEP:-}" ]]; then mkdir -p "$KEEP"; fi
cleanup() { if [[ -n "${KEEP:-}" ]]; then cp -r "$work"/. "$KEEP"/; fi; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/home"
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
run() {  # run the bundle in the empty work folder with a minimal environment
    (cd "$work" && env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work/home" LANG=C.UTF-8 \
        OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" ${DISPLAY:+DISPLAY=$DISPLAY} "$@")
}
t() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(t)" 'BEGIN { printf "%.1f", b - a }'; }

# Demo study: the copy inside the bundle (proves the resources were collected).
DEMO=$(find "$BUNDLE" -path '*/resources/demo/demo_study.nii.gz' | head -1)
[[ -n "$DEMO" ]] || fail "the demo study is not in the bundle"
[[ -n $(find "$BUNDLE" -path '*/resources/models/gemini-phantom/model.safetensors') ]] || fail "the bundled model is missing"
if [[ -n $(find "$BUNDLE" \( -name 'libcudart*' -o -name 'libcudnn*' -o -name 'libnccl*' -o -name 'libcublas*' \) | head -1) ]]; then
    fail "CUDA libraries in the bundle"
fi
echo "smoke: bundle $BUNDLE: $(du -sh "$BUNDLE" | cut -f1)"

# 1. --version
want="gemini-cmr $(sed -n 's/^__version__ = "\(.*\)"/\1/p' core/__init__.py)"
s=$(t); got=$(run "$EXE" --version) || fail "--version exited $?"
[[ "$got" == "$want" ]] || fail "--version printed '$got', expected '$want'"
echo "smoke: ok   --version -> $got ($(secs "$s") s)"

# 2. headless pipeline
s=$(t); run "$EXE" info "$DEMO" > "$work/info.txt" || fail "info exited $?"
echo "smoke: ok   info ($(secs "$s") s): $(head -1 "$work/info.txt")"
s=$(t)
run env QT_QPA_PLATFORM=offscreen "$EXE" super-resolve "$DEMO" --out "$work/sr" --dicom > "$work/sr.log" 2>&1 \
    || { cat "$work/sr.log" >&2; fail "super-resolve exited non-zero"; }
for f in sr_image.nii.gz sr_labels.nii.gz lr_labels.nii.gz phenotypes.json phenotypes.csv run.json \
         meshes/ed_lv_cavity.stl meshes/ed_lv_myocardium.stl meshes/ed_rv_cavity.stl meshes/es_lv_cavity.stl \
         qc.png dicom/qc/QC.dcm; do
    [[ -s "$work/sr/$f" ]] || fail "super-resolve did not write $f"
done
grep -q '"lv_ef_pct"' "$work/sr/phenotypes.json" || fail "phenotypes.json has no ejection fraction"
# the DICOM outputs (SR series in JPEG-LS through CharLS, segmentations through highdicom) load back
[[ $(find "$work/sr/dicom" -name 'MR_*.dcm' | wc -l) -gt 0 ]] || fail "super-resolve --dicom wrote no SR series"
run "$EXE" info "$work/sr/dicom" > "$work/sr_dicom_info.txt" 2>&1 || { cat "$work/sr_dicom_info.txt" >&2; fail "info cannot read the SR series"; }
echo "smoke: ok   super-resolve ($(secs "$s") s): $(cd "$work/sr" && find . -type f | wc -l) files, $(du -sh "$work/sr" | cut -f1)"

# 2b. compressed DICOM: a JPEG Lossless (SV1) cine, the PACS export syntax only GDCM decodes, made by the
# source tree's environment (SRC_PY), must load in the bundle with the same pixels
SRC_PY=${SRC_PY:-.venv/bin/python}
s=$(t)
"$SRC_PY" packaging/make_smoke_dicom.py "$work/jpegll" > "$work/jpegll.log" 2>&1 \
    || { cat "$work/jpegll.log" >&2; fail "could not make the JPEG Lossless study with $SRC_PY"; }
run "$EXE" info "$work/jpegll" --json > "$work/jpegll_info.json" 2> "$work/jpegll_info.err" \
    || { cat "$work/jpegll_info.err" >&2; fail "info on the JPEG Lossless study exited non-zero"; }
"$PYCHECK" - "$work/jpegll_info.json" "$work/jpegll.expected.json" <<'PYEOF' || fail "the JPEG Lossless study decoded differently in the bundle"
import json, sys
got, want = (json.load(open(p)) for p in sys.argv[1:3])
ok = got["shape"] == want["shape"] and abs(got["intensity"]["sum"] - want["pixel_sum"]) <= 1e-6 * abs(want["pixel_sum"])
print(f"shape {got['shape']} sum {got['intensity']['sum']:.6g} (expected {want['shape']} {want['pixel_sum']:.6g})")
sys.exit(0 if ok else 1)
PYEOF
echo "smoke: ok   JPEG Lossless DICOM decoded by the bundle ($(secs "$s") s)"

# 3. the window under Xvfb
command -v xvfb-run >/dev/null || fail "xvfb-run is not installed (apt-get install xvfb xauth)"
s=$(t)
run xvfb-run -a -s "-screen 0 1920x1200x24" env QT_QPA_PLATFORM=xcb "$EXE" view "$DEMO" --super-resolve \
    --screenshot "$work/window.png" --quit --size 1600x1000 > "$work/view.log" 2>&1 \
    || { cat "$work/view.log" >&2; fail "view exited non-zero"; }
[[ -s "$work/window.png" ]] || { cat "$work/view.log" >&2; fail "no screenshot written"; }
# A part of the window that could not load (the 3D view needs VTK's OpenGL modules) shows a placeholder
# and logs a traceback: the screenshot alone would not tell.
if grep -qE "Traceback|unavailable|ModuleNotFoundError|ImportError" "$work/view.log"; then cat "$work/view.log" >&2; fail "view logged an error"; fi
"$PYCHECK" packaging/check_png.py "$work/window.png" --min-size 1200x800 || fail "the screenshot looks blank"
echo "smoke: ok   view under Xvfb ($(secs "$s") s)${KEEP:+, screenshot $KEEP/window.png}"

# 4. (SMOKE_TRAIN=1, about 2 more minutes) the training path the app's wizard runs in a separate process
if [[ "${SMOKE_TRAIN:-0}" == 1 ]]; then
    s=$(t)
    run "$EXE" synth "$work/phantoms" --subjects 6 --seed 0 > "$work/synth.log" 2>&1 || { cat "$work/synth.log" >&2; fail "synth exited non-zero"; }
    run "$EXE" train gemini --data "$work/phantoms" --out "$work/run" --max-steps 2 --progress-json > "$work/train.log" 2>&1 \
        || { tail -20 "$work/train.log" >&2; fail "train gemini exited non-zero"; }
    grep -q '"event": "done"' "$work/train.log" || fail "training did not report done"
    [[ -s "$work/run/best/model.safetensors" && -s "$work/run/best/config.json" ]] || fail "no best checkpoint written"
    echo "smoke: ok   synth + train gemini, 2 steps ($(secs "$s") s)"
fi
echo "smoke: all checks passed"
