#!/usr/bin/env bash
# Add Gemini CMR to the desktop menu of the current user (run from inside the unpacked bundle folder,
# dist/gemini-cmr/): a .desktop file whose Exec points at this folder, and the icon. No root needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/gemini-cmr.png" "$icons/gemini-cmr.png"
sed -e "s|^Exec=gemini-cmr |Exec=\"$here/gemini-cmr\" |" -e "s|^TryExec=gemini-cmr|TryExec=$here/gemini-cmr|" \
    "$here/gemini-cmr.desktop" > "$apps/gemini-cmr.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$apps" || true
echo "installed $apps/gemini-cmr.desktop (Exec $here/gemini-cmr)"
