#!/usr/bin/env bash
# Install the Debian/Ubuntu system libraries Qt, VTK (EGL) and Xvfb need, only where missing.
# Runs apt-get only as root; otherwise prints the command for the user.
# --optional: packages only some tests need; a failure to install them is a warning, not an error.
set -euo pipefail
optional=0
if [ "${1:-}" = "--optional" ]; then optional=1; shift; fi
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "gemini-cmr: not a Debian/Ubuntu system; please install the equivalents of: ${missing[*]}" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "gemini-cmr: missing system packages: ${missing[*]}" >&2
  echo "  run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "Installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [ "$optional" -eq 1 ]; then
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "gemini-cmr: could not install ${missing[*]}; the tests that need them will be skipped" >&2
  fi
  exit 0
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
