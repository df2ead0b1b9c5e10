#!/usr/bin/env bash
# Create .venv and install anju with everything it needs. Safe to run again.
# torch is pinned first: anything that later depends on it must find 2.13.0 (a CPU build)
# already installed, or pip would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip 2>&1 | grep -v "is ignored" || true
"${PIP[@]}" "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
"${PIP[@]}" -c constraints.txt -e ".[dev]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import importlib.metadata as m; v = m.version('torch'); assert v.startswith('2.13.0'), v"
