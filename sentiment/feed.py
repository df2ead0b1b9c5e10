"""The PR risk feed: events a staff member may see, filtered and paged; one event with its posts,
timeline and alerts; the volume/sentiment series of its chart; the workflow 新 → 已确认 → 处置中 →
已处置 with notes; acknowledging alerts; the CSV export; live updates; and the alert routes.

Who sees what: staff with every community (head-office PR, admins) see all of the company's
events; staff limited to some communities see those communities' events and the company-wide
ones (no community: a story about the brand concerns every PR officer of the company).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from accounts.models import StaffUser
from accounts.service import accessible_community_ids, require_community
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.events import after_commit
from core.exports import csv_text
from core.live import company_topic, publish
from core.outbound import OutboundPolicy, check_url
from core.settings import Settings
from org.models import Community
from sentiment import alerts
from sentiment.models import Alert, AlertChannel, AlertRoute, Event, EventKind, EventLog, EventStatus, Post

log = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8), "北京时间")  # PR staff read times in China Standard Time
GRADE_LABELS = {1: "Ⅰ级", 2: "Ⅱ级", 3: "Ⅲ级", 4: "Ⅳ级"}  # 红, 橙, 黄, 蓝
UNGRADED_LABEL = "未定级"  # below Ⅳ (as sentiment.risk says it)
STATUS_LABELS = {
    EventStatus.new: "新",
    EventStatus.confirmed: "已确认",
    EventStatus.handling: "处置中",
    EventStatus.handled: "已处置",
}
# The workflow, one step at a time; a handled event may be reopened (with the reason).
TRANSITIONS: dict[EventStatus, tuple[EventStatus, ...]] = {
    EventStatus.new: (EventStatus.confirmed,),
    EventStatus.confirmed: (EventStatus.handling,),
    EventStatus.handling: (EventStatus.handled,),
    EventStatus.handled: (EventStatus.handling,),
}
PLATFORM_LABELS = {
    "weibo": "微博",
    "tieba": "贴吧",
    "tousu": "黑猫投诉",
    "liuyan": "领导留言板",
    "internal": "内部投诉",
}
MAX_PAGE = 200  # events in one page of the feed
MAX_POSTS = 200  # posts shown with one event (the newest); the count says how many there are
MAX_EXPORT = 10_000  # rows in one CSV export
HOURLY_UP_TO = timedelta(days=3)  # an event spanning longer is charted per day
MAX_DAYS_CHARTED = 90  # a story's older stragglers (an old article reposted) stay off the chart
CSV_COLUMNS = (
    "事件编号",
    "等级",
    "标题",
    "社区",
    "平台",
    "帖子数",
    "负面数",
    "状态",
    "首次发现",
    "最近更新",
    "研判理由",
)


def grade_label(grade: int | None) -> str:
    return GRADE_LABELS.get(grade, UNGRADED_LABEL) if grade is not None else UNGRADED_LABEL


def platform_label(platform: str) -> str:
    """微博, 贴吧…; feeds and sites by their host: 新闻·news.example.com."""
    if platform in PLATFORM_LABELS:
        return PLATFORM_LABELS[platform]
    kind, _, host = platform.partition(":")
    if host and kind == "rss":
        return f"订阅·{host}"
    if host and kind == "web":
        return f"网站·{host}"
    return platform


def local_time(value: datetime | None) -> str:
    return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if value else ""


# --- which events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedFilter:
    """The filter bar: every field narrows; empty ones do not."""

    grade: int | None = None  # exactly this grade
    grade_max: int | None = None  # this grade or worse (2: Ⅰ and Ⅱ)
    community_id: int | None = None
    platform: str | None = None  # weibo, or rss for every feed, or rss:news.example.com
    since: datetime | None = None  # active since (last seen at or after)
    until: datetime | None = None  # first seen before
    statuses: tuple[EventStatus, ...] = ()
    kind: EventKind | None = None
    q: str | None = None  # words in the title
    graded_only: bool = False


def _visible(session: Session, user: StaffUser) -> ColumnElement[bool]:
    if user.all_communities:
        return Event.company_id == user.company_id
    ids = accessible_community_ids(session=session, user=user)
    return and_(
        Event.company_id == user.company_id,
        or_(Event.community_id.is_(None), Event.community_id.in_(ids)),  # an empty IN is false
    )


def _conditions(session: Session, user: StaffUser, filters: FeedFilter) -> list[ColumnElement[bool]]:
    if filters.since and filters.until and filters.since >= filters.until:
        raise InvalidInput("起始时间应早于结束时间")
    where = [_visible(session, user)]
    if filters.grade is not None:
        where.append(Event.grade == filters.grade)
    if filters.grade_max is not None:
        where.append(Event.grade <= filters.grade_max)
    if filters.graded_only:
        where.append(Event.grade.is_not(None))
    if filters.community_id is not None:
        require_community(
            session=session, user=user, community_id=filters.community_id
        )  # 404 when not theirs
        where.append(Event.community_id == filters.community_id)
    if filters.platform:
        platform = filters.platform.strip()
        on_platform = select(Post.event_id).where(
            Post.company_id == user.company_id,
            Post.event_id.is_not(None),
            or_(Post.platform == platform, Post.platform.like(f"{_like_escape(platform)}:%", escape="\\")),
        )
        where.append(Event.id.in_(on_platform))
    if filters.since is not None:
        where.append(Event.last_seen_at >= filters.since)
    if filters.until is not None:
        where.append(Event.first_seen_at < filters.until)
    if filters.statuses:
        where.append(Event.status.in_(filters.statuses))
    if filters.kind is not None:
        where.append(Event.kind == filters.kind)
    if filters.q and filters.q.strip():
        where.append(Event.title.like(f"%{_like_escape(filters.q.strip())}%", escape="\\"))
    return where


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_events(
    *, session: Session, user: StaffUser, filters: FeedFilter, limit: int = 50, offset: int = 0
) -> tuple[list[Event], int]:
    """The newest activity first; returns (this page, how many match)."""
    where = _conditions(session, user, filters)
    total = session.scalar(select(func.count(Event.id)).where(*where)) or 0
    rows = session.scalars(
        select(Event)
        .where(*where)
        .order_by(Event.last_seen_at.desc(), Event.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
        .offset(max(0, offset))
    )
    return list(rows), total


def get_event(*, session: Session, user: StaffUser, event_id: int, lock: bool = False) -> Event:
    query = select(Event).where(Event.id == event_id, _visible(session, user))
    event = session.scalar(query.with_for_update() if lock else query)
    if event is None:
        raise NotFound("没有这个舆情事件")
    return event


def community_names(*, session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(Community.id, Community.name).where(Community.id.in_(wanted))).all())  # type: ignore[arg-type]


def staff_names(*, session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(wanted)))
    return dict(rows.all())  # type: ignore[arg-type]


def unacknowledged_alerts(*, session: Session, event_ids: Sequence[int]) -> dict[int, int]:
    if not event_ids:
        return {}
    rows = session.execute(
        select(Alert.event_id, func.count(Alert.id))
        .where(Alert.event_id.in_(event_ids), Alert.acknowledged_at.is_(None))
        .group_by(Alert.event_id)
    )
    return dict(rows.all())  # type: ignore[arg-type]


def filter_options(*, session: Session, user: StaffUser) -> tuple[list[Community], list[str]]:
    """The communities this user may pick, and the platforms the company's posts came from."""
    ids = accessible_community_ids(session=session, user=user)
    communities = (
        list(session.scalars(select(Community).where(Community.id.in_(ids)).order_by(Community.id)))
        if ids
        else []
    )
    platforms = session.scalars(
        select(Post.platform)
        .where(Post.company_id == user.company_id)
        .distinct()
        .order_by(Post.platform)
        .limit(200)
    )
    return communities, list(platforms)


# --- one event ---------------------------------------------------------------------------------


def _post_time() -> ColumnElement[datetime]:
    return func.coalesce(Post.published_at, Post.crawled_at)


def event_posts(*, session: Session, event: Event, limit: int = MAX_POSTS) -> tuple[list[Post], int]:
    """The newest first (by when they were published, else when we found them)."""
    total = session.scalar(select(func.count(Post.id)).where(Post.event_id == event.id)) or 0
    posts = session.scalars(
        select(Post)
        .where(Post.event_id == event.id)
        .order_by(_post_time().desc(), Post.id.desc())
        .limit(limit)
    )
    return list(posts), total


def event_logs(*, session: Session, event: Event) -> list[EventLog]:
    return list(
        session.scalars(
            select(EventLog).where(EventLog.event_id == event.id).order_by(EventLog.at, EventLog.id)
        )
    )


def event_alerts(*, session: Session, event: Event) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.event_id == event.id).order_by(Alert.id)))


def transitions(event: Event) -> tuple[EventStatus, ...]:
    return TRANSITIONS.get(event.status, ())


@dataclass
class Bucket:
    start: datetime  # Beijing time
    posts: int = 0
    neg: int = 0
    neu: int = 0
    pos: int = 0
    score_sum: float = 0.0

    @property
    def mean_score(self) -> float | None:
        return round(self.score_sum / self.posts, 3) if self.posts else None


def series(*, session: Session, event: Event) -> tuple[str, list[Bucket]]:
    """Posts per hour (per day when the story spans more than three days), counted by sentiment,
    with the mean sentiment score; empty hours or days in between are zeros, so the chart's gaps
    are true gaps."""
    rows = session.execute(
        select(_post_time(), Post.sentiment, Post.sentiment_score).where(Post.event_id == event.id)
    ).all()
    if not rows:
        return "hour", []
    last = max(when for when, _, _ in rows)
    first = max(min(when for when, _, _ in rows), last - timedelta(days=MAX_DAYS_CHARTED))
    unit = "day" if last - first > HOURLY_UP_TO else "hour"
    step = timedelta(days=1) if unit == "day" else timedelta(hours=1)

    def floor(when: datetime) -> datetime:
        local = when.astimezone(BEIJING).replace(minute=0, second=0, microsecond=0)
        return local.replace(hour=0) if unit == "day" else local

    buckets: dict[datetime, Bucket] = {}
    cursor, end = floor(first), floor(last)
    while cursor <= end:
        buckets[cursor] = Bucket(start=cursor)
        cursor += step
    for when, label, score in rows:
        bucket = buckets.get(floor(when))
        if bucket is None:  # older than the charted window
            continue
        bucket.posts += 1
        bucket.score_sum += float(score or 0.0)
        if label == "neg":
            bucket.neg += 1
        elif label == "pos":
            bucket.pos += 1
        else:
            bucket.neu += 1
    return unit, list(buckets.values())


# --- the workflow ------------------------------------------------------------------------------


def set_status(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    event_id: int,
    status: EventStatus,
    note: str = "",
) -> Event:
    """One step of 新 → 已确认 → 处置中 → 已处置 (or reopening 已处置 → 处置中, with the reason).
    Confirming an event also acknowledges its alerts: someone has it in hand, nobody needs paging."""
    event = get_event(session=session, user=user, event_id=event_id, lock=True)
    note = note.strip()
    if status not in transitions(event):
        allowed = "、".join(STATUS_LABELS[s] for s in transitions(event)) or "无"
        raise Conflict(
            f"事件当前为「{STATUS_LABELS[event.status]}」，不能改为「{STATUS_LABELS[status]}」"
            f"（流程：新 → 已确认 → 处置中 → 已处置；当前可改为：{allowed}）"
        )
    if event.status is EventStatus.handled and not note:
        raise InvalidInput("重新处置请填写原因")
    before = event.status
    event.status = status
    event.updated_at = utcnow()
    text = f"状态：{STATUS_LABELS[before]} → {STATUS_LABELS[status]}" + (f"。{note}" if note else "")
    session.add(EventLog(event_id=event.id, kind="status", staff_id=user.id, text=text))
    if status is EventStatus.confirmed:
        pending = session.scalar(
            select(Alert)
            .where(Alert.event_id == event.id, Alert.acknowledged_at.is_(None))
            .order_by(Alert.grade)
            .limit(1)
        )
        if pending is not None:
            _acknowledge(session=session, alert=pending, staff_id=user.id, via="（确认事件）")
    log.info("opinion event %s: %s -> %s by staff %s", event.id, before.value, status.value, user.id)
    _changed_after_commit(session, settings, event)
    session.flush()
    return event


def add_note(*, session: Session, settings: Settings, user: StaffUser, event_id: int, text: str) -> EventLog:
    event = get_event(session=session, user=user, event_id=event_id)
    text = text.strip()
    if not text:
        raise InvalidInput("备注不能为空")
    entry = EventLog(event_id=event.id, kind="note", staff_id=user.id, text=text)
    session.add(entry)
    event.updated_at = utcnow()
    _changed_after_commit(session, settings, event)
    session.flush()
    return entry


def _acknowledge(*, session: Session, alert: Alert, staff_id: int | None, via: str) -> bool:
    return alerts.acknowledge(session=session, alert=alert, staff_id=staff_id, via=via)


def acknowledge_alert(*, session: Session, settings: Settings, user: StaffUser, alert_id: int) -> Alert:
    """确认收到 from the feed: stops the escalation of a Ⅰ/Ⅱ alert. Acknowledging twice is harmless."""
    alert = session.get(Alert, alert_id)
    if alert is None or alert.company_id != user.company_id:
        raise NotFound("没有这条预警")
    event = get_event(session=session, user=user, event_id=alert.event_id)  # the same visibility
    if _acknowledge(session=session, alert=alert, staff_id=user.id, via="（舆情页面）"):
        _changed_after_commit(session, settings, event)
    session.flush()
    return alert


def alert_for_link(*, session: Session, settings: Settings, token: str) -> tuple[Alert, Event]:
    """The alert a signed link in a robot message names (the link is the credential)."""
    alert = alerts.alert_for_token(session=session, settings=settings, token=token)
    event = session.get(Event, alert.event_id)
    if event is None:
        raise NotFound("预警对应的事件不存在")
    return alert, event


def acknowledge_by_link(*, session: Session, settings: Settings, token: str) -> tuple[Alert, Event]:
    alert, event = alert_for_link(session=session, settings=settings, token=token)
    if _acknowledge(session=session, alert=alert, staff_id=None, via="（预警消息链接）"):
        _changed_after_commit(session, settings, event)
    session.flush()
    return alert, event


# --- live updates ------------------------------------------------------------------------------


def publish_changes(
    *, settings: Settings, company_id: int, event_ids: list[int], community_id: int | None = None
) -> None:
    """Tell the company's open feed pages these events changed (they refetch what they show).
    Call it after the change is committed. ``community_id``: the events' community (None: they
    concern the whole company); only that community's staff are told."""
    if event_ids:
        message = {"type": "opinion", "event_ids": sorted(set(event_ids)), "community_id": community_id}
        publish(settings, company_topic(company_id), message)


def _changed_after_commit(session: Session, settings: Settings, event: Event) -> None:
    company_id, event_id, community_id = event.company_id, event.id, event.community_id
    after_commit(
        session,
        lambda: publish_changes(
            settings=settings, company_id=company_id, event_ids=[event_id], community_id=community_id
        ),
    )


# --- CSV export --------------------------------------------------------------------------------


def export_csv(*, session: Session, user: StaffUser, filters: FeedFilter) -> str:
    """The filtered events as CSV, UTF-8 with a BOM (Excel then reads the Chinese correctly)."""
    events = session.scalars(
        select(Event)
        .where(*_conditions(session, user, filters))
        .order_by(Event.last_seen_at.desc(), Event.id.desc())
        .limit(MAX_EXPORT)
    ).all()
    places = community_names(session=session, ids=(e.community_id for e in events))
    return csv_text(
        CSV_COLUMNS,
        (
            [
                event.id,
                grade_label(event.grade),
                event.title,
                places.get(event.community_id, "") if event.community_id else "全公司",
                "、".join(platform_label(p) for p in event.platforms or []),
                event.post_count,
                event.negative_count,
                STATUS_LABELS[event.status],
                local_time(event.first_seen_at),
                local_time(event.last_seen_at),
                "；".join(event.reasons or []),
            ]
            for event in events
        ),
    )


# --- alert routes ------------------------------------------------------------------------------


def mask_target(route: AlertRoute) -> str:
    """A webhook URL carries its robot's key: only the host and the last 4 characters go out."""
    if route.channel is AlertChannel.email:
        return route.target
    host = urlsplit(route.target).netloc or "?"
    return f"{host}/…{route.target[-4:]}"


def mask_secret(secret: str | None) -> str | None:
    return f"****{secret[-4:]}" if secret else None


def list_routes(*, session: Session, company_id: int) -> list[AlertRoute]:
    return list(
        session.scalars(select(AlertRoute).where(AlertRoute.company_id == company_id).order_by(AlertRoute.id))
    )


def get_route(*, session: Session, company_id: int, route_id: int) -> AlertRoute:
    route = session.get(AlertRoute, route_id)
    if route is None or route.company_id != company_id:
        raise NotFound("没有这条预警通道")
    return route


def _check_target(channel: AlertChannel, target: str, policy: OutboundPolicy) -> str:
    target = target.strip()
    if channel is AlertChannel.email:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        if not addresses or any("@" not in a or " " in a for a in addresses):
            raise InvalidInput("邮件通道的目标应为邮箱地址（多个用逗号分隔）")
        return ",".join(addresses)
    parts = urlsplit(target)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput("机器人通道的目标应为 Webhook 地址（https://…）")
    # Checked now and again at every send (core.outbound): a robot must not point inside.
    return check_url(target, policy=policy, field="Webhook 地址（target）")


def _check_community(session: Session, company_id: int, community_id: int | None) -> None:
    if community_id is None:
        return
    community = session.get(Community, community_id)
    if community is None or community.company_id != company_id:
        raise NotFound("小区不存在")


def save_route(
    *,
    session: Session,
    company_id: int,
    route_id: int | None,
    name: str,
    channel: AlertChannel,
    target: str | None,
    secret: str | None,
    community_id: int | None,
    worst_grade: int,
    escalation: bool,
    policy: OutboundPolicy,
) -> AlertRoute:
    """Create (``route_id`` None) or update a route. On update, ``target`` None keeps the stored
    URL and ``secret`` None keeps the stored secret (``""`` removes it)."""
    _check_community(session, company_id, community_id)
    if route_id is None:
        if not target:
            raise InvalidInput("请填写通道目标（Webhook 地址或邮箱）")
        route = AlertRoute(company_id=company_id)
        session.add(route)
    else:
        route = get_route(session=session, company_id=company_id, route_id=route_id)
    if target is None and route_id is not None and channel is not route.channel:
        raise InvalidInput("更换通道类型时请重新填写目标")
    route.name = name.strip()
    route.channel = channel
    if target is not None:
        route.target = _check_target(channel, target, policy)
    if secret is not None:
        route.secret = secret.strip() or None
    route.community_id = community_id
    route.worst_grade = worst_grade
    route.escalation = escalation
    session.flush()
    return route


def delete_route(*, session: Session, company_id: int, route_id: int) -> None:
    session.delete(get_route(session=session, company_id=company_id, route_id=route_id))
