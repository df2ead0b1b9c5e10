#!/usr/bin/env bash
# Install everything (as scripts/install.sh) and run the whole test suite. Extra arguments go to pytest.
# The tests use PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379, and start the machine's
# own servers when nothing answers there. The browser tests (tests/browser) need Debian's chromium:
# installed here when /usr/bin/chromium is missing (as root; otherwise those tests fail under CI).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/ensure-chromium.sh || true  # it says what is missing; tests/browser then fails (CI) or skips
# Two test processes (pytest-xdist): most tests wait on servers, workers and timers, so two share
# the machine's CPUs well (13 min instead of 22 on 2 vCPUs). Each gets its own Redis database and
# PostgreSQL database. ANJU_TEST_PROCESSES=0 runs the suite in this one process.
exec .venv/bin/pytest -n "${ANJU_TEST_PROCESSES:-2}" "$@"
