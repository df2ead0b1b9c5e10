"""Benchmarks that nobody runs rot: every bench script runs here in its smoke mode (``--smoke``:
the same code path, tiny sizes, seconds), and its result line must hold plausible figures.

Scripts that start the service start it here too (their own redis-server, or the tests' Redis
database for those that take ``--redis-url``). The ones that seed the demo through ``anju
seed-demo`` share one seeded template (``ANJU_BENCH_TEMPLATE``), seeded once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
TIMEOUT = 240  # a smoke run takes seconds; this is for a machine under load


def bench(name: str, prefix: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m bench.<name> --smoke`` and return the JSON of its ``prefix`` line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_") or k.startswith("ANJU_TEST_")}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**clean, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    report = "\n".join(x for x in done.stdout.splitlines() if not x.startswith(prefix + " "))
    assert done.returncode == 0, f"exit {done.returncode}\n{report[-3000:]}\n{done.stderr[-3000:]}"
    line = next((x for x in done.stdout.splitlines() if x.startswith(prefix + " ")), None)
    assert line is not None, f"no {prefix} line in:\n{done.stdout[-3000:]}"
    return dict(json.loads(line.removeprefix(prefix + " ")))


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated and seeded as bench/intake_common.Databases.prepare does it."""
    from bench.intake_common import Databases, service_env

    workdir = tmp_path_factory.mktemp("bench-template")
    env = service_env(
        data_dir=workdir / "template", redis_url="redis://unused", database_url=None, port=0,
        fakes_port=1, llm=False,
    )  # fmt: skip
    Databases(workdir, None).prepare(env)
    return str(workdir / "template")


def test_message_understanding_bench_runs() -> None:
    result = bench("message_understanding", "BENCH_UNDERSTANDING")
    assert result["texts"] == 40 and result["routing_plus_sentiment_ms"]["p50"] > 0


def test_sentiment_cv_bench_runs() -> None:
    result = bench("sentiment_cv", "BENCH_SENTIMENT_CV")
    assert result["posts"] == 300 and result["folds"] == 2
    assert 0.3 < result["macro_f1"]["1.0"] <= 1


def test_sentiment_speed_bench_runs() -> None:
    result = bench("sentiment_speed", "BENCH_SENTIMENT_SPEED")
    assert result["posts"] == 200 and result["posts_per_second"] > 0
    assert result["snownlp_posts_per_second"] > 0


def test_outbound_check_bench_runs() -> None:
    result = bench("outbound_check", "BENCH_OUTBOUND_CHECK")
    ms = result["ms"]
    assert result["requests"] == 20 and all(v["median_ms"] > 0 for v in ms.values())
    # a refused request opens no connection: cheaper than any request that is sent
    assert ms["refused, 2130706433:6379"]["median_ms"] < ms["outbound.send (now)"]["median_ms"]


def test_routing_cv_bench_runs() -> None:
    result = bench("routing_cv", "BENCH_ROUTING_CV")
    assert result["n"] == 120 and result["folds"] == 2
    assert 0.3 < result["cross_validated"]["accuracy"] <= 1
    assert 0 < result["rules_only"]["accuracy"] <= 1


def test_chat_latency_bench_runs(redis_url: str) -> None:
    result = bench("chat_latency", "BENCH_CHAT_LATENCY", "--redis-url", redis_url)
    assert result["index"]["built"] and result["index"]["passages"] > 50
    http = result["http"]
    assert http["turns"] == 5 and sum(http["actions"].values()) == 5 and 0 < http["p50_ms"] < 10_000


def test_benches_stop_when_the_corpus_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """chat_latency, injection and upload_bomb measure over shared/corpus: not finding it stops the
    run with a message naming where it looked, rather than measuring something else."""
    from bench import corpus

    monkeypatch.setattr(corpus, "PLACES", (tmp_path / "shared" / "corpus",))
    monkeypatch.delenv("ANJU_TEST_CORPUS", raising=False)
    with pytest.raises(SystemExit, match=r"shared/corpus.*ANJU_TEST_CORPUS"):
        corpus.corpus_files()
    (tmp_path / corpus.MARKER).write_text("物业品质管理工作指引", encoding="utf-8")
    monkeypatch.setenv("ANJU_TEST_CORPUS", str(tmp_path))
    assert corpus.corpus_files() == [tmp_path / corpus.MARKER]


def test_injection_bench_runs(redis_url: str, tmp_path: Path) -> None:
    result = bench("injection", "BENCH_INJECTION", "--redis-url", redis_url, "--data-dir", str(tmp_path))
    assert result["attacks"] == 2 and result["llm_calls"] > 0 and result["normal_questions"] == 15
    assert result["leaked_turns"] == {"extractive": "0 of 4", "llm": "0 of 4"}
    assert result["leaked_drafts"].startswith("0 of ")


def test_crawl_pipeline_bench_runs() -> None:
    result = bench("crawl_pipeline", "BENCH_CRAWL_PIPELINE")
    assert result["pages"] >= 60 and result["pages_per_min"] > 0
    assert result["posts"] > 0 and result["events"] > 0 and result["alerts"] > 0
    assert result["robot_messages"] == result["alerts"] and result["alert_latency_s"]["n"] > 0


def test_rq_throughput_bench_runs(redis_url: str) -> None:
    result = bench("rq_throughput", "BENCH_RQ_THROUGHPUT", "--redis-url", redis_url)
    assert [r["target"] for r in result["results"]] == ["external"]
    for r in result["results"]:
        assert r["statuses"] == {"finished": 20} and r["jobs_per_s_steady"] > 0 and not r["leftovers"]


def test_up_ready_bench_runs() -> None:
    result = bench("up_ready", "BENCH_UP_READY")
    assert result["exit_codes"] == ["0"] and not result["leftovers"] and not result["errors"]
    assert 0 < result["cold"]["ready_with_worker_s"]["median"] < 120
    assert result["cold"]["total_rss_mb"]["median"] > 0


def test_upload_bomb_bench_runs(redis_url: str) -> None:
    result = bench("upload_bomb", "BENCH_UPLOAD_BOMB", "--redis-url", redis_url)
    phases = {p["phase"]: p for p in result["phases"]}
    assert list(phases) == ["baseline", "docx bomb", "xlsx bomb", "pdf bomb", "large document", "after"]
    assert all(p["chat"]["turns"] > 0 and p["chat"]["errors"] == 0 for p in phases.values())
    for name in ("docx bomb", "xlsx bomb"):  # refused at the door
        assert {u["status"] for u in phases[name]["uploads"]} == {413}
    assert {u.get("worker") for u in phases["pdf bomb"]["uploads"]} == {"failed"}  # refused by the worker
    large = [u for u in phases["large document"]["uploads"] if "file" in u]
    assert {u["worker"] for u in large} == {"ready"} and all(u["passages"] > 0 for u in large)


def test_console_load_bench_runs(seeded_template: str, tmp_path: Path) -> None:
    result = bench(
        "console_load", "BENCH_CONSOLE_LOAD", "--out", str(tmp_path / "out.json"),
        env={"ANJU_BENCH_TEMPLATE": seeded_template},
    )["result"]  # fmt: skip
    assert result["seed"]["cases"] == 4 and not result["leftovers"]
    m = result["message_to_screen"]
    assert not m["never_seen"] and not m["failed_posts"]
    assert sum(e["count"] for e in result["endpoints"]) > 0


def test_intake_load_bench_runs(seeded_template: str) -> None:
    result = bench("intake_load", "BENCH_INTAKE_LOAD", env={"ANJU_BENCH_TEMPLATE": seeded_template})
    assert not result["leftovers"]
    latency, acceptance = result["results"]
    assert latency["figure"] == "latency" and latency["sent"] > 0 and latency["errors"] == 0
    assert latency["llm_calls_during_run"] > 0  # the assistant did ask the (fake) LLM
    assert acceptance["figure"] == "acceptance" and acceptance["stored"] == acceptance["sent"] == 40


def test_intake_faults_bench_runs(seeded_template: str) -> None:
    result = bench("intake_faults", "BENCH_INTAKE_FAULTS", env={"ANJU_BENCH_TEMPLATE": seeded_template})
    r = result["result"]
    assert not result["leftovers"] and r["settled"]
    assert r["accepted"] == r["messages"] == 15 and r["lost"] == 0 and r["duplicated_messages"] == 0
    events = [e["event"] for e in r["events"]]
    assert "worker killed" in events and "redis-server started again, empty" in events
