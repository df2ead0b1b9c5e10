"""The search index of a company's knowledge base: built whole, stored as one versioned artifact,
loaded whole before it replaces the previous one.

Two parts, searched separately: FAQ questions (every phrasing of every entry), and document
passages together with each FAQ entry's answer (a fact that only the answer holds, such as
"物业不代收生鲜", is found the way a passage is: by its words). Each part has dense vectors
(FAISS, inner product of unit vectors) and BM25 weights over jieba tokens (a precomputed sparse
matrix). Each item carries its scope (all communities or some) and, for FAQ entries, the dates it
is valid, so a query filters with a mask instead of rebuilding anything per community.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import sparse
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from knowledge.bm25 import BM25Index
from knowledge.models import (
    FaqEntry,
    IndexStatus,
    KnowledgeIndex,
    KnowledgeSource,
    SourceKind,
    source_community,
)
from knowledge.text import bigrams, tokenizer_fingerprint, tokens
from org.models import Community

log = logging.getLogger(__name__)

FORMAT_VERSION = 5  # bump when the artifact layout or the tokenisation code changes (its data files
# are in the fingerprint: knowledge.text.tokenizer_fingerprint)
KEEP_VERSIONS = 3  # ready versions kept per company (older artifacts are deleted)
NO_START = 0
NO_END = 99_999_999  # date ordinals as yyyymmdd integers


class Encoder(Protocol):
    """What the index needs of an embeddings backend (see knowledge.embeddings)."""

    name: str

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_queries(self, texts: list[str]) -> list[list[float]]: ...


def day_number(day: dt.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _sha(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


@dataclass
class Items:
    """The rows of one part, before or after embedding."""

    kinds: list[str] = field(default_factory=list)  # passage | faq
    ids: list[int] = field(default_factory=list)  # Passage.id or FaqEntry.id
    texts: list[str] = field(default_factory=list)  # what is embedded and tokenised
    all_communities: list[bool] = field(default_factory=list)
    communities: list[list[int]] = field(default_factory=list)
    valid_from: list[int] = field(default_factory=list)
    valid_until: list[int] = field(default_factory=list)

    def add(
        self,
        kind: str,
        item_id: int,
        text: str,
        communities: list[int] | None,
        valid_from: dt.date | None = None,
        valid_until: dt.date | None = None,
    ) -> None:
        self.kinds.append(kind)
        self.ids.append(item_id)
        self.texts.append(text)
        self.all_communities.append(communities is None)
        self.communities.append(communities or [])
        self.valid_from.append(day_number(valid_from) if valid_from else NO_START)
        self.valid_until.append(day_number(valid_until) if valid_until else NO_END)


class Part:
    """One searchable part (FAQ questions or passages) of a loaded index."""

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        get = lambda key: arrays[prefix + key]  # noqa: E731
        self.ids: np.ndarray = get("ids")
        self.kinds: np.ndarray = get("kinds")  # per row: "passage", or "faq" (an entry's answer)
        self.size = len(self.ids)
        self.vectors: np.ndarray = get("vectors")
        self.text_sha: np.ndarray = get("text_sha")
        self.all_communities: np.ndarray = get("all")
        self.scope_indptr: np.ndarray = get("scope_indptr")
        self.scope_ids: np.ndarray = get("scope_ids")
        self.valid_from: np.ndarray = get("valid_from")
        self.valid_until: np.ndarray = get("valid_until")
        self.bm25 = _load_bm25(get, "bm25_")
        self.bigrams = _load_bm25(get, "bm25c_")
        self._dense: Any = None
        self._community_masks: dict[int, np.ndarray] = {}

    @property
    def dense(self) -> Any:
        """The FAISS index over the vectors (built on first use; the vectors are the artifact)."""
        if self._dense is None:
            import faiss  # deferred: only processes that search need it

            index = faiss.IndexFlatIP(self.vectors.shape[1] if self.size else 1)
            if self.size:
                index.add(self.vectors)
            self._dense = index
        return self._dense

    def community_mask(self, community_id: int) -> np.ndarray:
        mask = self._community_masks.get(community_id)
        if mask is None:
            mask = self.all_communities.copy()
            rows = np.repeat(np.arange(self.size), np.diff(self.scope_indptr))
            mask[rows[self.scope_ids == community_id]] = True
            self._community_masks[community_id] = mask
        return mask

    def mask(self, community_id: int, day: dt.date) -> np.ndarray:
        today = day_number(day)
        return self.community_mask(community_id) & (self.valid_from <= today) & (today <= self.valid_until)


def _part_arrays(items: Items, vectors: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    bm25 = BM25Index([tokens(t) for t in items.texts])
    bigram_index = BM25Index([bigrams(t) for t in items.texts])
    lengths = [len(c) for c in items.communities]
    return {
        prefix + "ids": np.asarray(items.ids, dtype=np.int64),
        prefix + "kinds": np.asarray(items.kinds, dtype="U8"),
        prefix + "vectors": vectors.astype(np.float32),
        prefix + "text_sha": np.asarray([_sha(t) for t in items.texts], dtype="S20"),
        prefix + "all": np.asarray(items.all_communities, dtype=bool),
        prefix + "scope_indptr": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        prefix + "scope_ids": np.asarray([i for c in items.communities for i in c], dtype=np.int64),
        prefix + "valid_from": np.asarray(items.valid_from, dtype=np.int64),
        prefix + "valid_until": np.asarray(items.valid_until, dtype=np.int64),
        prefix + "bm25_data": bm25.matrix.data,
        prefix + "bm25_indices": bm25.matrix.indices,
        prefix + "bm25_indptr": bm25.matrix.indptr,
        prefix + "bm25_shape": np.asarray(bm25.matrix.shape, dtype=np.int64),
        prefix + "bm25_idf": bm25.idf,
        prefix + "bm25_vocab": np.asarray(json.dumps(bm25.vocabulary, ensure_ascii=False)),
        **_bm25_arrays(bigram_index, prefix + "bm25c_"),
    }


def _bm25_arrays(index: BM25Index, prefix: str) -> dict[str, np.ndarray]:
    return {
        prefix + "data": index.matrix.data,
        prefix + "indices": index.matrix.indices,
        prefix + "indptr": index.matrix.indptr,
        prefix + "shape": np.asarray(index.matrix.shape, dtype=np.int64),
        prefix + "idf": index.idf,
        prefix + "vocab": np.asarray(json.dumps(index.vocabulary, ensure_ascii=False)),
    }


def _load_bm25(get: Any, prefix: str) -> BM25Index:
    return BM25Index.from_arrays(
        matrix=sparse.csc_matrix(
            (get(prefix + "data"), get(prefix + "indices"), get(prefix + "indptr")),
            shape=tuple(get(prefix + "shape")),
        ),
        idf=get(prefix + "idf"),
        vocabulary=json.loads(str(get(prefix + "vocab"))),
    )


class LoadedIndex:
    """A ready index version in memory: never changed after it is built."""

    def __init__(
        self, index_id: int, company_id: int, model: str, artifact: bytes, *, fingerprint: str = ""
    ) -> None:
        self.id = index_id
        self.fingerprint = fingerprint
        self.company_id = company_id
        self.model = model
        with np.load(io.BytesIO(artifact), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        self.faq = Part(arrays, "f_")
        self.passages = Part(arrays, "p_")
        self.faq.dense  # noqa: B018  build the FAISS indexes now, not inside the first query
        self.passages.dense  # noqa: B018


# --- building ----------------------------------------------------------------------------------


def _scope(source: KnowledgeSource) -> list[int] | None:
    return None if source.all_communities else source.community_ids


def fingerprint(session: Session, company_id: int, model: str) -> str:
    """What an index of the company's knowledge base with this model is built from: sources
    (version, content, scope), their FAQ entries and the format. Equal fingerprints: nothing to
    build. Reads only those columns, never the passages (the admin page asks on every poll)."""
    sources = session.execute(
        select(KnowledgeSource.id, KnowledgeSource.version, KnowledgeSource.content_sha256,
               KnowledgeSource.all_communities)
        .where(KnowledgeSource.company_id == company_id, KnowledgeSource.version > 0)  # 0: not parsed yet
        .order_by(KnowledgeSource.id)
    ).all()  # fmt: skip
    ids = [s.id for s in sources]
    scopes: dict[int, list[int]] = {i: [] for i in ids}
    for source_id, community_id in session.execute(
        select(source_community.c.source_id, source_community.c.community_id)
        .where(source_community.c.source_id.in_(ids))
        .order_by(source_community.c.community_id)
    ):
        scopes[source_id].append(community_id)
    entries: dict[int, list[int]] = {i: [] for i in ids}
    for source_id, entry_id in session.execute(
        select(FaqEntry.source_id, FaqEntry.id).where(FaqEntry.source_id.in_(ids)).order_by(FaqEntry.row)
    ):
        entries[source_id].append(entry_id)
    digest = hashlib.sha256(f"format:{FORMAT_VERSION}:{tokenizer_fingerprint()}".encode())
    for s in sources:
        digest.update(f"|{s.id}:{s.version}:{s.content_sha256}:{s.all_communities}:{scopes[s.id]}".encode())
        for entry_id in entries[s.id]:
            digest.update(f"|e{entry_id}".encode())
    return hashlib.sha256(f"{digest.hexdigest()}|{model}".encode()).hexdigest()


def collect(session: Session, company_id: int) -> tuple[Items, Items]:
    """The company's FAQ phrasings and passages, with their scopes and validity."""
    sources = session.scalars(
        select(KnowledgeSource)
        .where(KnowledgeSource.company_id == company_id)
        .options(
            selectinload(KnowledgeSource.communities),
            selectinload(KnowledgeSource.passages),
            selectinload(KnowledgeSource.faq_entries).selectinload(FaqEntry.communities),
        )
        .order_by(KnowledgeSource.id)
    ).all()
    faq, passages = Items(), Items()
    # "锦江苑停车费多少": the scope says which community; the name in the phrasing only blurs it.
    names = sorted(
        {c.name for c in session.scalars(select(Community).where(Community.company_id == company_id))},
        key=len,
        reverse=True,
    )
    for source in sources:
        scope = _scope(source)
        if source.kind is SourceKind.document:
            for p in source.passages:
                # The headings go with the text: "3.2 电梯困人应急处置标准" is often what matches.
                passages.add("passage", p.id, f"{source.title} {p.section}\n{p.text}", scope)
            continue
        for entry in source.faq_entries:
            own = [c.id for c in entry.communities]
            if own and scope is not None:
                own = [c for c in own if c in scope]
            entry_scope = own or scope
            for phrasing in dict.fromkeys(_without_names(q, names) for q in [entry.question, *entry.similar]):
                faq.add("faq", entry.id, phrasing, entry_scope, entry.effective_from, entry.effective_until)
            answer = f"{_without_names(entry.question, names)}\n{entry.answer}"
            passages.add("faq", entry.id, answer, entry_scope, entry.effective_from, entry.effective_until)
    return faq, passages


def _without_names(phrasing: str, names: list[str]) -> str:
    for name in names:
        phrasing = phrasing.replace(name, "")
    return phrasing.strip(" ，,的") or phrasing


def current_index(session: Session, company_id: int) -> KnowledgeIndex | None:
    return session.scalar(
        select(KnowledgeIndex)
        .where(KnowledgeIndex.company_id == company_id, KnowledgeIndex.status == IndexStatus.ready)
        .order_by(KnowledgeIndex.id.desc())
        .limit(1)
    )


def _previous_vectors(session: Session, company_id: int, model: str) -> dict[bytes, np.ndarray]:
    """Vectors of the current index by text hash, so unchanged texts are not embedded again."""
    previous = current_index(session, company_id)
    if previous is None or previous.embedding_model != model or not previous.artifact:
        return {}
    reuse: dict[bytes, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(previous.artifact), allow_pickle=False) as data:
            for prefix in ("f_", "p_"):
                for sha, vector in zip(data[prefix + "text_sha"], data[prefix + "vectors"], strict=True):
                    reuse[bytes(sha)] = vector
    except (KeyError, ValueError) as exc:  # an older layout: embed everything again
        log.info("previous index %s not reusable: %s", previous.id, exc)
    return reuse


# Vectors this process computed, by model and text: a rebuild in the same process (the CLI, tests,
# a long-lived worker) does not embed the same text twice. Bounded: ~30 MB of 384-d vectors.
RECENT_LIMIT = 20_000
_recent: dict[str, dict[bytes, np.ndarray]] = {}


def _embed(
    texts: Sequence[str], encoder: Encoder, reuse: dict[bytes, np.ndarray], *, as_queries: bool
) -> tuple[np.ndarray, int]:
    shas = [_sha(t) for t in texts]
    cache = _recent.setdefault(f"{encoder.name}|{as_queries}", {})
    reuse = {**{s: cache[s] for s in shas if s in cache}, **reuse}
    missing = [i for i, s in enumerate(shas) if s not in reuse]
    fresh: list[list[float]] = []
    if missing:
        batch = [texts[i] for i in missing]
        fresh = encoder.embed_queries(batch) if as_queries else encoder.embed_documents(batch)
    computed = dict(zip(missing, fresh, strict=True))
    if len(cache) < RECENT_LIMIT:
        for i, vector in computed.items():
            cache[shas[i]] = np.asarray(vector, dtype=np.float32)
    rows = [
        np.asarray(computed[i], dtype=np.float32) if i in computed else reuse[s] for i, s in enumerate(shas)
    ]
    if not rows:
        return np.zeros((0, 1), dtype=np.float32), 0
    matrix = np.vstack(rows).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms), len(missing)


@dataclass
class BuildResult:
    index: KnowledgeIndex
    built: bool  # False: the current index already covers this knowledge base


def prepare_index(session: Session, company_id: int, encoder: Encoder, *, force: bool = False) -> BuildResult:
    """Read the knowledge base and build a new index version in memory (nothing written).

    Slow (embedding): run it in a read-only session, so writers are not held up. ``built`` False:
    the current index already covers the knowledge base. Texts already embedded by the current
    index with the same model are reused.
    """
    started = time.perf_counter()
    built_from = fingerprint(session, company_id, encoder.name)
    current = current_index(session, company_id)
    if current is not None and current.fingerprint == built_from and not force:
        return BuildResult(index=current, built=False)
    faq, passages = collect(session, company_id)

    reuse = _previous_vectors(session, company_id, encoder.name)
    faq_vectors, faq_new = _embed(faq.texts, encoder, reuse, as_queries=True)
    passage_vectors, passage_new = _embed(passages.texts, encoder, reuse, as_queries=False)
    dim = max(faq_vectors.shape[1], passage_vectors.shape[1])
    if faq_vectors.shape[1] != dim:
        faq_vectors = np.zeros((0, dim), dtype=np.float32)
    if passage_vectors.shape[1] != dim:
        passage_vectors = np.zeros((0, dim), dtype=np.float32)
    arrays = {**_part_arrays(faq, faq_vectors, "f_"), **_part_arrays(passages, passage_vectors, "p_")}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    artifact = buffer.getvalue()
    index = KnowledgeIndex(
        company_id=company_id,
        status=IndexStatus.ready,
        fingerprint=built_from,
        embedding_model=encoder.name,
        passages=passages.kinds.count("passage"),
        faq_entries=len(set(faq.ids)),
        size_bytes=len(artifact),
        embedded=faq_new + passage_new,
        artifact=artifact,
        build_seconds=round(time.perf_counter() - started, 3),
        built_at=dt.datetime.now(dt.UTC),
    )
    log.info(
        "knowledge index for company %s built: %d passages, %d FAQ phrasings, %d embedded, %.1f s",
        company_id, index.passages, len(faq.ids), index.embedded, index.build_seconds,
    )  # fmt: skip
    return BuildResult(index=index, built=True)


def publish_index(session: Session, prepared: BuildResult) -> BuildResult:
    """Make a prepared version current (one short write: readers see the old or the new, whole)."""
    if not prepared.built:
        return prepared
    index = prepared.index
    current = current_index(session, index.company_id)
    if current is not None and current.fingerprint == index.fingerprint:
        return BuildResult(index=current, built=False)  # an equal version was published meanwhile
    session.add(index)
    session.flush()
    _prune(session, index.company_id, keep_from=index.id)
    return BuildResult(index=index, built=True)


def _prune(session: Session, company_id: int, keep_from: int) -> None:
    ready = session.scalars(
        select(KnowledgeIndex.id)
        .where(KnowledgeIndex.company_id == company_id, KnowledgeIndex.status == IndexStatus.ready)
        .order_by(KnowledgeIndex.id.desc())
    ).all()
    old = [i for i in ready[KEEP_VERSIONS:] if i != keep_from]
    if old:
        session.execute(delete(KnowledgeIndex).where(KnowledgeIndex.id.in_(old)))
