"""Choose the sentiment model's regularisation by 5-fold cross-validation on its training data.

    .venv/bin/python -m bench.sentiment_cv                  # L2 in 0.1 0.3 1 3, 5 folds
    .venv/bin/python -m bench.sentiment_cv --smoke          # one value, 2 folds, 300 posts

Only sentiment/data/train.jsonl is used (never the evaluation sets under tests/data): folds are
drawn with a fixed seed, stratified by label. Prints macro-F1 per value and one JSON line
``BENCH_SENTIMENT_CV {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def macro_f1(truth: list[str], predicted: list[str], classes: tuple[str, ...]) -> float:
    scores = []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != c and p == c for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == c and p != c for t, p in zip(truth, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--l2", type=float, nargs="*", default=[0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    from sentiment.model import CLASSES, train, training_set

    texts, labels = training_set()
    rows = list(zip(texts, labels, strict=True))
    folds, values = args.folds, args.l2
    if args.smoke:
        rows, folds, values = random.Random(1).sample(rows, 300), 2, [1.0]
    by_label: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(i)
    fold_of = {}
    for indices in by_label.values():
        random.Random(20).shuffle(indices)
        for n, i in enumerate(indices):
            fold_of[i] = n % folds
    result = {}
    for l2 in values:
        truth: list[str] = []
        predicted: list[str] = []
        for k in range(folds):
            fit = [rows[i] for i in range(len(rows)) if fold_of[i] != k]
            held = [rows[i] for i in range(len(rows)) if fold_of[i] == k]
            model = train([t for t, _ in fit], [y for _, y in fit], l2=l2)
            truth += [y for _, y in held]
            predicted += [model.classify(t).label for t, _ in held]
        result[str(l2)] = round(macro_f1(truth, predicted, CLASSES), 4)
        print(f"L2 {l2:<6} macro-F1 {result[str(l2)]:.4f}", flush=True)
    print("BENCH_SENTIMENT_CV " + json.dumps({"posts": len(rows), "folds": folds, "macro_f1": result}))


if __name__ == "__main__":
    main()
