"""Knowledge base operations: ingest, replace, list and delete sources, scoped to communities."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePath

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from core.db import get_database
from core.errors import AnjuError, InvalidInput, NotFound
from core.settings import Settings
from core.tables import check_table
from core.uploads import (
    ParseTimeout,
    UploadLimits,
    cpu_budget,
    default_limits,
    is_timeout,
    parse_job_timeout,
)
from knowledge.chunking import Passage as ParsedPassage
from knowledge.faq import FaqRow, read_faq_table
from knowledge.index import BuildResult, current_index, fingerprint, prepare_index, publish_index
from knowledge.ingest import parse_document
from knowledge.models import FaqEntry, KnowledgeSource, Passage, SourceKind, SourceStatus
from knowledge.readers import check_document
from knowledge.screening import Official, screen
from org.imports import RowError
from org.models import Community

log = logging.getLogger(__name__)

FAQ_SUFFIXES = (".csv", ".xlsx", ".xlsm")
# Parse jobs started for one upload before it is failed: a file that kills its worker (memory,
# a hard timeout) is tried twice, then reported, never retried forever.
MAX_PARSE_ATTEMPTS = 2


@dataclass
class IngestResult:
    source: KnowledgeSource
    created: bool  # False when the same file with the same scope was already there
    errors: list[RowError] = field(default_factory=list)  # FAQ rows left out, with reasons


@dataclass(frozen=True)
class ParsedUpload:
    """What a worker read from an upload: the source's next version, not yet stored."""

    title: str
    passages: list[ParsedPassage] = field(default_factory=list)  # a document's
    rows: list[FaqRow] = field(default_factory=list)  # an FAQ table's
    errors: list[RowError] = field(default_factory=list)  # FAQ rows left out


@dataclass(frozen=True)
class ParseOutcome:
    source_id: int
    company_id: int
    status: SourceStatus | None  # None: the upload was replaced or deleted meanwhile
    error: str | None = None

    @property
    def applied(self) -> bool:
        return self.status is SourceStatus.ready


def source_kind(filename: str) -> SourceKind:
    return SourceKind.faq if PurePath(filename).suffix.lower() in FAQ_SUFFIXES else SourceKind.document


def _company_communities(session: Session, company_id: int) -> list[Community]:
    return list(session.scalars(select(Community).where(Community.company_id == company_id)))


def check_upload(filename: str, content: bytes, *, limits: UploadLimits) -> SourceKind:
    """The request's checks (type, not empty, no declared zip bomb); parsing is the worker's."""
    kind = source_kind(filename)
    if kind is SourceKind.faq:
        check_table(filename, content, limits=limits)
    else:
        check_document(filename, content, limits=limits)
    return kind


def _scope_names(
    communities: Sequence[tuple[int, str, str]], scope_ids: list[int] | None
) -> tuple[dict[str, int], frozenset[str]]:
    """For an FAQ table: (code and name → id of each community in scope, the others' names)."""
    allowed = [c for c in communities if scope_ids is None or c[0] in scope_ids]
    names = {key: c[0] for c in allowed for key in (c[1], c[2])}
    others = frozenset(key for c in communities if c not in allowed for key in (c[1], c[2]))
    return names, others


def parse_upload(
    *,
    filename: str,
    content: bytes,
    communities: Sequence[tuple[int, str, str]],
    scope_ids: list[int] | None,
    limits: UploadLimits,
) -> ParsedUpload:
    """Read an upload into passages or FAQ rows (the expensive part: a worker's).

    ``communities`` are the company's (id, code, name); ``scope_ids`` those the file applies to
    (None: all). Raises an AnjuError with the reason when the file cannot be used.
    """
    if source_kind(filename) is SourceKind.document:
        parsed = parse_document(filename, content, limits=limits)
        return ParsedUpload(title=parsed.title, passages=parsed.passages)
    names, others = _scope_names(communities, scope_ids)
    table = read_faq_table(filename, content, communities=names, out_of_scope=others, limits=limits)
    if not table.rows:
        raise InvalidInput(
            "表格里没有可用的问答：" + "；".join(f"第 {e.row} 行 {e.message}" for e in table.errors[:3])
        )
    return ParsedUpload(title=PurePath(filename).stem, rows=table.rows, errors=table.errors)


def accept_upload(
    *,
    session: Session,
    company_id: int,
    filename: str,
    content: bytes,
    limits: UploadLimits,
    community_ids: list[int] | None = None,
    created_by: int | None = None,
    replace_source_id: int | None = None,
) -> IngestResult:
    """Store an upload for its parse job, after the checks that are cheap (see check_upload).

    ``community_ids`` None: every community of the company; otherwise only those. A new source
    has version 0 until its parse succeeds; a replaced one keeps serving its current version
    meanwhile (and if the parse fails). Uploading the same bytes with the same scope again returns
    the stored source unchanged (``created`` False).
    """
    kind = check_upload(filename, content, limits=limits)
    communities = _company_communities(session, company_id)
    by_id = {c.id: c for c in communities}
    scope: list[Community] = []
    if community_ids is not None:
        if not community_ids:
            raise InvalidInput("请选择适用的小区，或设为全部小区")
        unknown = [i for i in community_ids if i not in by_id]
        if unknown:
            raise NotFound(f"找不到小区 {unknown[0]}")
        scope = [by_id[i] for i in dict.fromkeys(community_ids)]
    scope_ids = None if community_ids is None else [c.id for c in scope]
    digest = hashlib.sha256(content).hexdigest()

    if replace_source_id is None:
        for existing in session.scalars(
            select(KnowledgeSource)
            .where(
                KnowledgeSource.company_id == company_id,
                or_(KnowledgeSource.content_sha256 == digest, KnowledgeSource.pending_sha256 == digest),
            )
            .options(selectinload(KnowledgeSource.communities))
        ):
            if existing.pending_sha256 == digest:  # still waiting for its parse: its scope is pending
                everywhere, ids = existing.pending_scope is None, set(existing.pending_scope or [])
            else:
                everywhere, ids = existing.all_communities, set(existing.community_ids)
            if everywhere == (scope_ids is None) and ids == set(scope_ids or []):
                return IngestResult(source=existing, created=False)
        source = KnowledgeSource(
            company_id=company_id,
            kind=kind,
            created_by=created_by,
            title=PurePath(filename).stem[:300] or "未命名",
            filename=PurePath(filename).name[:255],
            content=b"",
            content_sha256="",
            size_bytes=0,
            version=0,
            all_communities=scope_ids is None,
            communities=scope,
        )
        session.add(source)
    else:
        source = get_source(session=session, source_id=replace_source_id, company_id=company_id)
        if source.kind is not kind:
            raise InvalidInput("替换的文件类型需与原文件一致（文档换文档，问答表换问答表）")
    source.status = SourceStatus.parsing
    source.error = None
    source.pending_content = content
    source.pending_sha256 = digest
    source.pending_filename = PurePath(filename).name[:255]
    source.pending_scope = scope_ids
    source.parse_attempts = 0
    session.flush()
    log.info(
        "knowledge upload stored for source %s (%s, %d bytes): waiting for its parse",
        source.id, kind.value, len(content),
    )  # fmt: skip
    return IngestResult(source=source, created=replace_source_id is None)


def _apply(session: Session, source: KnowledgeSource, parsed: ParsedUpload) -> None:
    """Make the pending upload, as parsed, the source's next version (one short write)."""
    content = source.pending_content or b""
    scope_ids = source.pending_scope
    by_id = {c.id: c for c in _company_communities(session, source.company_id)}
    source.passages.clear()
    source.faq_entries.clear()
    session.flush()
    source.version += 1
    source.title = parsed.title[:300]
    source.filename = source.pending_filename or source.filename
    source.content = content
    source.content_sha256 = source.pending_sha256 or hashlib.sha256(content).hexdigest()
    source.size_bytes = len(content)
    source.all_communities = scope_ids is None
    source.communities = [by_id[i] for i in scope_ids or [] if i in by_id]
    source.passages.extend(
        Passage(ordinal=p.ordinal, section=p.section()[:500], text=p.text) for p in parsed.passages
    )
    for row in parsed.rows:
        entry = FaqEntry(
            row=row.row,
            question=row.question,
            similar=list(row.similar),
            answer=row.answer,
            category=row.category,
            effective_from=row.effective_from,
            effective_until=row.effective_until,
        )
        entry.communities = [by_id[i] for i in row.community_ids if i in by_id]
        source.faq_entries.append(entry)
    source.row_errors = [asdict(e) for e in parsed.errors] or None
    source.status = SourceStatus.ready
    source.error = None
    source.pending_content = source.pending_sha256 = source.pending_filename = None
    source.pending_scope = None
    source.parse_attempts = 0
    session.flush()
    log.info(
        "knowledge source %s v%s (%s): %d passages, %d FAQ entries, %d rows left out",
        source.id, source.version, source.kind.value, len(parsed.passages), len(parsed.rows),
        len(parsed.errors),
    )  # fmt: skip


def _fail(source: KnowledgeSource, reason: str) -> None:
    """The pending upload cannot be used: say why; the current version is left as it was."""
    source.status = SourceStatus.failed
    source.error = reason
    source.pending_content = source.pending_sha256 = None  # the name stays: the page says which file
    source.pending_scope = None
    log.info("knowledge upload for source %s failed to parse: %s", source.id, reason)


def _company_refs(session: Session, company_id: int) -> list[tuple[int, str, str]]:
    return [(c.id, c.code, c.name) for c in _company_communities(session, company_id)]


def ingest(
    *,
    session: Session,
    company_id: int,
    filename: str,
    content: bytes,
    community_ids: list[int] | None = None,
    created_by: int | None = None,
    replace_source_id: int | None = None,
    limits: UploadLimits | None = None,
) -> IngestResult:
    """Store and parse a document or FAQ table at once, in this transaction (the CLI, demo data,
    benchmarks: processes of their own). The API stores (accept_upload) and a worker parses
    (parse_pending). A file that cannot be parsed raises: the caller's transaction stores nothing.
    """
    limits = limits or default_limits()
    accepted = accept_upload(
        session=session, company_id=company_id, filename=filename, content=content, limits=limits,
        community_ids=community_ids, created_by=created_by, replace_source_id=replace_source_id,
    )  # fmt: skip
    source = accepted.source
    if source.pending_sha256 is None or (not accepted.created and replace_source_id is None):
        return accepted
    parsed = parse_upload(
        filename=filename, content=content, communities=_company_refs(session, company_id),
        scope_ids=source.pending_scope, limits=limits,
    )  # fmt: skip
    _apply(session, source, parsed)
    return IngestResult(source=source, created=accepted.created, errors=parsed.errors)


def _locked_source(session: Session, source_id: int) -> KnowledgeSource | None:
    return session.scalar(
        select(KnowledgeSource)
        .where(KnowledgeSource.id == source_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def parse_pending(settings: Settings, *, source_id: int, sha256: str) -> ParseOutcome:
    """Parse a source's pending upload (the parse job): apply it as the next version, or mark it
    failed with the reason. Never raises for a bad file; the current version serves throughout.

    Three short transactions around the parse, which holds none: count the attempt (committed
    first, so a file that kills its worker is failed after MAX_PARSE_ATTEMPTS), parse under a CPU
    budget, then apply, unless a newer upload or a deletion came in meanwhile.
    """
    database = get_database(settings)
    limits = UploadLimits.from_settings(settings)
    with database.session() as session:
        source = _locked_source(session, source_id)
        if source is None or source.pending_sha256 != sha256:
            company_id = source.company_id if source else 0
            return ParseOutcome(source_id=source_id, company_id=company_id, status=None)
        source.parse_attempts += 1
        attempts = source.parse_attempts
        company_id = source.company_id
        filename = source.pending_filename or source.filename
        content = source.pending_content or b""
        scope_ids = source.pending_scope
        communities = _company_refs(session, company_id)
    parsed: ParsedUpload | None = None
    if attempts > MAX_PARSE_ATTEMPTS:
        error = "解析多次中断（超时或内存不足），文件可能过于复杂，请检查或拆分后重新上传"
    else:
        seconds = settings.upload_parse_timeout_seconds
        try:
            with cpu_budget(seconds):
                parsed = parse_upload(
                    filename=filename, content=content, communities=communities, scope_ids=scope_ids,
                    limits=limits,
                )  # fmt: skip
            error = ""
        except AnjuError as exc:
            error = exc.message
        except (ParseTimeout, Exception) as exc:
            if not is_timeout(exc):
                raise  # not the file's doing (the database, a bug): rq retries the job
            error = f"解析超时（超过 {seconds} 秒），文件可能过于复杂，请拆分后重新上传"
    with database.session() as session:
        source = _locked_source(session, source_id)
        if source is None or source.pending_sha256 != sha256:
            return ParseOutcome(source_id=source_id, company_id=company_id, status=None)
        if parsed is None:
            _fail(source, error)
        else:
            _apply(session, source, parsed)
        return ParseOutcome(
            source_id=source_id, company_id=company_id, status=source.status, error=source.error
        )


def parse_job_id(source_id: int, sha256: str) -> str:
    return f"knowledge-parse-{source_id}-{sha256[:16]}"


def request_parse(settings: Settings, *, source_id: int, sha256: str) -> str:
    """Queue the parse of a stored upload (after its commit). Idempotent while the job waits."""
    from rq import Retry

    from core.queue import enqueue
    from knowledge import tasks

    return enqueue(
        tasks.parse_source, queue="low", job_id=parse_job_id(source_id, sha256),
        retry=Retry(max=MAX_PARSE_ATTEMPTS, interval=[5, 15]),  # a killed work-horse
        job_timeout=parse_job_timeout(settings.upload_parse_timeout_seconds), settings=settings,
        source_id=source_id, sha256=sha256,
    ).id  # fmt: skip


def queue_pending_parses(settings: Settings) -> list[int]:
    """Periodic: queue the parse of every upload still waiting for one (Redis was down when it
    was stored, or its job was lost). Jobs already waiting or running are not queued twice."""
    with get_database(settings).session(readonly=True) as session:
        pending = session.execute(
            select(KnowledgeSource.id, KnowledgeSource.pending_sha256).where(
                KnowledgeSource.status == SourceStatus.parsing, KnowledgeSource.pending_sha256.is_not(None)
            )
        ).all()
    for source_id, sha256 in pending:
        request_parse(settings, source_id=source_id, sha256=str(sha256))
    return [source_id for source_id, _ in pending]


def get_source(*, session: Session, source_id: int, company_id: int | None = None) -> KnowledgeSource:
    source = session.get(KnowledgeSource, source_id)
    if source is None or (company_id is not None and source.company_id != company_id):
        raise NotFound("找不到该知识文件")
    return source


def list_sources(
    *, session: Session, company_id: int, community_id: int | None = None
) -> list[KnowledgeSource]:
    """The company's sources; with ``community_id``, those that apply to that community."""
    sources = session.scalars(
        select(KnowledgeSource)
        .where(KnowledgeSource.company_id == company_id)
        .options(selectinload(KnowledgeSource.communities))
        .order_by(KnowledgeSource.id)
    ).all()
    if community_id is None:
        return list(sources)
    return [s for s in sources if s.applies_to(community_id)]


def delete_source(*, session: Session, source_id: int, company_id: int | None = None) -> None:
    session.delete(get_source(session=session, source_id=source_id, company_id=company_id))
    session.flush()


def faq_entries_for(*, session: Session, community_id: int, day: dt.date) -> list[FaqEntry]:
    """The FAQ entries a resident of this community may be answered from today."""
    community = session.get(Community, community_id)
    if community is None:
        raise NotFound("找不到该小区")
    entries = session.scalars(
        select(FaqEntry)
        .join(KnowledgeSource)
        .where(KnowledgeSource.company_id == community.company_id)
        .options(
            selectinload(FaqEntry.communities),
            selectinload(FaqEntry.source).selectinload(KnowledgeSource.communities),
        )
        .order_by(FaqEntry.id)
    ).all()
    return [entry for entry in entries if entry.applies_to(community_id, day)]


INDEX_JOB_SECONDS = 3600  # a first build of a large knowledge base embeds for many minutes
INDEX_LOCK_SECONDS = INDEX_JOB_SECONDS + 300  # one company's build at a time; a dead builder's lock expires


def rebuild_index(settings: Settings, *, company_id: int, force: bool = False) -> BuildResult:
    """Build the company's index under its Redis lock, in its own transaction.

    Two builds for one company never run at once: the second waits, then finds the index current
    (same fingerprint) and returns without work, unless sources changed in between. Without a
    reachable Redis (a CLI run while the service is stopped) it builds unlocked: two concurrent
    builds would each still write a whole, consistent version, the later one current.
    """
    import redis as redis_lib

    from core.redis import get_redis
    from knowledge.retrieval import get_search

    encoder = get_search(settings).encoder
    lock = get_redis(settings).lock(
        _lock_key(company_id), timeout=INDEX_LOCK_SECONDS, blocking_timeout=INDEX_LOCK_SECONDS
    )
    try:
        if not lock.acquire():
            raise InvalidInput("另一个索引任务运行太久，稍后会自动重试")  # the job's retry comes back later
    except (redis_lib.ConnectionError, redis_lib.TimeoutError):
        lock = None
        log.info("Redis unreachable: building the knowledge index without the build lock")
    try:
        database = get_database(settings)
        with database.session(readonly=True) as session:  # the slow part holds no write lock
            prepared = prepare_index(session, company_id, encoder, force=force)
        if not prepared.built:
            return prepared
        with database.session() as session:
            return publish_index(session, prepared)
    finally:
        if lock is not None:
            try:
                lock.release()
            except (redis_lib.ConnectionError, redis_lib.TimeoutError, redis_lib.exceptions.LockError):
                log.warning("knowledge index build lock of company %s already expired", company_id)


def _lock_key(company_id: int) -> str:
    return f"anju:knowledge-index:{company_id}"


def _pending_key(company_id: int) -> str:
    return f"anju:knowledge-index-pending:{company_id}"


def request_index_build(settings: Settings, *, company_id: int) -> str:
    """Queue a re-index after the knowledge base changed (call after the change is committed).

    A build still waiting in the queue covers this change too; a build already running may have
    read the sources before it, so another is queued behind it (and finds nothing to do if the
    running one saw everything).
    """
    import uuid

    from core.queue import enqueue, get_queue
    from core.redis import get_redis
    from knowledge import tasks

    redis = get_redis(settings)
    waiting = redis.get(_pending_key(company_id))
    if waiting is not None:
        job = get_queue("low", settings=settings).fetch_job(
            waiting.decode() if isinstance(waiting, bytes) else waiting
        )
        if job is not None and job.get_status(refresh=False) in ("queued", "scheduled", "deferred"):
            return job.id
    job_id = f"knowledge-index-{company_id}-{uuid.uuid4().hex[:12]}"
    redis.set(_pending_key(company_id), job_id, ex=INDEX_LOCK_SECONDS)
    return enqueue(
        tasks.build_index, queue="low", job_id=job_id, job_timeout=INDEX_JOB_SECONDS, settings=settings,
        company_id=company_id,
    ).id  # fmt: skip


def index_build_started(settings: Settings, *, company_id: int, job_id: str | None) -> None:
    """A build job took over: a later change must queue a new one."""
    from core.redis import get_redis

    redis = get_redis(settings)
    if job_id is not None and redis.get(_pending_key(company_id)) == job_id.encode():
        redis.delete(_pending_key(company_id))


# A stale index is queued again at most this often: a build that keeps failing (a model that cannot
# load) is not retried by every sweep, and a build that is slow to start is not queued twice.
STALE_REQUEUE_SECONDS = 600


def companies_with_stale_index(session: Session, *, model: str) -> list[int]:
    """Companies whose current index no longer covers their knowledge base as it would be built
    now: sources changed and nobody queued the build (Redis was down at the change), the tokeniser's
    dictionary or the index format changed with an upgrade, or the operator switched the embeddings
    model. A company with no sources is never stale."""
    stale = []
    parsed = select(KnowledgeSource.company_id).where(KnowledgeSource.version > 0).distinct()
    for company_id in session.scalars(parsed).all():
        current = current_index(session, company_id)  # the artifact column is deferred: not read
        if current is None or current.fingerprint != fingerprint(session, company_id, model):
            stale.append(company_id)
    return stale


def queue_stale_index_builds(settings: Settings) -> list[int]:
    """Queue a build for every company whose index is stale and that has none waiting or running
    (periodic, knowledge.tasks.sweep). Returns the companies queued."""
    from core.redis import get_redis
    from knowledge.embeddings import make_embeddings

    model = make_embeddings(settings).name  # the name only: the model loads on first use
    with get_database(settings).session(readonly=True) as session:
        stale = companies_with_stale_index(session, model=model)
    redis = get_redis(settings)
    queued = []
    for company_id in stale:
        if redis.exists(_pending_key(company_id), _lock_key(company_id)):
            continue  # a build is waiting or running: it will see the change
        if redis.set(f"anju:knowledge-index-stale:{company_id}", 1, nx=True, ex=STALE_REQUEUE_SECONDS):
            request_index_build(settings, company_id=company_id)
            queued.append(company_id)
            log.info("knowledge index of company %s is stale: build queued", company_id)
    return queued


# What a resident may be told as fact (knowledge.screening): the FAQ's part is read again only when
# the FAQ changed (entries are replaced, never edited in place, so their count and newest id tell).
_faq_facts: dict[tuple[str, int], tuple[tuple[int, int], Official]] = {}


def official_facts(session: Session, company_id: int) -> Official:
    """The company's service phone, its communities' duty phones, and what its FAQ states."""
    from org.models import Company

    phones = [
        phone
        for row in session.execute(
            select(Company.service_phone, Community.duty_phone)
            .outerjoin(Community, Community.company_id == Company.id)
            .where(Company.id == company_id)
        )
        for phone in row
    ]
    company_entries = (
        select(func.count(FaqEntry.id), func.coalesce(func.max(FaqEntry.id), 0))
        .join(KnowledgeSource)
        .where(KnowledgeSource.company_id == company_id)
    )
    count, newest = session.execute(company_entries).one()
    key = (str(session.get_bind().engine.url), company_id)
    cached = _faq_facts.get(key)
    if cached is None or cached[0] != (count, newest):
        rows = session.execute(
            select(FaqEntry.question, FaqEntry.answer)
            .join(KnowledgeSource)
            .where(KnowledgeSource.company_id == company_id)
        ).all()
        faq = Official.build(phones=[], faq_texts=[t for row in rows for t in row])
        cached = _faq_facts[key] = ((count, newest), faq)
    faq = cached[1]
    return Official.build(phones=phones, faq_texts=()).merged(faq)


@dataclass(frozen=True)
class Flag:
    """A part of a source held back from residents (knowledge.screening), for the admin to see."""

    where: str  # 第 3 段 一、收费 › 1.2 / 第 5 行 物业费怎么交
    excerpt: str
    reason: str  # what happens to it, in Chinese
    detail: str = ""  # the number, fee or link that caused it


FLAG_EXCERPT_CHARS = 80
_flag_cache: dict[tuple[str, int, int, str, Official], list[Flag]] = {}
_FLAG_CACHE_SIZE = 2048


def source_flags(
    session: Session, *, company_id: int, sources: list[KnowledgeSource]
) -> dict[int, list[Flag]]:
    """What of each source is held back from residents, and why. Computed from the stored text when
    a source or the company's official facts changed, otherwise remembered."""
    official = official_facts(session, company_id)
    database = str(session.get_bind().engine.url)
    flags: dict[int, list[Flag]] = {}
    missing = []
    for source in sources:
        cached = _flag_cache.get((database, source.id, source.version, source.content_sha256, official))
        if cached is None:
            missing.append(source)
        else:
            flags[source.id] = cached
    if not missing:
        return flags
    ids = [s.id for s in missing]
    found: dict[int, list[Flag]] = {i: [] for i in ids}

    def add(source_id: int, where: str, text: str, facts: Official | None) -> None:
        for held in screen(text, facts).held:
            excerpt = " ".join(held.sentence.split())
            if len(excerpt) > FLAG_EXCERPT_CHARS:
                excerpt = excerpt[: FLAG_EXCERPT_CHARS - 1] + "…"
            found[source_id].append(Flag(where, excerpt, held.reason.value, held.detail))

    for source in missing:
        add(source.id, "标题", source.title, None)
    passages = session.execute(
        select(Passage.source_id, Passage.ordinal, Passage.section, Passage.text)
        .where(Passage.source_id.in_(ids))
        .order_by(Passage.source_id, Passage.ordinal)
    )
    for source_id, ordinal, section, text in passages:
        where = f"第 {ordinal + 1} 段" + (f" {section}" if section else "")
        add(source_id, where, section, None)
        add(source_id, where, text, official)
    entries = session.execute(
        select(FaqEntry.source_id, FaqEntry.row, FaqEntry.question, FaqEntry.similar, FaqEntry.answer)
        .where(FaqEntry.source_id.in_(ids))
        .order_by(FaqEntry.source_id, FaqEntry.row)
    )
    for source_id, row, question, similar, answer in entries:
        # The FAQ states the company's facts itself: only text that addresses a model is held back.
        add(source_id, f"第 {row} 行 {question}", "\n".join([question, *similar, answer]), None)
    if len(_flag_cache) > _FLAG_CACHE_SIZE:
        _flag_cache.clear()
    for source in missing:
        _flag_cache[(database, source.id, source.version, source.content_sha256, official)] = found[source.id]
        flags[source.id] = found[source.id]
        if found[source.id]:
            log.warning("knowledge source %s v%s: %d part(s) held back from residents", source.id,
                        source.version, len(found[source.id]))  # fmt: skip
    return flags
