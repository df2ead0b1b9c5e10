"""Chat-turn latency through HTTP over a 10,000-passage knowledge base, index build rate, and the
API process's memory.

    .venv/bin/python bench/chat_latency.py [--passages 10000] [--turns 300] [--data-dir DIR]
    .venv/bin/python -m bench.chat_latency --smoke    # a fresh temporary folder, one standard, one
                                                      # padding document, 5 turns: checks it runs

Builds (or reuses) a data folder with the demo company, the demo FAQ and service standard, the
five standards documents of shared/corpus (bench/corpus.py says where it is looked for; the run
stops when it is not found), and generated documents that pad the knowledge base to the target
passage count (sentences of the real passages recombined, so the vocabulary is the domain's). The
index is built in this process (the build rate is recorded), then `anju serve` runs as its own
process and answers POST /api/chat one turn at a time with questions from
tests/data/retrieval_dev.jsonl (retrieval-only turns: questions, not repairs or
emergencies). Prints one JSON object (``BENCH_CHAT_LATENCY {...}`` with --smoke: one line the
test suite reads).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.corpus import corpus_files  # noqa: E402  (after sys.path: run as a script too)


def prepare(
    data_dir: Path, redis_url: str, target: int, *, standards: int | None = None
) -> dict[str, object]:
    """``target``: passages to pad to (at least one padding document when ``standards`` is set:
    the smoke run ingests only that many of the standards)."""
    os.environ["ANJU_DATA_DIR"] = str(data_dir)
    os.environ["ANJU_REDIS_URL"] = redis_url
    from sqlalchemy import func, select

    from anju.demo import is_seeded, seed_demo
    from anju.migrate import upgrade
    from core.db import get_database
    from core.settings import Settings
    from knowledge import service
    from knowledge.models import Passage
    from org.models import Company

    settings = Settings()
    upgrade(settings)
    database = get_database(settings)
    with database.session() as session:
        if not is_seeded(session):
            seed_demo(session, residents_per_community=8)
        company_id = session.scalars(select(Company.id)).one()
    files = corpus_files()  # by name, as before; the smoke run takes the smallest
    if standards is not None:
        files = sorted(files, key=lambda p: p.stat().st_size)[:standards]
    for path in files:
        with database.session() as session:
            service.ingest(
                session=session, company_id=company_id, filename=path.name, content=path.read_bytes()
            )
    with database.session() as session:
        texts = list(session.scalars(select(Passage.text)))
        have = session.scalar(select(func.count()).select_from(Passage)) or 0
    if standards is not None:
        target = have + 1
    sentences = [s for t in texts for s in re.findall(r"[^。；;！!？?\n]+[。；;！!？?]", t) if len(s) > 8]
    rng = random.Random(20261123)
    number = 0
    while have < target:
        number += 1
        sections = []
        for s in range(1, 41):
            body = "".join(rng.choice(sentences) for _ in range(rng.randint(2, 5)))
            sections.append(f"## {s}. 第 {number} 号补充规程 第 {s} 节\n\n{body}\n")
        doc = f"# 补充规程 {number}\n\n" + "\n".join(sections)
        with database.session() as session:
            result = service.ingest(
                session=session,
                company_id=company_id,
                filename=f"padding-{number:04d}.md",
                content=doc.encode(),
            )
            have += len(result.source.passages)
    started = time.perf_counter()
    built = service.rebuild_index(settings, company_id=company_id)
    seconds = time.perf_counter() - started
    index = built.index
    return {
        "embedding_model": index.embedding_model,
        "passages": index.passages,
        "faq_entries": index.faq_entries,
        "built": built.built,
        "embedded": index.embedded,
        "build_seconds": round(seconds, 1),
        "build_rate_passages_per_s": round(index.embedded / seconds, 1) if built.built and seconds else None,
        "artifact_mb": round(index.size_bytes / 1e6, 1),
    }


def run(data_dir: Path, redis_url: str, turns: int, port: int, *, warm: int = 10) -> dict[str, object]:
    env = {**os.environ, "ANJU_DATA_DIR": str(data_dir), "ANJU_REDIS_URL": redis_url, "ANJU_PORT": str(port),
           "ANJU_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1",
           "ANJU_CHAT_PER_ADDRESS_PER_MINUTE": "100000"}  # one client sends every turn  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "anju.cli", "serve"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        questions = [
            json.loads(line)["q"]
            for line in (ROOT / "tests/data/retrieval_dev.jsonl").read_text().splitlines()
        ]
        latencies: list[float] = []
        actions: dict[str, int] = {}
        with httpx.Client(base_url=base, timeout=30) as client:
            for n in range(turns + warm):
                body = {
                    "community": "cuihu",
                    "session_id": uuid.uuid4().hex,
                    "text": questions[n % len(questions)],
                }
                started = time.perf_counter()
                response = client.post("/api/chat", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if n >= warm:  # the first turns load the model and the index
                    latencies.append(elapsed)
                    action = response.json()["action"]
                    actions[action] = actions.get(action, 0) + 1
        process = psutil.Process(server.pid)
        memory = process.memory_full_info()
        latencies.sort()
        return {
            "turns": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
            "max_ms": round(latencies[-1], 1),
            "actions": actions,
            "api_rss_mb": round(memory.rss / 1e6),
            "api_pss_mb": round(getattr(memory, "pss", 0) / 1e6),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/anju-bench-chat"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--smoke", action="store_true", help="fresh temporary folder, one standard, 5 turns on a free port"
    )
    args = parser.parse_args()
    if not args.smoke:
        build = prepare(args.data_dir, args.redis_url, args.passages)
        latency = run(args.data_dir, args.redis_url, args.turns, args.port)
        print(json.dumps({"index": build, "http": latency, "cpu": os.cpu_count()}, ensure_ascii=False))
        return
    data_dir = Path(tempfile.mkdtemp(prefix="anju-bench-chat-smoke-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    try:
        build = prepare(data_dir, args.redis_url, 0, standards=1)
        latency = run(data_dir, args.redis_url, 5, port, warm=1)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    result = {"index": build, "http": latency, "cpu": os.cpu_count()}
    print("BENCH_CHAT_LATENCY " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
