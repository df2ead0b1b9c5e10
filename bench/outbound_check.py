"""What the outbound check (core.outbound) costs a request: a group-robot POST through
``core.outbound.send`` against plain ``httpx.post`` (what core.notify did before), each opening a
new connection, to the fake robot of the tests on 127.0.0.1 (allowed by host:port); and how long a
refused request takes (no connection is opened).

    .venv/bin/python -m bench.outbound_check            # 300 requests each
    .venv/bin/python -m bench.outbound_check --requests 1000
    .venv/bin/python -m bench.outbound_check --smoke     # 20 requests each: checks the script runs

Prints a line per way of sending and, last, one JSON line ``BENCH_OUTBOUND_CHECK {...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

import httpx

from core import outbound
from tests.robots import FakeRobot

BODY = {"msgtype": "markdown", "markdown": {"content": "bench"}}


def timed(call: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def refused_send() -> None:
    with contextlib.suppress(outbound.OutboundRefused):
        outbound.send(outbound.OutboundPolicy(), "POST", "http://2130706433:6379/", json=BODY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="20 requests each: checks the script runs")
    args = parser.parse_args()
    n = 20 if args.smoke else args.requests
    result: dict[str, dict[str, float]] = {}
    with FakeRobot() as robots:
        url = robots.url("wecom", "bench")
        policy = outbound.OutboundPolicy.parse([f"127.0.0.1:{robots.port}"])
        calls: dict[str, Callable[[], object]] = {
            "httpx.post (before)": lambda: httpx.post(url, json=BODY, timeout=10),
            "outbound.send (now)": lambda: outbound.send(policy, "POST", url, json=BODY),
            "refused, 2130706433:6379": refused_send,
        }
        for call in calls.values():
            call()  # warm: imports, first connection
        for name, call in calls.items():
            times = sorted(timed(call, n))
            median, p95 = statistics.median(times), times[int(n * 0.95)]
            result[name] = {"median_ms": round(median, 3), "p95_ms": round(p95, 3)}
            print(f"{name:<28} median {median:7.3f} ms  p95 {p95:7.3f} ms")
    print("BENCH_OUTBOUND_CHECK " + json.dumps({"requests": n, "ms": result}, ensure_ascii=False))


if __name__ == "__main__":
    main()
