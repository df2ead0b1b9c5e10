"""Sources (configured data: page, API, YAML import) and crawl runs (start, record, schedule)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import get_database, utcnow
from core.errors import InvalidInput
from core.outbound import OutboundPolicy
from core.settings import Settings
from crawlers.errors import BadSourceFile, SourceNotFound
from crawlers.models import CrawlRun, RunStatus, Source, SourceAuthority, SourceKind
from crawlers.schemas import SourceIn, SourceSpec
from org.models import Community

log = logging.getLogger(__name__)

MAX_SOURCE_FILE_BYTES = 512 * 1024
# Values a YAML file may expand to, aliases followed: a "billion laughs" of nine anchors each
# listing the previous one nine times is 400 bytes of YAML and 387 million strings once stored.
MAX_SOURCE_FILE_NODES = 100_000
PREVIEW_ITEMS = 10  # 试采集: enough posts to judge a source's configuration, few enough to be quick
# What each kind cannot crawl without (the spiders' docstrings describe every key).
REQUIRED_LISTS = {"weibo": ("keywords", "搜索关键词"), "tousu": ("keywords", "搜索关键词"),
                  "tieba": ("forums", "贴吧名")}  # fmt: skip
SELECTOR_KEYS = {"list": ("item", "link", "date", "replies", "views", "next"),
                 "detail": ("title", "published", "author", "content")}  # fmt: skip


def list_sources(*, session: Session, company_id: int) -> list[Source]:
    return list(session.scalars(select(Source).where(Source.company_id == company_id).order_by(Source.key)))


def source_authorities(*, session: Session, company_id: int) -> dict[int, str]:
    """How much each of the company's sources is believed (source id → official, media,
    self_media, forum), for grading an event whose posts came from several of them."""
    rows = session.execute(select(Source.id, Source.authority).where(Source.company_id == company_id))
    return {source_id: str(authority) for source_id, authority in rows}


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


def check_config(kind: str, config: dict[str, Any]) -> None:
    """What the spider of ``kind`` needs, checked when the source is saved rather than found out at
    the first crawl: its keywords, forums or board, and (generic) selectors that parse."""
    if kind in REQUIRED_LISTS:
        key, label = REQUIRED_LISTS[kind]
        value = config.get(key)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if not [v for v in values if str(v).strip()]:
            raise BadSourceFile(f"config.{key} 有误：请至少填写一个{label}")
    if kind == "liuyan" and not str(config.get("fid") or "").strip():
        raise BadSourceFile("config.fid 有误：请填写留言板的 fid（领导留言板地址中的编号）")
    if "max_pages" in config:
        pages = config["max_pages"]
        if isinstance(pages, bool) or not isinstance(pages, int) or not 1 <= pages <= 50:
            raise BadSourceFile("config.max_pages 有误：应为 1–50 的整数")
    for key in ("cookies", "proxy"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise BadSourceFile(f"config.{key} 有误：应为文本")
    if kind != "generic":
        return
    from parsel import Selector

    from crawlers.spiders.generic import _select

    if not (config.get("list") or {}).get("link"):
        raise BadSourceFile("config.list.link 有误：请填写列表页中帖子链接的选择器")
    probe = Selector(text="<html><body></body></html>")
    for section, keys in SELECTOR_KEYS.items():
        rules = config.get(section) or {}
        if not isinstance(rules, dict):
            raise BadSourceFile(f"config.{section} 有误：应为选择器的字典")
        for key in keys:
            query = rules.get(key)
            if query is None:
                continue
            if not isinstance(query, str) or not query.strip():
                raise BadSourceFile(f"config.{section}.{key} 有误：选择器应为非空文本")
            for alternative in (q.strip() for q in query.split(" | ")):
                try:
                    _select(probe, alternative)
                except Exception as exc:
                    message = f"config.{section}.{key} 选择器无法解析：{alternative}（{exc}）"
                    raise BadSourceFile(message) from None


def check_urls(data: SourceIn, *, policy: OutboundPolicy) -> None:
    """The addresses a source makes the crawler fetch, checked when it is saved as they are checked
    again at every request: its URL, its start pages and its proxy must not point inside."""
    from urllib.parse import urljoin

    from core.outbound import check_url

    try:
        check_url(data.url, policy=policy, field="url")
        starts = data.config.get("start_urls") or []
        for path in [starts] if isinstance(starts, str) else starts if isinstance(starts, list) else []:
            check_url(urljoin(data.url, str(path)), policy=policy, field="config.start_urls")
        if data.config.get("proxy"):
            check_url(str(data.config["proxy"]), policy=policy, field="config.proxy")
    except InvalidInput as exc:
        raise BadSourceFile(exc.message) from None


def save_source(
    *, session: Session, company_id: int, data: SourceIn, policy: OutboundPolicy
) -> tuple[Source, bool]:
    """Create or update the source with this key; returns (source, created)."""
    check_config(data.kind, data.config)
    check_urls(data, policy=policy)
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


def import_yaml(
    *, session: Session, company_id: int, text: str | bytes, policy: OutboundPolicy
) -> tuple[list[str], list[str]]:
    """``sources: [ {key, name, kind, url, ...}, ... ]`` (or a bare list). All or nothing."""
    import yaml

    if len(text) > MAX_SOURCE_FILE_BYTES:
        raise BadSourceFile("采集源配置文件过大（上限 512 KB）")
    try:
        document = yaml.safe_load(text)
        too_big = _expanded_size(document, {}) > MAX_SOURCE_FILE_NODES
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行" if mark is not None else ""
        raise BadSourceFile(f"YAML 格式错误{where}：{getattr(exc, 'problem', exc)}") from None
    except RecursionError:  # PyYAML composes nested [[[…]]] recursively
        raise BadSourceFile("采集源配置文件嵌套层数过多") from None
    if too_big:
        raise BadSourceFile("采集源配置文件展开后过大（锚点/别名层层引用），请直接写出各项配置")
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
        try:
            check_config(parsed[-1].kind, parsed[-1].config)
            check_urls(parsed[-1], policy=policy)
        except BadSourceFile as exc:
            raise BadSourceFile(f"第 {index} 个采集源的 {exc.message}") from None
    keys = [p.key for p in parsed]
    if len(set(keys)) != len(keys):
        raise BadSourceFile("采集源 key 重复")
    created: list[str] = []
    updated: list[str] = []
    with session.begin_nested():
        for data in parsed:
            _, is_new = save_source(session=session, company_id=company_id, data=data, policy=policy)
            (created if is_new else updated).append(data.key)
    return created, updated


def _expanded_size(value: Any, seen: dict[int, int]) -> int:
    """How many values ``value`` holds once every alias is written out. A YAML alias is the same
    Python object again, so each object is measured once: linear in the file, not in the result."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) in seen:
        return seen[id(value)]
    seen[id(value)] = MAX_SOURCE_FILE_NODES + 1  # a cycle (an alias inside its own anchor) is too big
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    size = 1
    for item in items:
        size += _expanded_size(item, seen)
        if size > MAX_SOURCE_FILE_NODES:
            break
    seen[id(value)] = size
    return size


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


def preview_source(*, settings: Settings, source_id: int) -> dict[str, Any]:
    """试采集: crawl the first few posts now, stored nowhere and marked read nowhere, each with what
    the store would make of it (about us or not and why, its sentiment), and what went wrong in
    words an admin reads. Lets an admin check a source's configuration before it runs on its
    schedule. JSON-ready (it is an rq job's result)."""
    from sentiment.model import classify
    from sentiment.relevance import build_watchlist, judge

    with get_database(settings).session() as session:
        source = session.get(Source, source_id)
        if source is None:
            raise SourceNotFound(f"没有采集源 {source_id}")
        spec = spec_of(source)
        watchlist = build_watchlist(session=session, company_id=source.company_id)
        names = dict(session.execute(select(Community.id, Community.name)
                                     .where(Community.company_id == source.company_id)).all())  # fmt: skip
    overrides = {"ANJU_FORGET_SEEN": True, "CLOSESPIDER_ITEMCOUNT": PREVIEW_ITEMS}
    stats, items, error = _crawl(settings=settings, spec=spec, run_id=None, collect=True, overrides=overrides)
    posts = []
    for item in items[:PREVIEW_ITEMS]:
        whole = f"{item.get('title') or ''}\n{item.get('text') or ''}"
        relevance = judge(whole, watchlist, scope_community_id=spec.community_id, scope_city=spec.city)
        published = item.get("published_at")
        posts.append({
            "title": item.get("title"),
            "url": item.get("url"),
            "author": item.get("author"),
            "published_at": published.isoformat() if isinstance(published, datetime) else None,
            "text": (item.get("text") or "")[:300],
            "relevant": relevance.relevant,
            "matched": relevance.matched,
            "community": names.get(relevance.community_id) if relevance.community_id else None,
            "sentiment": classify(whole[:2000]).label if relevance.relevant else None,
        })  # fmt: skip
    return {
        "posts": posts,
        "pages": int(stats.get("response_received_count", 0)),
        "notes": preview_notes(stats, kind=spec.kind),
        "error": error.strip().splitlines()[-1][:500] if error else None,
    }


# Stats that explain an empty or short crawl, as an admin reads them ({n}: the count).
PREVIEW_NOTES = {
    "robotstxt/forbidden": "{n} 个页面被该网站的 robots.txt 禁止采集",
    "retry/max_reached": "{n} 个页面多次重试后仍失败（网站无响应或返回错误）",
    "anju/outbound_refused": "{n} 个请求指向内网或本机地址（或不是 http/https 地址），已拒绝",
    "downloader/exception_count": "{n} 次连接失败或超时",
    "anju/weibo/login_required": "微博要求登录：请在配置 cookies 中填入登录后的 Cookie",
    "anju/tieba/security_verification": "贴吧返回了安全验证页：请稍后再试，或配置 cookies / 代理",
    "anju/liuyan/bad_signature": "留言板拒绝了请求签名（接口可能已更新）",
    "anju/generic/too_old": "{n} 条帖子超过 max_age_days 设定的天数，已略过",
    "anju/seen_skipped": "{n} 个页面在之前的采集中已读过",
}


def preview_notes(stats: dict[str, Any], *, kind: str) -> list[str]:
    stats = dict(stats)
    refused_by_dns = stats.get("anju/outbound_refused_lookups", 0)
    if refused_by_dns:  # refusals are explained by their own note, not as connection failures
        stats["downloader/exception_count"] = stats.get("downloader/exception_count", 0) - refused_by_dns
    notes = [text.format(n=stats[key]) for key, text in PREVIEW_NOTES.items() if stats.get(key)]
    prefix = "downloader/response_status_count/"
    statuses = {k.removeprefix(prefix): v for k, v in stats.items()
                if k.startswith(prefix) and k.removeprefix(prefix) not in ("200", "301", "302")}  # fmt: skip
    if statuses:
        codes = "、".join(f"HTTP {code} × {n}" for code, n in sorted(statuses.items()))
        notes.append(f"网站返回错误状态：{codes}")
    skipped = stats.get(f"anju/{kind}/skipped_malformed")
    if skipped:
        notes.append(f"{skipped} 个页面无法解析（内容为空、被截断，或选择器没有选中内容）")
    if not stats.get("response_received_count"):
        notes.append("没有取到任何页面：请检查地址是否正确、网站是否可以访问")
    return notes


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
