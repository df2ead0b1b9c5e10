"""Posts in: each crawled post is checked against the watchlist, scored, and stored once
(the same platform id, or the same text already seen, is not stored again)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sentiment.model import classify
from sentiment.models import Post, WatchKind, WatchTerm
from sentiment.relevance import Watchlist, judge

if TYPE_CHECKING:
    from sentiment.events import EventChange
    from sentiment.risk import RiskPolicy

log = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")
# Characters that would end or break a Markdown link in a robot message ([title](url)) or an
# attribute: written percent-encoded, as a URL may always carry them.
_LINK_BREAKING = {c: f"%{ord(c):02X}" for c in "()[]<>\"'` \\"}


def safe_post_url(url: str | None) -> str:
    """The post's address if it is a web address (http or https, with a host), else "". A feed or a
    page controls its links: ``javascript:``/``data:`` there would run in the PR officer's browser
    when they click 查看原文, and a ``)`` would rewrite the robot message's links."""
    text = "".join(c for c in (url or "").strip() if c.isprintable())
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed [IPv6] host
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return "".join(_LINK_BREAKING.get(c, c) for c in text)


@dataclass
class CrawledPost:
    """What a spider found, before we judge it."""

    platform: str
    external_id: str
    url: str
    text: str
    title: str | None = None
    author: str | None = None
    author_followers: int | None = None
    author_verified: bool = False
    published_at: datetime | None = None
    likes: int = 0
    comments: int = 0
    reposts: int = 0
    views: int = 0

    def __post_init__(self) -> None:
        self.url = safe_post_url(self.url)  # every spider's post, previewed or stored, comes through here


@dataclass
class Outcome:
    post: Post | None
    why: str  # stored, duplicate, same_text, irrelevant, empty


def content_hash(title: str | None, text: str) -> str:
    """The same story copied elsewhere: whitespace and punctuation do not count."""
    core = _SPACE.sub("", f"{title or ''}{text}")
    core = re.sub(r"[^\w\u4e00-\u9fff]", "", core)
    return hashlib.sha1(core.encode()).hexdigest()


def ingest(
    *,
    session: Session,
    company_id: int,
    source_id: int | None,
    crawled: CrawledPost,
    watchlist: Watchlist,
    scope_community_id: int | None = None,
    scope_city: str | None = None,
) -> Outcome:
    text = (crawled.text or "").strip()
    if not text and not crawled.title:
        return Outcome(None, "empty")
    existing = session.scalar(
        select(Post.id).where(
            Post.company_id == company_id,
            Post.platform == crawled.platform,
            Post.external_id == crawled.external_id,
        )
    )
    if existing is not None:
        return Outcome(None, "duplicate")
    digest = content_hash(crawled.title, text)
    if session.scalar(
        select(Post.id).where(Post.company_id == company_id, Post.content_hash == digest).limit(1)
    ):
        return Outcome(None, "same_text")
    whole = f"{crawled.title or ''}\n{text}"
    relevance = judge(whole, watchlist, scope_community_id=scope_community_id, scope_city=scope_city)
    if not relevance.relevant:
        return Outcome(None, "irrelevant")
    sentiment = classify(whole[:2000])
    post = Post(
        company_id=company_id,
        source_id=source_id,
        platform=crawled.platform[:32],
        external_id=crawled.external_id[:300],
        url=safe_post_url(crawled.url)[:1000],
        title=(crawled.title or None) and crawled.title[:500],
        text=text,
        author=crawled.author,
        author_followers=crawled.author_followers,
        author_verified=crawled.author_verified,
        published_at=crawled.published_at,
        likes=crawled.likes,
        comments=crawled.comments,
        reposts=crawled.reposts,
        views=crawled.views,
        content_hash=digest,
        community_id=relevance.community_id,
        matched=relevance.matched,
        sentiment=sentiment.label,
        sentiment_score=sentiment.score,
        sentiment_reasons={
            "negative": sentiment.negative_words,
            "positive": sentiment.positive_words,
            "cues": sentiment.cues,
        },
    )
    try:
        with session.begin_nested():
            session.add(post)
    except IntegrityError:  # another crawl stored it a moment ago
        return Outcome(None, "duplicate")
    log.info("post %s stored from %s: %s %.2f", post.id, crawled.platform, sentiment.label, sentiment.score)
    return Outcome(post, "stored")


@dataclass(frozen=True, kw_only=True)
class SourceScope:
    """What the pipeline knows about where a post came from, and about the company's other sources
    (an event groups posts of several)."""

    company_id: int
    # The company's sources, source id → authority (official, media, self_media, forum), as the
    # pipeline reads them for each batch: the other posts of an event are graded with these.
    # A source not listed counts as a forum.
    source_authorities: Mapping[int, str]
    source_id: int | None = None
    authority: str = "forum"  # how much this source is believed: official, media, self_media, forum
    community_id: int | None = None  # the source watches this community (a forum of that estate)
    city: str | None = None  # the source watches this city (its news)


@dataclass
class Taken:
    outcome: Outcome
    change: EventChange | None = None


def take(
    *,
    session: Session,
    scope: SourceScope,
    crawled: CrawledPost,
    watchlist: Watchlist,
    policy: RiskPolicy,
    now: datetime | None = None,
) -> Taken:
    """A crawled post in: stored once if it is about us, then grouped into its event and graded."""
    from core.db import utcnow
    from sentiment.events import place_post

    outcome = ingest(
        session=session,
        company_id=scope.company_id,
        source_id=scope.source_id,
        crawled=crawled,
        watchlist=watchlist,
        scope_community_id=scope.community_id,
        scope_city=scope.city,
    )
    if outcome.post is None:
        return Taken(outcome)
    change = place_post(
        session=session,
        post=outcome.post,
        authority=scope.authority,
        source_authorities=scope.source_authorities,
        now=now or utcnow(),
        policy=policy,
    )
    return Taken(outcome, change)


def list_watch_terms(*, session: Session, company_id: int) -> list[WatchTerm]:
    return list(
        session.scalars(select(WatchTerm).where(WatchTerm.company_id == company_id).order_by(WatchTerm.id))
    )


def add_watch_term(
    *, session: Session, company_id: int, term: str, kind: WatchKind, community_id: int | None
) -> WatchTerm:
    """A name we are known by (a brand, a community's alias, an address). Community terms belong to
    one of the company's communities; company terms count alone."""
    from core.errors import Conflict, InvalidInput, NotFound
    from org.models import Community

    term = term.strip()
    if len(term) < 2:
        raise InvalidInput("监测词至少两个字")
    if kind is not WatchKind.company and community_id is None:
        raise InvalidInput("小区名、地址和人名需要指定所属小区")
    if community_id is not None:
        owner = session.scalar(select(Community.company_id).where(Community.id == community_id))
        if owner != company_id:
            raise NotFound("没有这个小区")
    if session.scalar(select(WatchTerm.id).where(WatchTerm.company_id == company_id, WatchTerm.term == term)):
        raise Conflict(f"监测词「{term}」已存在")
    row = WatchTerm(company_id=company_id, term=term, kind=kind, community_id=community_id)
    session.add(row)
    session.flush()
    return row


def delete_watch_term(*, session: Session, company_id: int, term_id: int) -> None:
    from core.errors import NotFound

    row = session.get(WatchTerm, term_id)
    if row is None or row.company_id != company_id:
        raise NotFound("没有这个监测词")
    session.delete(row)
