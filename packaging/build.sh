#!/usr/bin/env bash
# Build the one-folder desktop bundle dist/gemini-cmr/ with PyInstaller (Linux; Windows and macOS use the
# same spec, see docs/packaging.md). Usage: packaging/build.sh   (or `make package`)
#   PY=path/to/python  interpreter of the build environment (default .venv/bin/python)
#   CLEAN=1            discard PyInstaller's analysis cache (build/pyinstaller) first
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if ! "$PY" -c "import PyInstaller, _pyinstaller_hooks_contrib" 2>/dev/null; then
    echo "build.sh: PyInstaller is not installed; run: $PY -m pip install -e '.[package]'" >&2
    exit 1
fi
# One Qt binding only, and torch's CPU build: otherwise the bundle collects the wrong Qt or ~3 GB of CUDA.
"$PY" - <<'PYEOF'
import importlib.util
import sys

others = [m for m in ("PyQt5", "PyQt6", "PySide2") if importlib.util.find_spec(m)]
if others:
    sys.exit(f"build.sh: other Qt bindings are installed ({', '.join(others)}); build from an environment with PySide6 only")
import torch

if torch.version.cuda:
    print(f"build.sh: warning: torch {torch.__version__} is a CUDA build; the bundle will carry CUDA libraries",
          file=sys.stderr)
PYEOF

args=(--noconfirm --distpath dist --workpath build/pyinstaller)
[[ "${CLEAN:-0}" == 1 ]] && args+=(--clean)
rm -rf dist/gemini-cmr
start=$(date +%s)
nice -n "${NICE:-10}" "$PY" -m PyInstaller "${args[@]}" packaging/gemini-cmr.spec

# Desktop integration files next to the executable (Linux).
out=dist/gemini-cmr
cp packaging/gemini-cmr.desktop packaging/install_desktop_entry.sh "$out/"
cp resources/icons/gemini-cmr.png resources/icons/gemini-cmr.svg "$out/"
chmod +x "$out/install_desktop_entry.sh"

echo "build.sh: built $out/gemini-cmr in $(( $(date +%s) - start )) s"
echo "build.sh: bundle size: $(du -sh "$out" | cut -f1) ($(find "$out" -type f | wc -l) files)"
