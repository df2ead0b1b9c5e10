"""Sources (configured data: page, API, YAML import) and crawl runs (start, record, schedule)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import get_database, utcnow
from core.settings import Settings
from crawlers.errors import BadSourceFile, SourceNotFound
from crawlers.models import CrawlRun, RunStatus, Source, SourceAuthority, SourceKind
from crawlers.schemas import SourceIn
from crawlers.spiders.base import SourceSpec
from org.models import Community

log = logging.getLogger(__name__)

MAX_SOURCE_FILE_BYTES = 512 * 1024


def list_sources(*, session: Session, company_id: int) -> list[Source]:
    return list(session.scalars(select(Source).where(Source.company_id == company_id).order_by(Source.key)))


def get_source(*, session: Session, company_id: int, key: str) -> Source:
    """By key (``anju crawl cuihu-tieba``) or id."""
    query = select(Source).where(Source.company_id == company_id)
    query = query.where(Source.id == int(key)) if key.isdigit() else query.where(Source.key == key)
    source = session.scalar(query)
    if source is None:
        raise SourceNotFound(f"没有采集源「{key}」")
    return source


def _community_id(session: Session, company_id: int, name: str | None) -> int | None:
    if not name:
        return None
    found = session.scalar(
        select(Community.id).where(Community.company_id == company_id, Community.name == name)
    )
    if found is None:
        raise BadSourceFile(f"没有名为「{name}」的小区")
    return found


def save_source(*, session: Session, company_id: int, data: SourceIn) -> tuple[Source, bool]:
    """Create or update the source with this key; returns (source, created)."""
    source = session.scalar(select(Source).where(Source.company_id == company_id, Source.key == data.key))
    created = source is None
    if source is None:
        source = Source(company_id=company_id, key=data.key)
        session.add(source)
    source.name = data.name
    source.kind = SourceKind(data.kind)
    source.url = data.url
    source.authority = SourceAuthority(data.authority)
    source.config = dict(data.config)
    source.enabled = data.enabled
    source.interval_minutes = data.interval_minutes
    source.community_id = _community_id(session, company_id, data.community)
    source.city = data.city
    session.flush()
    return source, created


def delete_source(*, session: Session, company_id: int, key: str) -> None:
    session.delete(get_source(session=session, company_id=company_id, key=key))


def import_yaml(*, session: Session, company_id: int, text: str | bytes) -> tuple[list[str], list[str]]:
    """``sources: [ {key, name, kind, url, ...}, ... ]`` (or a bare list). All or nothing."""
    import yaml

    if len(text) > MAX_SOURCE_FILE_BYTES:
        raise BadSourceFile("采集源配置文件过大（上限 512 KB）")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行" if mark is not None else ""
        raise BadSourceFile(f"YAML 格式错误{where}：{getattr(exc, 'problem', exc)}") from None
    entries = document.get("sources") if isinstance(document, dict) else document
    if not isinstance(entries, list) or not entries:
        raise BadSourceFile("文件中没有采集源（应为 sources: 列表）")
    parsed: list[SourceIn] = []
    for index, entry in enumerate(entries, start=1):
        try:
            parsed.append(SourceIn.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "条目"
            raise BadSourceFile(f"第 {index} 个采集源的 {field} 有误：{first['msg']}") from None
    keys = [p.key for p in parsed]
    if len(set(keys)) != len(keys):
        raise BadSourceFile("采集源 key 重复")
    created: list[str] = []
    updated: list[str] = []
    with session.begin_nested():
        for data in parsed:
            _, is_new = save_source(session=session, company_id=company_id, data=data)
            (created if is_new else updated).append(data.key)
    return created, updated


def spec_of(source: Source) -> SourceSpec:
    return SourceSpec(
        id=source.id,
        company_id=source.company_id,
        key=source.key,
        kind=source.kind.value,
        url=source.url,
        name=source.name,
        authority=source.authority.value,
        config=dict(source.config or {}),
        community_id=source.community_id,
        city=source.city,
    )


def start_run(*, session: Session, source: Source) -> CrawlRun:
    run = CrawlRun(source_id=source.id, status=RunStatus.running)
    session.add(run)
    source.last_run_at = utcnow()
    session.flush()
    return run


def finish_run(*, session: Session, run_id: int, stats: dict[str, Any], error: str | None) -> CrawlRun:
    run = session.get(CrawlRun, run_id)
    if run is None:
        raise SourceNotFound(f"没有采集记录 {run_id}")
    run.status = RunStatus.failed if error else RunStatus.finished
    run.finished_at = utcnow()
    run.stats = stats
    run.error = error[-4000:] if error else None
    return run


def run_summary(run: CrawlRun) -> dict[str, int]:
    stats = run.stats or {}
    skipped = sum(v for k, v in stats.items() if k.startswith("anju/") and "skipped" in k)
    return {
        "pages": int(stats.get("response_received_count", 0)),
        "stored": int(stats.get("anju/stored", 0)),
        "skipped": int(skipped),
    }


def latest_runs(*, session: Session, source_ids: list[int]) -> dict[int, CrawlRun]:
    latest: dict[int, CrawlRun] = {}
    if not source_ids:
        return latest
    for run in session.scalars(
        select(CrawlRun).where(CrawlRun.source_id.in_(source_ids)).order_by(CrawlRun.id.desc()).limit(500)
    ):
        latest.setdefault(run.source_id, run)
    return latest


def run_source(
    *,
    settings: Settings,
    source_id: int,
    dry_run: bool = False,
    processes: int = 1,
    overrides: dict[str, Any] | None = None,
) -> CrawlRun | list[dict[str, Any]]:
    """Crawl one source now, in a forked child (a reactor starts once per process). Recorded as a
    CrawlRun; ``dry_run`` returns what the spider found instead of storing it.

    With ``crawl_distributed`` (a Redis shared by several machines), ``processes - 1`` join jobs
    are queued first: any worker that takes one crawls the same run from the shared frontier.
    """
    database = get_database(settings)
    with database.session() as session:
        source = session.get(Source, source_id)
        if source is None:
            raise SourceNotFound(f"没有采集源 {source_id}")
        spec = spec_of(source)
        run_id = None if dry_run else start_run(session=session, source=source).id
    if run_id is not None and settings.crawl_distributed and processes > 1:
        from crawlers.tasks import queue_join

        for _ in range(processes - 1):
            queue_join(source_id=source_id, run_id=run_id, settings=settings)
    stats, items, error = _crawl(settings=settings, spec=spec, run_id=run_id, collect=dry_run,
                                 overrides=overrides)  # fmt: skip
    if dry_run:
        if error:
            raise RuntimeError(error)
        return items
    assert run_id is not None
    with database.session() as session:
        run = finish_run(session=session, run_id=run_id, stats=stats, error=error)
        session.flush()
        session.expunge(run)
    log.info("crawl of %s finished: %s", spec.key, run_summary(run))
    return run


def join_run(
    *, settings: Settings, source_id: int, run_id: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Work on a running distributed crawl from the shared frontier; this process's counts are
    added to the run's."""
    database = get_database(settings)
    with database.session() as session:
        source = session.get(Source, source_id)
        if source is None:
            raise SourceNotFound(f"没有采集源 {source_id}")
        spec = spec_of(source)
    stats, _, error = _crawl(settings=settings, spec=spec, run_id=run_id, collect=False, overrides=overrides)
    with database.session() as session:
        run = session.get(CrawlRun, run_id, with_for_update=True)
        if run is not None:
            merged = dict(run.stats or {})
            for key, value in stats.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    merged[key] = merged.get(key, 0) + value
            merged["anju/distributed/processes"] = merged.get("anju/distributed/processes", 1) + 1
            run.stats = merged
            if error:
                run.error = ((run.error or "") + "\n" + error)[-4000:]
    return stats


def _crawl(
    *,
    settings: Settings,
    spec: SourceSpec,
    run_id: int | None,
    collect: bool,
    overrides: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    from crawlers.runner import crawl_in_child, scrapy_settings

    values = scrapy_settings(settings=settings, run_id=run_id, collect=collect, polite=settings.crawl_polite,
                             overrides=overrides)  # fmt: skip
    try:
        result = crawl_in_child(spec, values)
    except Exception as exc:
        log.warning("crawl of source %s failed: %s", spec.key, exc)
        return {}, [], str(exc)
    return result.stats, result.items, None


def due_sources(*, session: Session, now: datetime | None = None) -> list[int]:
    """Enabled sources whose interval has passed since their last run."""
    now = now or utcnow()
    due = []
    for source in session.scalars(select(Source).where(Source.enabled.is_(True))):
        last = source.last_run_at
        if last is None or now - last >= timedelta(minutes=source.interval_minutes):
            due.append(source.id)
    return due
