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
