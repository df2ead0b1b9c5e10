"""Opinion test data for the feed: events with their posts, timeline and alerts, built with the
models directly (tests/sentiment/stories.py stores posts through the real ingest instead)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from org.models import Community, Company
from sentiment.models import Alert, Event, EventKind, EventLog, EventStatus, Post

_serial = itertools.count(1)


def demo_company(session: Session) -> Company:
    return session.scalars(select(Company).where(Company.code == "anju-demo")).one()


def community(session: Session, code: str) -> Community:
    return session.scalars(select(Community).where(Community.code == code)).one()


@dataclass
class PostSpec:
    """One post of an event: its text, tone and age."""

    text: str
    sentiment: str = "neg"  # neg / neu / pos
    score: float = -0.8
    platform: str = "weibo"
    hours_ago: float = 1.0
    author: str | None = "业主小王"
    matched: Sequence[str] = ("翠湖花园",)
    risk_reasons: Sequence[str] = ()
    title: str | None = None


def make_post(
    session: Session,
    *,
    company_id: int,
    spec: PostSpec,
    event: Event | None = None,
    now: datetime | None = None,
) -> Post:
    n = next(_serial)
    when = (now or utcnow()) - timedelta(hours=spec.hours_ago)
    post = Post(
        company_id=company_id,
        platform=spec.platform,
        external_id=f"feed-test-{n}",
        url=f"https://example.com/{spec.platform.replace(':', '/')}/{n}",
        title=spec.title,
        text=spec.text,
        author=spec.author,
        published_at=when,
        crawled_at=when + timedelta(minutes=5),
        content_hash=hashlib.sha1(f"{n}:{spec.text}".encode()).hexdigest(),
        community_id=event.community_id if event is not None else None,
        matched=list(spec.matched),
        sentiment=spec.sentiment,
        sentiment_score=spec.score,
        sentiment_reasons={
            "negative": ["推诿"] if spec.sentiment == "neg" else [],
            "positive": [],
            "cues": [],
        },
        event_id=event.id if event is not None else None,
        risk_reasons=list(spec.risk_reasons),
    )
    session.add(post)
    session.flush()
    return post


def make_event(
    session: Session,
    *,
    company_id: int,
    title: str,
    community_id: int | None = None,
    grade: int | None = 3,
    status: EventStatus = EventStatus.new,
    kind: EventKind = EventKind.public,
    topic: str | None = None,
    reasons: Sequence[str] = ("负面情绪强烈",),
    posts: Sequence[PostSpec] = (),
    hours_ago: float = 1.0,
    now: datetime | None = None,
) -> Event:
    """An event with its posts; first and last seen follow the posts (else ``hours_ago``)."""
    now = now or utcnow()
    ages = [p.hours_ago for p in posts] or [hours_ago]
    event = Event(
        company_id=company_id,
        community_id=community_id,
        kind=kind,
        topic=topic,
        title=title,
        first_seen_at=now - timedelta(hours=max(ages)),
        last_seen_at=now - timedelta(hours=min(ages)),
        post_count=len(posts),
        negative_count=sum(1 for p in posts if p.sentiment == "neg"),
        platforms=sorted({p.platform for p in posts}),
        grade=grade,
        score={1: 85.0, 2: 65.0, 3: 45.0, 4: 25.0}.get(grade or 0, 10.0),
        reasons=list(reasons),
        status=status,
        updated_at=now - timedelta(hours=min(ages)),
    )
    session.add(event)
    session.flush()
    session.add(EventLog(event_id=event.id, kind="created", at=event.first_seen_at, text="发现新事件"))
    for spec in posts:
        make_post(session, company_id=company_id, spec=spec, event=event, now=now)
    session.flush()
    return event


def make_alert(session: Session, *, event: Event, grade: int | None = None, sent: bool = True) -> Alert:
    alert = Alert(
        company_id=event.company_id,
        event_id=event.id,
        grade=grade or event.grade or 4,
        sent_at=utcnow() if sent else None,
        delivered=["1"] if sent else [],
    )
    session.add(alert)
    session.flush()
    session.add(EventLog(event_id=event.id, kind="alert", text="发出预警"))
    session.flush()
    return alert
