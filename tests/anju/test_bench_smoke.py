"""Benchmarks that nobody runs rot: each bench script with a smoke mode runs here, in seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_message_understanding_bench_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.message_understanding", "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_UNDERSTANDING "))
    result = json.loads(line.removeprefix("BENCH_UNDERSTANDING "))
    assert result["texts"] == 40 and result["routing_plus_sentiment_ms"]["p50"] > 0


def test_sentiment_cv_bench_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sentiment_cv", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "BENCH_SENTIMENT_CV " in done.stdout
