"""Routing quality on a labelled set: accuracy, emergency recall and a confusion table.

A case is ``{"text": "...", "ok": ["work_order", "human"]}``: right when the action is one of
``ok``. Each text is routed as the first message of a new conversation (rules, then retrieval
confidence for questions), without writing anything.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.routing import Action
from core.errors import InvalidInput

ACTIONS = [a.value for a in Action]


@dataclass(frozen=True)
class RoutingCase:
    text: str
    ok: tuple[str, ...]


def read_routing_cases(path: Path) -> list[RoutingCase]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            case = RoutingCase(str(row["text"]), tuple(str(a) for a in row["ok"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path.name} 第 {number} 行格式不对：{exc}") from None
        unknown = [a for a in case.ok if a not in ACTIONS]
        if unknown or not case.ok:
            raise InvalidInput(f"{path.name} 第 {number} 行的动作不对：{unknown or '空'}；可选 {ACTIONS}")
        cases.append(case)
    if not cases:
        raise InvalidInput(f"{path.name} 里没有用例")
    return cases


def score(cases: list[RoutingCase], predicted: list[str]) -> dict[str, Any]:
    """Accuracy, emergency recall (of the cases whose only right action is emergency) and a
    confusion table keyed by the first acceptable action, then the predicted one."""
    right = [p in c.ok for c, p in zip(cases, predicted, strict=True)]
    emergencies = [p == "emergency" for c, p in zip(cases, predicted, strict=True) if c.ok == ("emergency",)]
    false_alarms = sum(
        1 for c, p in zip(cases, predicted, strict=True) if p == "emergency" and "emergency" not in c.ok
    )
    confusion: dict[str, dict[str, int]] = {}
    for case, action in zip(cases, predicted, strict=True):
        expected = case.ok[0] if action not in case.ok else action
        confusion.setdefault(expected, Counter())[action] += 1  # type: ignore[arg-type]
    return {
        "n": len(cases),
        "accuracy": round(sum(right) / len(cases), 4),
        "emergency_recall": round(sum(emergencies) / len(emergencies), 4) if emergencies else None,
        "emergency_false_alarms": false_alarms,
        "confusion": {k: dict(v) for k, v in sorted(confusion.items())},
    }


def route_cases(settings: Any, community: str, cases: list[RoutingCase]) -> list[tuple[str, float]]:
    """(action, retrieval confidence) per case, as the first turn of a conversation decides."""
    from assistant import service

    assistant = service.Assistant(settings)
    out = []
    with assistant.database.session(readonly=True) as session:
        place = assistant.community(session, community)
        for case in cases:
            plan = assistant.plan(session, place, case.text)
            out.append((plan.action.value, plan.confidence))
    return out
