#!/usr/bin/env bash
# Install everything (as scripts/install.sh) and run the whole test suite. Extra arguments go to pytest.
# The tests use PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379, and start the machine's
# own servers when nothing answers there.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/pytest "$@"
