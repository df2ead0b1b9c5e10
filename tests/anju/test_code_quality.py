"""The checks a reviewer would run, as part of the suite CI runs: the layers between domains
(import-linter's contract in pyproject.toml), ruff's lint and format, and mypy over the packages.
Each failure prints the tool's own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _run(*command: str, timeout: float = 600) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


def test_domains_import_downwards_only() -> None:
    _run(str(BIN / "lint-imports"))


def test_ruff_finds_nothing() -> None:
    _run(str(BIN / "ruff"), "check", ".")
    _run(str(BIN / "ruff"), "format", "--check", ".")


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    _run(str(BIN / "mypy"))  # the packages listed in pyproject.toml; a cold run takes about a minute
