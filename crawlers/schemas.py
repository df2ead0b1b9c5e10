"""What the sources API and the YAML import take and give."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")  # how Chinese sites write their times

Kind = Literal["rss", "generic", "weibo", "tieba", "tousu", "liuyan"]
Authority = Literal["official", "media", "self_media", "forum"]


class SourceIn(BaseModel):
    """One source as an admin writes it (in the page, the API or a YAML file)."""

    key: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: Kind
    url: str = Field(min_length=1, max_length=1000, pattern=r"^https?://")
    authority: Authority = "forum"
    config: dict[str, Any] = {}
    enabled: bool = True
    interval_minutes: int = Field(default=30, ge=5, le=7 * 24 * 60)
    community: str | None = None  # the community this source watches (its name)
    city: str | None = Field(default=None, max_length=32)


class SourceRead(SourceIn):
    id: int
    community_id: int | None
    last_run_at: str | None
    last_run: CrawlRunRead | None = None


class CrawlRunRead(BaseModel):
    id: int
    source_id: int
    status: str
    started_at: str
    finished_at: str | None
    pages: int
    stored: int
    skipped: int
    error: str | None
    stats: dict[str, Any]


class PreviewPost(BaseModel):
    title: str | None
    url: str | None
    author: str | None
    published_at: str | None
    text: str
    relevant: bool  # the store would keep it (about the company or its communities)
    matched: list[str]  # the names that made it ours
    community: str | None
    sentiment: Literal["neg", "neu", "pos"] | None


class PreviewState(BaseModel):
    """试采集 of one source: ``none`` (never asked), ``queued``, ``started``, ``finished``, ``failed``."""

    status: Literal["none", "queued", "started", "finished", "failed"]
    posts: list[PreviewPost] = []
    pages: int = 0
    notes: list[str] = []  # why a crawl found little, in words an admin reads
    error: str | None = None


class ImportResult(BaseModel):
    created: list[str]
    updated: list[str]


SourceRead.model_rebuild()


@dataclass(frozen=True)
class SourceSpec:
    """A source as a spider sees it: plain data, so it crosses process boundaries (rq, scrapy)."""

    company_id: int
    key: str
    kind: str
    url: str
    id: int | None = None
    name: str = ""
    authority: str = "forum"
    config: dict[str, Any] = field(default_factory=dict)
    community_id: int | None = None
    city: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "key": self.key,
            "kind": self.kind,
            "url": self.url,
            "id": self.id,
            "name": self.name,
            "authority": self.authority,
            "config": dict(self.config),
            "community_id": self.community_id,
            "city": self.city,
        }
