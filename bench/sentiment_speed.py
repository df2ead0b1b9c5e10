"""Sentiment scoring speed on one core (issue 6: >= 2,000 posts/s per core).

    .venv/bin/python -m bench.sentiment_speed            # 20,000 posts, 3 rounds
    .venv/bin/python -m bench.sentiment_speed --posts 5000 --rounds 1
    .venv/bin/python -m bench.sentiment_speed --smoke    # 200 posts, 1 round, snownlp on 20: checks it runs

One process, one thread (OMP/MKL/OpenBLAS limited to 1, pinned to one CPU when the OS allows):
the posts are the dev and holdout sets' texts cycled to --posts (realistic lengths: group-chat
lines to long petitions), scored one by one with ``sentiment.model.classify`` as the pipeline
will. Training the model (once per process) is timed apart. snownlp on the same posts gives a
reference from the same run. Prints a table and one JSON line ``BENCH_SENTIMENT_SPEED {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

ROOT = Path(__file__).resolve().parent.parent


def _texts(n: int) -> list[str]:
    texts: list[str] = []
    for name in ("sentiment_dev.jsonl", "sentiment_holdout.jsonl"):
        for line in (ROOT / "tests" / "data" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
    return [texts[i % len(texts)] for i in range(n)]


def _machine() -> dict[str, object]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "commit": commit.strip() + (" + uncommitted" if dirty else ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-posts", type=int, default=2_000, help="snownlp on this many (0: skip)")
    parser.add_argument("--smoke", action="store_true", help="200 posts, one round: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.posts, args.rounds, args.baseline_posts = 200, 1, 20
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    from sentiment.model import classify, get_model

    started = time.perf_counter()
    get_model()
    train_seconds = time.perf_counter() - started
    texts = _texts(args.posts)
    classify(texts[0])  # jieba's dictionary is loaded by training already; one warm call
    rates = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for text in texts:
            classify(text)
        rates.append(len(texts) / (time.perf_counter() - t0))
    chars = sum(len(t) for t in texts) / len(texts)
    result: dict[str, object] = {
        "posts": len(texts),
        "mean_chars": round(chars, 1),
        "posts_per_second": round(sorted(rates)[len(rates) // 2]),
        "rounds": [round(r) for r in rates],
        "train_seconds": round(train_seconds, 2),
        **_machine(),
    }
    if args.baseline_posts:
        from snownlp import SnowNLP

        sample = texts[: args.baseline_posts]
        t0 = time.perf_counter()
        for text in sample:
            _ = SnowNLP(text).sentiments
        result["snownlp_posts_per_second"] = round(len(sample) / (time.perf_counter() - t0))
    print(f"{'posts':>8} {'chars/post':>11} {'posts/s (1 core)':>17} {'train s':>8} {'snownlp posts/s':>16}")
    print(
        f"{result['posts']:>8} {result['mean_chars']:>11} {result['posts_per_second']:>17} "
        f"{result['train_seconds']:>8} {result.get('snownlp_posts_per_second', '-'):>16}"
    )
    print("BENCH_SENTIMENT_SPEED " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
