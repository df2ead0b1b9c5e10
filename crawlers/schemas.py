"""What the sources API and the YAML import take and give."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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
