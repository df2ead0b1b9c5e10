"""Posts about the company as the spiders found them, scored; and the watchlist that decides
which posts are about us."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.tenancy import Tenant


class WatchKind(enum.StrEnum):
    company = "company"  # 公司名、品牌名、简称
    community = "community"  # 小区名、别名
    address = "address"  # 地址、路名
    person = "person"  # 项目经理等公开身份


class WatchTerm(Base):
    """A name we are known by, besides the company's and communities' own names (which always
    count): 安居物业, 翠湖, 翠湖路88号…"""

    __tablename__ = "watch_term"
    __tenant__ = Tenant.company_or_community()
    __table_args__ = (UniqueConstraint("company_id", "term"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    kind: Mapped[WatchKind] = mapped_column(Enum(WatchKind, native_enum=False, length=16))
    term: Mapped[str] = mapped_column(String(100))


class Post(Base):
    """One post, article, thread or complaint, stored once per platform id."""

    __tablename__ = "opinion_post"
    __tenant__ = Tenant.company_or_community()
    __table_args__ = (
        UniqueConstraint("company_id", "platform", "external_id"),
        Index("ix_opinion_post_company_id_content_hash", "company_id", "content_hash"),
        Index("ix_opinion_post_company_id_published_at", "company_id", "published_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("crawl_source.id", ondelete="SET NULL"))
    platform: Mapped[str] = mapped_column(String(32))  # weibo, tieba, tousu, liuyan, rss:<host>, web:<host>
    external_id: Mapped[str] = mapped_column(String(300))  # the platform's id, else the URL
    url: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    author_followers: Mapped[int | None] = mapped_column(Integer)
    author_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    crawled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    likes: Mapped[int] = mapped_column(Integer, default=0)
    comments: Mapped[int] = mapped_column(Integer, default=0)
    reposts: Mapped[int] = mapped_column(Integer, default=0)
    views: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str] = mapped_column(String(40))  # the same text reposted elsewhere
    # Relevance: which community it is about, and the names that matched.
    community_id: Mapped[int | None] = mapped_column(ForeignKey("community.id", ondelete="SET NULL"))
    matched: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Sentiment (sentiment.model): label, P(pos) - P(neg), the words behind it.
    sentiment: Mapped[str] = mapped_column(String(8))
    sentiment_score: Mapped[float] = mapped_column(Float)
    sentiment_reasons: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Same-story grouping (sentiment.events): the 64-bit SimHash of the text, as a signed integer.
    simhash: Mapped[int] = mapped_column(BigInteger, default=0)
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("opinion_event.id", ondelete="SET NULL"), index=True
    )
    # Risk (sentiment.risk): grade 1..4 (Ⅰ 红 … Ⅳ 蓝), None when below Ⅳ; the reasons in words.
    risk_grade: Mapped[int | None] = mapped_column(Integer)
    risk_score: Mapped[float] = mapped_column(Float, default=0.0)
    risk_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)


class EventKind(enum.StrEnum):
    public = "public"  # posts on the internet
    internal = "internal"  # a spike of residents' own complaints on one topic in one community


class EventStatus(enum.StrEnum):
    new = "new"  # 新
    confirmed = "confirmed"  # 已确认
    handling = "handling"  # 处置中
    handled = "handled"  # 已处置


class Event(Base):
    """One story: posts about the same thing across platforms, graded as a whole."""

    __tablename__ = "opinion_event"
    __tenant__ = Tenant.company_or_community()
    __table_args__ = (Index("ix_opinion_event_company_id_last_seen_at", "company_id", "last_seen_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("community.id", ondelete="SET NULL"))
    kind: Mapped[EventKind] = mapped_column(
        Enum(EventKind, native_enum=False, length=16), default=EventKind.public
    )
    topic: Mapped[str | None] = mapped_column(String(32))  # 电梯, 漏水, 收费… (internal warnings, severity)
    title: Mapped[str] = mapped_column(String(200))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    post_count: Mapped[int] = mapped_column(Integer, default=0)
    negative_count: Mapped[int] = mapped_column(Integer, default=0)
    platforms: Mapped[list[str]] = mapped_column(JSON, default=list)
    grade: Mapped[int | None] = mapped_column(Integer)  # 1..4, None: not graded (below Ⅳ)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[EventStatus] = mapped_column(
        Enum(EventStatus, native_enum=False, length=16), default=EventStatus.new
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EventLog(Base):
    """The event's timeline: graded, upgraded, alerted, acknowledged, status changes, notes."""

    __tablename__ = "opinion_event_log"
    __tenant__ = Tenant.via("event_id", "opinion_event")

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("opinion_event.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))  # created, graded, alert, ack, escalated, status, note
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text, default="")


class AlertChannel(enum.StrEnum):
    wecom = "wecom"
    dingtalk = "dingtalk"
    feishu = "feishu"
    email = "email"


class AlertRoute(Base):
    """Where alerts go: a group robot or a mailbox, for a grade and worse, for one community or all."""

    __tablename__ = "opinion_alert_route"
    __tenant__ = Tenant.company_or_community()

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))  # 品牌部群, 总经理邮箱…
    channel: Mapped[AlertChannel] = mapped_column(Enum(AlertChannel, native_enum=False, length=16))
    target: Mapped[str] = mapped_column(String(1000))  # webhook URL or e-mail address
    secret: Mapped[str | None] = mapped_column(String(200))  # robot signing secret
    worst_grade: Mapped[int] = mapped_column(Integer, default=4)  # alerts of this grade or worse (1 = Ⅰ only)
    escalation: Mapped[bool] = mapped_column(Boolean, default=False)  # gets unacknowledged Ⅰ/Ⅱ alerts


class Alert(Base):
    """One alert per event and grade (an upgrade makes a new one), with its deliveries."""

    __tablename__ = "opinion_alert"
    __tenant__ = Tenant.via("event_id", "opinion_event")
    __table_args__ = (UniqueConstraint("event_id", "grade"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("opinion_event.id", ondelete="CASCADE"))
    grade: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered: Mapped[list[str]] = mapped_column(JSON, default=list)  # route names that took it
    held_back: Mapped[bool] = mapped_column(Boolean, default=False)  # rate limit: folded into a digest
    error: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
