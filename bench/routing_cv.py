"""Out-of-sample routing accuracy: k-fold cross-validation of the intent model over the shipped
training utterances (assistant/data/intents.jsonl), with the rules and the retrieval confidence
exactly as a chat turn combines them.

    ANJU_DATA_DIR=... .venv/bin/python bench/routing_cv.py [--folds 5] [--community cuihu]
    .venv/bin/python -m bench.routing_cv --smoke    # 120 utterances, 2 folds: checks it runs

The data folder must hold a migrated database with a knowledge base (e.g. after `anju seed-demo`);
--smoke makes one in a temporary folder (migrated, the demo seeded) unless ANJU_DATA_DIR is set.
Prints one JSON object: cross-validated accuracy and emergency recall, and the same for rules alone
(with --smoke, as one line ``BENCH_ROUTING_CV {...}``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--community", default="cuihu")
    parser.add_argument("--cases", type=Path, default=ROOT / "assistant/data/intents.jsonl")
    parser.add_argument("--smoke", action="store_true", help="120 utterances, 2 folds: checks it runs")
    args = parser.parse_args()
    scratch = None
    if args.smoke:
        args.folds = 2
        if not os.environ.get("ANJU_DATA_DIR"):
            scratch = Path(tempfile.mkdtemp(prefix="anju-bench-routing-"))
            os.environ["ANJU_DATA_DIR"] = str(scratch)
            os.environ.setdefault("ANJU_REDIS_URL", "redis://unused")
            _seed()
    try:
        report = _run(args)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.smoke:
        print("BENCH_ROUTING_CV " + json.dumps(report, ensure_ascii=False))
    else:
        print(json.dumps(report, ensure_ascii=False))


def _seed() -> None:
    """A migrated database with the demo company and knowledge base, as `anju seed-demo` makes."""
    from anju.demo import seed_demo
    from anju.migrate import upgrade
    from core.db import get_database
    from core.settings import Settings

    settings = Settings()
    upgrade(settings)
    with get_database(settings).session() as session:
        seed_demo(session, residents_per_community=1)


def _run(args: argparse.Namespace) -> dict[str, object]:
    from assistant import intent
    from assistant.evaluation import RoutingCase, score
    from assistant.service import Assistant, decide
    from core.settings import Settings
    from knowledge.retrieval import fusion_for, get_search

    settings = Settings()
    assistant = Assistant(settings)
    rows = [json.loads(line) for line in args.cases.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.smoke:  # 120 spread over the whole file: a twelfth of the sentence vectors to compute
        rows = rows[:: max(1, len(rows) // 120)][:120]
    cases = [RoutingCase(r["text"], tuple(r["ok"])) for r in rows]
    with assistant.database.session(readonly=True) as session:
        place = assistant.community(session, args.community)
        plans = [assistant.plan(session, place, c.text, use_intent=False) for c in cases]
    vectors = np.vstack([p.vector for p in plans if p.vector is not None])
    assert len(vectors) == len(plans), "the embeddings model must be available for this benchmark"
    order = list(range(len(cases)))
    random.Random(20261123).shuffle(order)
    folds = [order[i :: args.folds] for i in range(args.folds)]
    models = {}
    for number, fold in enumerate(folds):
        held = set(fold)
        train_idx = [i for i in order if i not in held]
        models[number] = intent.train(
            vectors[train_idx], [cases[i].text for i in train_idx], [cases[i].ok[0] for i in train_idx]
        )
    fold_of = {i: number for number, fold in enumerate(folds) for i in fold}
    probabilities = [models[fold_of[i]].probabilities(vectors[i], cases[i].text) for i in range(len(cases))]

    threshold = fusion_for(get_search(settings).encoder.name).answer_threshold

    def predict(
        use_model: bool,
        emergency: float | None = None,
        other: float | None = None,
        answer: float | None = None,
    ) -> list[str]:
        return [
            decide(p.route, p.confidence, probabilities[i] if use_model else None,
                   emergency_probability=emergency, intent_probability=other,
                   answer_threshold=answer if answer is not None else threshold).value
            for i, p in enumerate(plans)
        ]  # fmt: skip

    answer_sweep = []
    for answer in (0.2, 0.25, 0.3, 0.34, 0.38, 0.42, 0.46, 0.5):
        result = score(cases, predict(True, answer=answer))
        confusion = result["confusion"]
        answer_sweep.append({
            "answer_threshold": answer,
            "accuracy": result["accuracy"],
            "answer_as_clarify": confusion.get("answer", {}).get("clarify", 0),
            "clarify_as_answer": confusion.get("clarify", {}).get("answer", 0),
        })  # fmt: skip

    sweep = []
    for emergency in (0.15, 0.2, 0.25, 0.3, 0.4, 0.5):
        for other in (0.4, 0.5, 0.6, 0.7):
            result = score(cases, predict(True, emergency, other))
            figures = {k: result[k] for k in ("accuracy", "emergency_recall", "emergency_false_alarms")}
            sweep.append({"emergency_probability": emergency, "intent_probability": other, **figures})
    predicted = predict(True)
    rules_only = predict(False)
    return {
        "n": len(cases),
        "folds": args.folds,
        "cross_validated": {k: v for k, v in score(cases, predicted).items() if k != "confusion"},
        "rules_only": {k: v for k, v in score(cases, rules_only).items() if k != "confusion"},
        "confusion": score(cases, predicted)["confusion"],
        "answer_threshold": threshold,
        "answer_sweep": answer_sweep,
        "sweep": sweep,
    }


if __name__ == "__main__":
    main()
