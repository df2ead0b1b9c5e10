"""The sources API: what to watch (CRUD and YAML import, admins), "run now", and each source's
recent runs. PR staff may read.

A source's login material (cookies, headers, proxy) is a credential: it is never sent back; the
API shows a placeholder, and a PUT that sends the placeholder back keeps the stored value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from starlette.datastructures import UploadFile

from accounts.deps import AdminUser, roles
from accounts.models import Role, StaffUser
from core.deps import SessionDep, SettingsDep
from core.errors import Conflict, InvalidInput
from core.outbound import outbound_policy
from core.routing import CommittingRoute
from crawlers import service, tasks
from crawlers.errors import BadSourceFile
from crawlers.models import CrawlRun, Source
from crawlers.schemas import CrawlRunRead, ImportResult, PreviewState, SourceIn, SourceRead
from org.models import Community

router = APIRouter(tags=["crawl"], route_class=CommittingRoute)

ReaderUser = Annotated[StaffUser, Depends(roles(Role.pr, Role.supervisor, Role.admin))]
HIDDEN = "******"  # what a credential in a source's config reads as
SECRET_CONFIG_KEYS = frozenset({"cookies", "cookie", "headers", "proxy", "password", "token"})
RECENT_RUNS = 20


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_read(run: CrawlRun) -> CrawlRunRead:
    return CrawlRunRead(
        id=run.id,
        source_id=run.source_id,
        status=run.status.value,
        started_at=run.started_at.isoformat(),
        finished_at=_iso(run.finished_at),
        error=run.error,
        stats=dict(run.stats or {}),
        **service.run_summary(run),
    )


def _public_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (HIDDEN if k in SECRET_CONFIG_KEYS and v else v) for k, v in (config or {}).items()}


def _keep_hidden(sent: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """A PUT of what GET returned: placeholders stand for the stored credentials."""
    return {k: (stored.get(k) if v == HIDDEN and k in SECRET_CONFIG_KEYS else v) for k, v in sent.items()}


def source_reads(session: SessionDep, sources: list[Source]) -> list[SourceRead]:
    runs = service.latest_runs(session=session, source_ids=[s.id for s in sources])
    ids = {s.community_id for s in sources if s.community_id}
    names = (
        dict(session.execute(select(Community.id, Community.name).where(Community.id.in_(ids))).all())
        if ids
        else {}
    )
    return [
        SourceRead(
            id=s.id,
            key=s.key,
            name=s.name,
            kind=s.kind.value,
            url=s.url,
            authority=s.authority.value,
            config=_public_config(s.config),
            enabled=s.enabled,
            interval_minutes=s.interval_minutes,
            community=names.get(s.community_id) if s.community_id else None,
            community_id=s.community_id,
            city=s.city,
            last_run_at=_iso(s.last_run_at),
            last_run=run_read(runs[s.id]) if s.id in runs else None,
        )
        for s in sources
    ]


@router.get("/api/crawl/sources", response_model=list[SourceRead])
def list_sources(user: ReaderUser, session: SessionDep) -> list[SourceRead]:
    """Every source of the company, with its latest run."""
    return source_reads(session, service.list_sources(session=session, company_id=user.company_id))


@router.post("/api/crawl/sources", response_model=SourceRead, status_code=201)
def create_source(body: SourceIn, user: AdminUser, session: SessionDep, settings: SettingsDep) -> SourceRead:
    if any(s.key == body.key for s in service.list_sources(session=session, company_id=user.company_id)):
        raise Conflict(f"采集源「{body.key}」已存在")
    source, _ = service.save_source(session=session, company_id=user.company_id, data=body,
                                    policy=outbound_policy(settings))  # fmt: skip
    return source_reads(session, [source])[0]


async def yaml_upload(request: Request) -> bytes:
    """The YAML file: the request body itself, or a form upload in the field ``file``."""
    limit = service.MAX_SOURCE_FILE_BYTES + 1
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise BadSourceFile("请上传采集源配置文件（表单字段 file）")
            return await upload.read(limit)
    return await request.body()


@router.post("/api/crawl/sources/import", response_model=ImportResult)
def import_sources(
    content: Annotated[bytes, Depends(yaml_upload)],
    user: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
) -> ImportResult:
    """``sources:`` followed by a list of sources (key, name, kind, url, …): each is created or
    updated by its key. All or nothing: one bad entry stores none, and the error names it."""
    if not content.strip():
        raise BadSourceFile("文件为空")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadSourceFile("文件不是 UTF-8 编码") from None
    created, updated = service.import_yaml(session=session, company_id=user.company_id, text=text,
                                           policy=outbound_policy(settings))  # fmt: skip
    return ImportResult(created=created, updated=updated)


@router.get("/api/crawl/sources/{key}", response_model=SourceRead)
def get_source(key: str, user: ReaderUser, session: SessionDep) -> SourceRead:
    return source_reads(session, [service.get_source(session=session, company_id=user.company_id, key=key)])[
        0
    ]


@router.put("/api/crawl/sources/{key}", response_model=SourceRead)
def update_source(
    key: str, body: SourceIn, user: AdminUser, session: SessionDep, settings: SettingsDep
) -> SourceRead:
    source = service.get_source(session=session, company_id=user.company_id, key=key)  # 404 first
    if body.key != source.key:
        raise InvalidInput("不能修改采集源的 key（请新建一个再删除旧的）")
    data = body.model_copy(update={"config": _keep_hidden(body.config, dict(source.config or {}))})
    source, _ = service.save_source(session=session, company_id=user.company_id, data=data,
                                    policy=outbound_policy(settings))  # fmt: skip
    return source_reads(session, [source])[0]


@router.delete("/api/crawl/sources/{key}", status_code=204)
def delete_source(key: str, user: AdminUser, session: SessionDep) -> Response:
    """The source and its runs; the posts it found stay."""
    service.delete_source(session=session, company_id=user.company_id, key=key)
    return Response(status_code=204)


@router.post("/api/crawl/sources/{key}/run", status_code=202)
def run_now(key: str, user: AdminUser, session: SessionDep, settings: SettingsDep) -> dict[str, str]:
    """Queue a crawl of this source now (one pending crawl per source: asking twice queues one)."""
    source = service.get_source(session=session, company_id=user.company_id, key=key)
    return {"job_id": tasks.queue_crawl(source_id=source.id, settings=settings), "source": source.key}


@router.post("/api/crawl/sources/{key}/preview", response_model=PreviewState, status_code=202)
def start_preview(key: str, user: AdminUser, session: SessionDep, settings: SettingsDep) -> PreviewState:
    """试采集: crawl the first few posts now without storing them (a worker runs it; poll GET)."""
    source = service.get_source(session=session, company_id=user.company_id, key=key)
    tasks.queue_preview(source_id=source.id, settings=settings)
    return PreviewState.model_validate(tasks.preview_state(source_id=source.id, settings=settings))


@router.get("/api/crawl/sources/{key}/preview", response_model=PreviewState)
def get_preview(key: str, user: AdminUser, session: SessionDep, settings: SettingsDep) -> PreviewState:
    """The latest 试采集 of this source: its status, and when finished the posts with what the
    store would make of each (about us or not, matched names, sentiment) and notes on problems."""
    source = service.get_source(session=session, company_id=user.company_id, key=key)
    return PreviewState.model_validate(tasks.preview_state(source_id=source.id, settings=settings))


@router.get("/api/crawl/sources/{key}/runs", response_model=list[CrawlRunRead])
def recent_runs(
    key: str, user: ReaderUser, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = RECENT_RUNS
) -> list[CrawlRunRead]:
    """The newest first, each with pages fetched, posts stored and skipped, and any error."""
    source = service.get_source(session=session, company_id=user.company_id, key=key)
    runs = session.scalars(
        select(CrawlRun).where(CrawlRun.source_id == source.id).order_by(CrawlRun.id.desc()).limit(limit)
    )
    return [run_read(r) for r in runs]
