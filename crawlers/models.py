"""What to watch and how: configured sources (a feed, a site, a platform search) and each run's
record (when, how many pages, what was kept, what failed)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.tenancy import Tenant


class SourceKind(enum.StrEnum):
    rss = "rss"  # RSS 2.0 / Atom feed
    generic = "generic"  # a list page and its detail pages, read with CSS selectors per source
    weibo = "weibo"  # m.weibo.cn keyword search (JSON)
    tieba = "tieba"  # Baidu Tieba forum (HTML)
    tousu = "tousu"  # 黑猫投诉 complaint search (JSON)
    liuyan = "liuyan"  # 人民网领导留言板 (JSON)


class SourceAuthority(enum.StrEnum):
    """Who speaks: official media weigh more than self-media, self-media more than forums."""

    official = "official"  # 官方媒体, government boards
    media = "media"  # 新闻网站
    self_media = "self_media"  # 自媒体 (Weibo, WeChat articles)
    forum = "forum"  # 论坛, 贴吧, complaint sites


class Source(Base):
    __tablename__ = "crawl_source"
    __tenant__ = Tenant.company_or_community()
    __table_args__ = (UniqueConstraint("company_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))  # used on the command line: anju crawl <key>
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[SourceKind] = mapped_column(Enum(SourceKind, native_enum=False, length=16))
    authority: Mapped[SourceAuthority] = mapped_column(
        Enum(SourceAuthority, native_enum=False, length=16), default=SourceAuthority.forum
    )
    url: Mapped[str] = mapped_column(String(1000))  # the feed, the list page, or the platform's base URL
    # Per kind: selectors (generic), keywords (weibo, tousu), forum names (tieba), fid (liuyan),
    # max_pages, cookies and proxy for platforms that need a login.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What the source watches, when it watches one place: a forum of one estate, a city's news.
    # A community's name in such a source counts as being about us (sentiment.relevance).
    community_id: Mapped[int | None] = mapped_column(ForeignKey("community.id", ondelete="SET NULL"))
    city: Mapped[str | None] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    interval_minutes: Mapped[int] = mapped_column(Integer, default=30)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunStatus(enum.StrEnum):
    running = "running"
    finished = "finished"
    failed = "failed"


class CrawlRun(Base):
    __tablename__ = "crawl_run"
    __tenant__ = Tenant.via("source_id", "crawl_source")

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("crawl_source.id", ondelete="CASCADE"), index=True)
    status: Mapped[RunStatus] = mapped_column(
        Enum(RunStatus, native_enum=False, length=16), default=RunStatus.running
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # scrapy's stats, ours under anju/
    error: Mapped[str | None] = mapped_column(Text)
