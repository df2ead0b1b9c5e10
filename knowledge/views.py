"""API: the knowledge base — upload, list, read, replace and delete sources; the index's status.

Admins change the knowledge base; agents and supervisors read the sources that apply to their
communities. An upload is stored and answered at once (202); a worker parses it (rq, "low" queue)
and queues the re-index, or marks the source failed with the reason. A deletion queues the
re-index itself. The new index replaces the old one whole when it is ready.
"""

from __future__ import annotations

import logging
from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Form, Response, UploadFile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts import service as accounts_service
from accounts.deps import AdminUser, roles
from accounts.models import Role, StaffUser
from core.deps import SessionDep, SettingsDep
from core.errors import InvalidInput, NotFound, PayloadTooLarge
from core.routing import CommittingRoute
from core.settings import Settings
from core.types import MAX_ID, PathId, QueryId
from core.uploads import UploadLimits, size_label
from knowledge import index as knowledge_index
from knowledge import service
from knowledge.models import FaqEntry, KnowledgeSource, Passage
from knowledge.schemas import (
    CommunityRef,
    FaqEntryRead,
    FlagRead,
    IndexRead,
    IndexStatus,
    PassageRead,
    RowErrorRead,
    SourceDetail,
    SourceRead,
    SourceUpload,
)
from org.models import Community

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/knowledge", tags=["knowledge"], route_class=CommittingRoute)

# The people who answer residents read the knowledge base; only admins change it.
ReaderUser = Annotated[StaffUser, Depends(roles(Role.agent, Role.supervisor, Role.admin))]
# Repeated (community_ids=1&community_ids=2) or comma-separated (community_ids=1,2).
CommunityIdsForm = Annotated[list[str] | None, Form()]
AllCommunitiesForm = Annotated[bool, Form()]

INDEX_JOB_HEADER = "X-Index-Job-Id"  # a 204 has no body: the queued re-index is named here


# --- reading helpers (also used by the admin page) ------------------------------------------------


def _counts(session: Session, source_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(passages, FAQ entries) per source, counted in the database rather than loaded."""
    if not source_ids:
        return {}
    counted = {}
    for model in (Passage, FaqEntry):
        rows = session.execute(
            select(model.source_id, func.count())
            .where(model.source_id.in_(source_ids))
            .group_by(model.source_id)
        )
        counted[model] = {source_id: count for source_id, count in rows}
    passages, entries = counted[Passage], counted[FaqEntry]
    return {i: (passages.get(i, 0), entries.get(i, 0)) for i in source_ids}


def _refs(communities: list[Community]) -> list[CommunityRef]:
    return [CommunityRef(id=c.id, name=c.name) for c in communities]


def _source_read(
    source: KnowledgeSource, counts: tuple[int, int], flags: list[service.Flag] | None = None
) -> SourceRead:
    return SourceRead(
        id=source.id,
        kind=source.kind,
        title=source.title,
        filename=source.filename,
        size_bytes=source.size_bytes,
        version=source.version,
        all_communities=source.all_communities,
        communities=[] if source.all_communities else _refs(source.communities),
        passage_count=counts[0],
        faq_entry_count=counts[1],
        created_at=source.created_at,
        updated_at=source.updated_at,
        flags=[
            FlagRead(where=f.where, excerpt=f.excerpt, reason=f.reason, detail=f.detail) for f in flags or []
        ],
        status=source.status,
        error=source.error,
        pending_filename=source.pending_filename,
        row_errors=[RowErrorRead.model_validate(e) for e in source.row_errors or []],
    )


def source_read(session: Session, source: KnowledgeSource) -> SourceRead:
    flags = service.source_flags(session, company_id=source.company_id, sources=[source])
    return _source_read(source, _counts(session, [source.id])[source.id], flags[source.id])


def _visible(source: KnowledgeSource, community_ids: set[int] | None) -> bool:
    """``community_ids`` None: the whole company (admins)."""
    return community_ids is None or source.all_communities or bool(community_ids & set(source.community_ids))


def _reader_scope(session: Session, user: StaffUser) -> set[int] | None:
    if user.role is Role.admin:
        return None
    return accounts_service.accessible_community_ids(session=session, user=user)


def source_reads(*, session: Session, user: StaffUser, community_id: int | None = None) -> list[SourceRead]:
    """The sources this user may see (with ``community_id``: those that apply to it)."""
    if community_id is not None:
        community = session.get(Community, community_id)
        if community is None or community.company_id != user.company_id:
            raise NotFound("小区不存在")
        accounts_service.require_community(session=session, user=user, community_id=community_id)
    scope = _reader_scope(session, user)
    sources = [
        s
        for s in service.list_sources(session=session, company_id=user.company_id, community_id=community_id)
        if _visible(s, scope)
    ]
    counts = _counts(session, [s.id for s in sources])
    flags = service.source_flags(session, company_id=user.company_id, sources=sources)
    return [_source_read(s, counts[s.id], flags[s.id]) for s in sources]


def index_status(*, session: Session, company_id: int) -> IndexStatus:
    """The company's current index, and whether the sources changed since it was built."""
    current = knowledge_index.current_index(session, company_id)
    if current is None:
        has_sources = session.scalar(
            select(KnowledgeSource.id)
            .where(KnowledgeSource.company_id == company_id, KnowledgeSource.version > 0)
            .limit(1)
        )
        return IndexStatus(index=None, stale=has_sources is not None)
    return IndexStatus(
        index=IndexRead(
            id=current.id,
            passages=current.passages,
            faq_entries=current.faq_entries,
            embedding_model=current.embedding_model,
            built_at=current.built_at,
            build_seconds=current.build_seconds,
            size_bytes=current.size_bytes,
        ),
        stale=current.fingerprint
        != knowledge_index.fingerprint(session, company_id, current.embedding_model),
    )


# --- writing helpers --------------------------------------------------------------------------------


def _read_upload(file: UploadFile, settings: Settings) -> tuple[str, bytes]:
    if not file.filename:
        raise InvalidInput("请选择要上传的文件")
    content = file.file.read(settings.max_upload_bytes + 1)
    if len(content) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"文件不能超过 {size_label(settings.max_upload_bytes)}")
    if not content:
        raise InvalidInput("文件是空的")
    return file.filename, content


def _parse_scope(community_ids: list[str] | None, all_communities: bool) -> tuple[bool, list[int] | None]:
    """(whether the form names a scope, the community ids or None for every community)."""
    parts = [p.strip() for value in community_ids or [] for p in value.replace("，", ",").split(",")]
    parts = [p for p in parts if p]
    if parts and all_communities:
        raise InvalidInput("“全部小区”与指定小区只能选其一")
    if not parts:
        return all_communities, None
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise InvalidInput("小区编号应为数字") from None
    if any(not 1 <= i <= MAX_ID for i in ids):
        raise NotFound("小区不存在")
    return True, ids


def _reindex(session: Session, settings: Settings, company_id: int) -> str | None:
    """Commit the change, then queue the re-index (the job must find the change when it runs).

    The change stands even when the queue is unreachable: the status then stays stale and the
    next change queues a build that covers this one too.
    """
    session.commit()
    try:
        return service.request_index_build(settings, company_id=company_id)
    except redis.RedisError:
        log.exception("could not queue the knowledge index build of company %s", company_id)
        return None


def _queue_parse(session: Session, settings: Settings, source: KnowledgeSource) -> str | None:
    """Commit the stored upload, then queue its parse (the job must find it). Without a reachable
    queue the upload stays "parsing" and the periodic sweep queues it once Redis is back."""
    sha256 = source.pending_sha256
    source_id = source.id
    session.commit()
    if sha256 is None:
        return None
    try:
        return service.request_parse(settings, source_id=source_id, sha256=sha256)
    except redis.RedisError:
        log.exception("could not queue the parse of knowledge source %s", source_id)
        return None


def _upload_answer(session: Session, result: service.IngestResult, *, created: bool) -> SourceUpload:
    """Read before the commit, so the answer needs no second transaction."""
    return SourceUpload(source=source_read(session, result.source), created=created, parse_job_id=None)


# --- routes -------------------------------------------------------------------------------------------


@router.get("/sources", response_model=list[SourceRead])
def list_sources(user: ReaderUser, session: SessionDep, community_id: QueryId = None) -> list[SourceRead]:
    return source_reads(session=session, user=user, community_id=community_id)


@router.get("/sources/{source_id}", response_model=SourceDetail)
def get_source(source_id: PathId, user: ReaderUser, session: SessionDep) -> SourceDetail:
    source = service.get_source(session=session, source_id=source_id, company_id=user.company_id)
    if not _visible(source, _reader_scope(session, user)):
        raise NotFound("找不到该知识文件")
    flags = service.source_flags(session, company_id=source.company_id, sources=[source])[source.id]
    read = _source_read(source, (len(source.passages), len(source.faq_entries)), flags)
    return SourceDetail(
        **read.model_dump(),
        passages=[PassageRead(ordinal=p.ordinal, section=p.section, text=p.text) for p in source.passages],
        faq_entries=[
            FaqEntryRead(
                id=e.id,
                row=e.row,
                question=e.question,
                similar=list(e.similar),
                answer=e.answer,
                category=e.category,
                communities=_refs(e.communities),
                effective_from=e.effective_from,
                effective_until=e.effective_until,
            )
            for e in source.faq_entries
        ],
    )


@router.post("/sources", response_model=SourceUpload, status_code=202)
def upload_source(
    file: UploadFile,
    response: Response,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    community_ids: CommunityIdsForm = None,
    all_communities: AllCommunitiesForm = False,
) -> SourceUpload:
    """Upload a document (txt, md, html, docx, pdf) or an FAQ table (csv, xlsx).

    202: stored; a worker parses it (the source's ``status`` says parsing, ready or failed with
    the reason). A file whose container declares a bomb is refused here (413/422). No
    communities: it applies to every community of the company. The same file with the same scope
    again changes nothing (200, ``created`` false).
    """
    filename, content = _read_upload(file, settings)
    _, scope = _parse_scope(community_ids, all_communities)
    result = service.accept_upload(
        session=session,
        company_id=admin.company_id,
        filename=filename,
        content=content,
        limits=UploadLimits.from_settings(settings),
        community_ids=scope,
        created_by=admin.id,
    )
    answer = _upload_answer(session, result, created=result.created)
    if not result.created:
        response.status_code = 200
        return answer
    answer.parse_job_id = _queue_parse(session, settings, result.source)
    return answer


@router.put("/sources/{source_id}", response_model=SourceUpload, status_code=202)
def replace_source(
    source_id: PathId,
    file: UploadFile,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    community_ids: CommunityIdsForm = None,
    all_communities: AllCommunitiesForm = False,
) -> SourceUpload:
    """Replace a source's file (same id; version + 1 once a worker parsed it). Until then, and
    for good if it fails to parse, the current version keeps answering. Without a scope it keeps
    its communities."""
    source = service.get_source(session=session, source_id=source_id, company_id=admin.company_id)
    filename, content = _read_upload(file, settings)
    given, scope = _parse_scope(community_ids, all_communities)
    if not given:
        scope = None if source.all_communities else source.community_ids
    result = service.accept_upload(
        session=session,
        company_id=admin.company_id,
        filename=filename,
        content=content,
        limits=UploadLimits.from_settings(settings),
        community_ids=scope,
        created_by=admin.id,
        replace_source_id=source.id,
    )
    answer = _upload_answer(session, result, created=False)
    answer.parse_job_id = _queue_parse(session, settings, result.source)
    return answer


@router.delete("/sources/{source_id}", status_code=204)
def delete_source(
    source_id: PathId, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> Response:
    service.delete_source(session=session, source_id=source_id, company_id=admin.company_id)
    job_id = _reindex(session, settings, admin.company_id)
    return Response(status_code=204, headers={INDEX_JOB_HEADER: job_id} if job_id else None)


@router.get("/index", response_model=IndexStatus)
def get_index(user: ReaderUser, session: SessionDep) -> IndexStatus:
    return index_status(session=session, company_id=user.company_id)
