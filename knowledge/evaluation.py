"""Retrieval quality on a labelled set: hit@1, hit@3 and MRR@10 for the product's hybrid ranking
and, in the same run, for BM25 alone and dense vectors alone.

A case is ``{"q": "...", "expect_any": ["substring", ...], "community": "code"?}``; it hits at
rank k when one of the top-k items (passage: title, section and text; FAQ entry: question and
answer) contains one of the substrings.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from knowledge.retrieval import Fusion, KnowledgeSearch, Mode, fusion_for, rank
from org.models import Community

MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")
DEPTH = 10


@dataclass(frozen=True)
class Case:
    query: str
    expect_any: tuple[str, ...]
    community: str | None = None


def read_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            case = Case(str(row["q"]), tuple(str(s) for s in row["expect_any"]), row.get("community"))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path.name} 第 {number} 行格式不对：{exc}") from None
        if not case.query.strip() or not case.expect_any:
            raise InvalidInput(f"{path.name} 第 {number} 行缺少问题或期望内容")
        cases.append(case)
    if not cases:
        raise InvalidInput(f"{path.name} 里没有用例")
    return cases


def first_hit(texts: Iterable[str], expect_any: tuple[str, ...]) -> int | None:
    """1-based rank of the first text containing an expected substring."""
    for position, text in enumerate(texts, start=1):
        if any(s in text for s in expect_any):
            return position
    return None


def summarise(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit_at_1": round(sum(1 for r in ranks if r == 1) / n, 4),
        "hit_at_3": round(sum(1 for r in ranks if r is not None and r <= 3) / n, 4),
        "mrr": round(sum(1 / r for r in ranks if r is not None and r <= DEPTH) / n, 4),
    }


class RetrievalEvaluation:
    """Runs the cases against a company's current index (queries embedded once, reused by every
    mode and every fusion setting tried)."""

    def __init__(self, session: Session, search: KnowledgeSearch, company_id: int, cases: list[Case]) -> None:
        self.session = session
        self.search = search
        self.company_id = company_id
        self.cases = cases
        index = search.index_for(session, company_id)
        if index is None:
            raise InvalidInput("知识库还没有索引：请先导入文档（anju ingest）")
        self.index = index
        self.fusion = fusion_for(index.model)  # what the product uses with this index's model
        communities = list(
            session.scalars(
                select(Community).where(Community.company_id == company_id).order_by(Community.id)
            )
        )
        codes = {c.code: c.id for c in communities} | {c.name: c.id for c in communities}
        self.community_ids = []
        for case in cases:
            if case.community is not None and case.community not in codes:
                raise InvalidInput(f"用例里的小区 {case.community} 不存在")
            self.community_ids.append(codes[case.community] if case.community else communities[0].id)
        self.vectors = [search.embed_query(c.query) for c in cases]
        self.day = dt.date.today()
        self._texts: dict[tuple[str, int], str] = {}

    def ranks(self, mode: Mode, fusion: Fusion | None = None, *, hydrated: bool = True) -> list[int | None]:
        """Rank of the first right item per case. ``hydrated``: through the same path as a chat
        turn (items re-read from the database); otherwise from a cache, for tuning loops."""
        fusion = fusion or self.fusion
        out = []
        for case, community_id, vector in zip(self.cases, self.community_ids, self.vectors, strict=True):
            hits = rank(self.index, case.query, vector, community_id=community_id, day=self.day,
                        k=DEPTH, fusion=fusion, mode=mode)  # fmt: skip
            if hydrated:
                results = self.search_results(hits, community_id)
                out.append(first_hit((r.searchable for r in results), case.expect_any))
            else:
                out.append(
                    first_hit((self._text(h.kind, h.item_id, community_id) for h in hits), case.expect_any)
                )
        return out

    def search_results(self, hits: list[Any], community_id: int) -> list[Any]:
        from knowledge.retrieval import hydrate

        return hydrate(self.session, hits, community_id=community_id, day=self.day, index_id=self.index.id)

    def _text(self, kind: str, item_id: int, community_id: int) -> str:
        key = (kind, item_id)
        if key not in self._texts:
            from knowledge.retrieval import Hit

            results = self.search_results([Hit(kind, item_id, 0, 0, 0)], community_id)
            self._texts[key] = results[0].searchable if results else ""
        return self._texts[key]

    def report(self, fusion: Fusion | None = None) -> dict[str, Any]:
        fusion = fusion or self.fusion
        product = summarise(self.ranks("hybrid", fusion))
        return {
            "n": len(self.cases),
            **product,
            "index_id": self.index.id,
            "embedding_model": self.index.model,
            "baselines": {mode: summarise(self.ranks(mode, fusion)) for mode in ("bm25", "dense")},
        }

    def misses(self, fusion: Fusion | None = None, limit: int = 3) -> list[dict[str, Any]]:
        """Cases not at rank 1, with what came first instead (for people improving the data)."""
        fusion = fusion or self.fusion
        out = []
        for case, community_id, vector, r in zip(
            self.cases, self.community_ids, self.vectors, self.ranks("hybrid", fusion), strict=True
        ):
            if r == 1:
                continue
            hits = rank(self.index, case.query, vector, community_id=community_id, day=self.day,
                        k=limit, fusion=fusion)  # fmt: skip
            top = [
                f"{h.kind}:{h.score:.2f} {self._text(h.kind, h.item_id, community_id)[:60]!r}" for h in hits
            ]
            out.append({"q": case.query, "rank": r, "top": top})
        return out

    def tune(self) -> tuple[Fusion, dict[str, float]]:
        """Grid search of the fusion settings around the model's current ones, by MRR, then
        hit@1 (the dev set is what it sees). Floors and ceilings move by a tenth of the model's
        own cosine range, so the same grid serves models whose similarities live on different
        scales."""
        base = self.fusion
        span = base.dense_ceiling - base.dense_floor
        faq_span = base.faq_dense_ceiling - base.faq_dense_floor

        def around(value: float, step: float, low: float = 0.0, high: float = 1.0) -> tuple[float, ...]:
            return tuple(sorted({round(min(max(value + d, low), high), 3) for d in (-step, 0.0, step)}))

        best: tuple[tuple[float, float, float], Fusion] | None = None
        grid = itertools.product(
            around(base.dense_weight, 0.1),  # dense weight for passages
            around(base.faq_dense_weight, 0.1),  # dense weight for FAQ phrasings
            (0.3, 0.5, 0.7),  # bigram share of the lexical weight
            around(base.dense_floor, span / 10, -1.0),
            (base.dense_ceiling, round(base.dense_ceiling + span / 10, 3)),
            (base.faq_dense_floor, round(base.faq_dense_floor + faq_span / 10, 3)),
            (0.6, 0.7),  # FAQ threshold: a confident FAQ match goes first
            (0.0, 0.05),  # FAQ handicap below the threshold (kept small: residents ask FAQ questions)
        )
        for weight, faq_weight, pair_share, floor, ceiling, faq_floor, threshold, penalty in grid:
            fusion = replace(base, dense_weight=weight, faq_dense_weight=faq_weight, bigram_weight=pair_share,
                             dense_floor=floor, dense_ceiling=ceiling, faq_dense_floor=faq_floor,
                             faq_threshold=threshold, faq_penalty=penalty)  # fmt: skip
            scores = summarise(self.ranks("hybrid", fusion, hydrated=False))
            key = (scores["mrr"], scores["hit_at_1"], scores["hit_at_3"])
            if best is None or key > best[0]:
                best = (key, fusion)
        assert best is not None
        return best[1], summarise(self.ranks("hybrid", best[1]))
