#!/usr/bin/env sh
# Set up latentgraph in ./.venv: CPU torch 2.13.0 (unless a torch is already there), then the
# package with its test and editor extras. Safe to run again.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test,editor]"
echo "latentgraph installed in .venv"
