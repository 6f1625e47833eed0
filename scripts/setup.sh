#!/usr/bin/env bash
# Creates .venv (if needed) and installs MFM Studio into it, torch pinned to the CPU build.
# Usage: bash scripts/setup.sh [test]    ("test" adds the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 first and in the same resolve: a bare "torch" could pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".${extras}"

# Qt's xcb platform plugin needs system libraries that pip cannot install. Ask ldd what it lacks
# (mfm_viewer/logic/qt_libs.py maps each missing library to its Debian package) and install those.
if [ "$(uname -s)" = Linux ]; then
  qt_missing=$(.venv/bin/python -m mfm_viewer.logic.qt_libs 2>/dev/null || true)
  if [ -n "$qt_missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "setup: installing Qt's system libraries: $qt_missing"
      if ! apt_log=$( (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $qt_missing) 2>&1 ); then
        echo "$apt_log" >&2
        echo "setup: could not install $qt_missing; run: apt-get install $qt_missing" >&2
      fi
    elif command -v sudo >/dev/null && command -v apt-get >/dev/null \
      && { [ "${MFM_SETUP_SUDO:-}" = yes ] || { [ -t 0 ] && [ -t 1 ] \
        && read -r -p "setup: Qt's window needs $qt_missing; install with sudo apt-get now? [y/N] " answer \
        && [ "$answer" = y -o "$answer" = Y ]; }; }; then
      sudo apt-get install -y $qt_missing || echo "setup: sudo apt-get install $qt_missing failed; the viewer may not open a window" >&2
    else
      echo "setup: the viewer's window needs system libraries that Qt's xcb plugin lacks here. Run:"
      echo "  sudo apt-get install $qt_missing"
      echo "(or MFM_SETUP_SUDO=yes bash scripts/setup.sh to let this script run it with sudo)"
    fi
  fi
fi
