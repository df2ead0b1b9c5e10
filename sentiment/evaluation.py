"""Sentiment quality on a labelled file, beside two general-purpose Chinese baselines run on the
same posts in the same run: snownlp (trained on product reviews) and pysenti (a lexicon with
negation and degree words).

Both baselines give a polarity, not three classes; each is cut into neg / neu / pos at the two
thresholds that give it its best macro-F1 on the very file being scored (searched on a grid).
That is generous to them: an upper bound of what they could do here, so the comparison is fair
to them even on a small set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from sentiment.model import CLASSES, get_model


@dataclass(frozen=True)
class Case:
    text: str
    label: str


def read_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, label = str(item["text"]), str(item["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f'{path} 第 {number} 行不是 {{"text", "label"}}：{exc}') from None
        if label not in CLASSES:
            raise InvalidInput(f"{path} 第 {number} 行的 label 应为 neg、neu 或 pos，而不是 {label!r}")
        cases.append(Case(text, label))
    if not cases:
        raise InvalidInput(f"{path} 没有用例")
    return cases


def score(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class recall and precision, and the confusion table."""
    n = len(expected)
    correct = sum(e == p for e, p in zip(expected, predicted, strict=True))
    recall, precision, f1 = {}, {}, {}
    for c in CLASSES:
        tp = sum(e == c and p == c for e, p in zip(expected, predicted, strict=True))
        actual = sum(e == c for e in expected)
        said = sum(p == c for p in predicted)
        r = tp / actual if actual else 0.0
        pr = tp / said if said else 0.0
        recall[c], precision[c] = round(r, 4), round(pr, 4)
        f1[c] = 2 * pr * r / (pr + r) if pr + r else 0.0
    present = [c for c in CLASSES if any(e == c for e in expected)]
    confusion = {
        e: {p: sum(x == e and y == p for x, y in zip(expected, predicted, strict=True)) for p in CLASSES}
        for e in CLASSES
    }
    return {
        "n": n,
        "accuracy": round(correct / n, 4),
        "macro_f1": round(sum(f1[c] for c in present) / len(present), 4),
        "recall": recall,
        "precision": precision,
        "confusion": confusion,
    }


def _best_cut(scores: Sequence[float], expected: Sequence[str], grid: Sequence[float]) -> tuple[float, float]:
    best, cut = -1.0, (grid[0], grid[-1])
    for i, low in enumerate(grid):
        for high in grid[i:]:
            predicted = ["neg" if s < low else "pos" if s > high else "neu" for s in scores]
            f1 = score(expected, predicted)["macro_f1"]
            if f1 > best:
                best, cut = f1, (low, high)
    return cut


def _baseline(name: str) -> tuple[Callable[[str], float], list[float]]:
    if name == "snownlp":
        from snownlp import SnowNLP

        return (lambda text: float(SnowNLP(text).sentiments)), [i / 20 for i in range(21)]
    if name == "pysenti":
        import pysenti

        return (lambda text: float(pysenti.classify(text)["score"])), [x / 2 for x in range(-12, 13)]
    raise ValueError(name)


def evaluate(cases: Sequence[Case], *, baselines: Sequence[str] = ("snownlp", "pysenti")) -> dict[str, Any]:
    expected = [c.label for c in cases]
    model = get_model()
    results = model.classify_many(c.text for c in cases)
    report = score(expected, [r.label for r in results])
    report["errors"] = [
        {"text": c.text, "label": c.label, "got": r.label, "score": r.score}
        for c, r in zip(cases, results, strict=True)
        if c.label != r.label
    ]
    report["baselines"] = {}
    for name in baselines:
        try:
            polarity, grid = _baseline(name)
        except ImportError:
            report["baselines"][name] = None  # not installed (they come with the dev extras)
            continue
        scores = [polarity(c.text) for c in cases]
        low, high = _best_cut(scores, expected, grid)
        predicted = ["neg" if s < low else "pos" if s > high else "neu" for s in scores]
        line = score(expected, predicted)
        line["thresholds"] = [low, high]
        line.pop("confusion")
        report["baselines"][name] = line
    return report
