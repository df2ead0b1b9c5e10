"""What the opinion feed API sends and takes: events, their posts, timeline and alerts, the chart
series, the workflow's inputs, and alert routes (whose webhook URLs and secrets never go out in full)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.types import Id

Status = Literal["new", "confirmed", "handling", "handled"]
Channel = Literal["wecom", "dingtalk", "feishu", "email"]


class EventRead(BaseModel):
    id: int
    kind: str  # public (舆情) / internal (内部预警)
    topic: str | None
    title: str
    community_id: int | None
    community: str | None  # None: the whole company
    grade: int | None  # 1..4 (Ⅰ 红 … Ⅳ 蓝); None: below Ⅳ
    grade_label: str  # Ⅰ级 … Ⅳ级, 未定级
    score: float
    reasons: list[str]
    platforms: list[str]  # weibo, tieba, rss:<host>…
    platform_labels: list[str]  # 微博, 贴吧, 订阅·<host>…
    post_count: int
    negative_count: int
    status: Status
    status_label: str  # 新 / 已确认 / 处置中 / 已处置
    first_seen_at: str
    last_seen_at: str
    updated_at: str
    unacknowledged_alerts: int


class EventPage(BaseModel):
    items: list[EventRead]
    total: int
    limit: int
    offset: int


class PostRead(BaseModel):
    id: int
    platform: str
    platform_label: str
    url: str
    title: str | None
    text: str  # personal data (mobile numbers, ID numbers) masked
    author: str | None
    author_followers: int | None
    author_verified: bool
    published_at: str | None
    crawled_at: str
    likes: int
    comments: int
    reposts: int
    views: int
    matched: list[str]
    sentiment: str  # neg / neu / pos
    sentiment_score: float
    sentiment_words: list[str]  # the words behind the label
    risk_grade: int | None
    risk_reasons: list[str]


class LogRead(BaseModel):
    id: int
    at: str
    kind: str  # created, graded, alert, ack, escalated, status, note
    staff: str | None
    text: str


class AlertRead(BaseModel):
    id: int
    event_id: int
    grade: int
    grade_label: str
    created_at: str
    sent_at: str | None
    delivered: list[str]
    held_back: bool
    error: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    escalated_at: str | None


class EventDetail(BaseModel):
    event: EventRead
    posts: list[PostRead]  # newest first
    post_total: int
    logs: list[LogRead]  # oldest first
    alerts: list[AlertRead]
    transitions: list[Status]  # where the workflow may go from here


class SeriesPoint(BaseModel):
    at: str  # start of the hour or day, in Beijing time
    label: str  # what the chart's axis shows: 11-21 14:00 or 11-21
    posts: int
    neg: int
    neu: int
    pos: int
    mean_score: float | None  # P(pos) - P(neg), averaged; None: no posts in this bucket


class Series(BaseModel):
    unit: Literal["hour", "day"]
    points: list[SeriesPoint]


class StatusChange(BaseModel):
    status: Status
    note: str = Field(default="", max_length=2000)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class FilterOption(BaseModel):
    value: str
    label: str


class FeedFilters(BaseModel):
    """What the page's filter bar offers this user."""

    communities: list[FilterOption]
    platforms: list[FilterOption]


class AlertRouteIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    channel: Channel
    target: str = Field(min_length=1, max_length=1000)  # webhook URL, or e-mail addresses (comma-separated)
    secret: str | None = Field(default=None, max_length=200)  # robot signing secret
    community_id: Id | None = None  # None: every community
    worst_grade: int = Field(default=4, ge=1, le=4)  # alerts of this grade or worse
    escalation: bool = False  # also gets Ⅰ/Ⅱ alerts nobody acknowledged in time


class AlertRouteUpdate(BaseModel):
    """Like AlertRouteIn, but the credentials are optional: the API never gives them back in full,
    so an edit leaves them as they are unless new ones are sent (``secret: ""`` removes it)."""

    name: str = Field(min_length=1, max_length=64)
    channel: Channel
    target: str | None = Field(default=None, min_length=1, max_length=1000)
    secret: str | None = Field(default=None, max_length=200)
    community_id: Id | None = None
    worst_grade: int = Field(default=4, ge=1, le=4)
    escalation: bool = False


class AlertRouteRead(BaseModel):
    id: int
    name: str
    channel: Channel
    target: str  # a webhook URL as its host and last 4 characters; e-mail addresses in full
    secret: str | None  # ****abcd
    community_id: int | None
    worst_grade: int
    escalation: bool


class RouteTestResult(BaseModel):
    delivered: bool
    error: str | None  # what the platform or the mail server answered, when it failed


class WatchTermIn(BaseModel):
    term: str = Field(min_length=2, max_length=100)
    kind: Literal["company", "community", "address", "person"] = "community"
    community_id: Id | None = None


class WatchTermRead(WatchTermIn):
    id: int
