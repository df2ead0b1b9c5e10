"""The opinion feed's API: events (filtered, one with its posts, chart series, workflow, notes),
alert acknowledgement (in the feed and through the robot message's signed link), the CSV export,
the live stream, and the alert routes (admins)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import HTMLResponse, StreamingResponse

from accounts.deps import AdminUser, roles
from accounts.models import Role, StaffUser
from core.deps import SessionDep, SettingsDep
from core.errors import Gone, NotFound
from core.live import company_topic, stream
from core.masking import mask_text
from core.outbound import outbound_policy
from core.routing import CommittingRoute
from core.settings import Settings
from core.types import PathId, QueryId
from sentiment import alerts as alert_service
from sentiment import feed, schemas
from sentiment import service as sentiment_service
from sentiment.feed import BEIJING, FeedFilter
from sentiment.models import (
    Alert,
    AlertChannel,
    AlertRoute,
    Event,
    EventKind,
    EventLog,
    EventStatus,
    Post,
    WatchKind,
)

router = APIRouter(tags=["opinion"], route_class=CommittingRoute)

FeedUser = Annotated[StaffUser, Depends(roles(Role.pr, Role.supervisor, Role.admin))]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _aware(value: datetime | None) -> datetime | None:
    """A time without a zone is Beijing time (what staff type)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=BEIJING)


def feed_filter(
    grade: Annotated[int | None, Query(ge=1, le=4, description="exactly this grade (1 = Ⅰ)")] = None,
    grade_max: Annotated[int | None, Query(ge=1, le=4, description="this grade or worse")] = None,
    graded: Annotated[bool, Query(description="only graded events (Ⅰ–Ⅳ)")] = False,
    community_id: QueryId = None,
    platform: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: Annotated[list[schemas.Status] | None, Query()] = None,
    kind: Literal["public", "internal"] | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> FeedFilter:
    return FeedFilter(
        grade=grade,
        grade_max=grade_max,
        graded_only=graded,
        community_id=community_id,
        platform=platform or None,
        since=_aware(since),
        until=_aware(until),
        statuses=tuple(EventStatus(s) for s in status or ()),
        kind=EventKind(kind) if kind else None,
        q=q or None,
    )


FilterDep = Annotated[FeedFilter, Depends(feed_filter)]


def event_reads(session: SessionDep, events: Sequence[Event]) -> list[schemas.EventRead]:
    places = feed.community_names(session=session, ids=(e.community_id for e in events))
    pending = feed.unacknowledged_alerts(session=session, event_ids=[e.id for e in events])
    return [
        schemas.EventRead(
            id=e.id,
            kind=e.kind.value,
            topic=e.topic,
            title=mask_text(e.title),
            community_id=e.community_id,
            community=places.get(e.community_id) if e.community_id else None,
            grade=e.grade,
            grade_label=feed.grade_label(e.grade),
            score=round(e.score, 3),
            reasons=list(e.reasons or []),
            platforms=list(e.platforms or []),
            platform_labels=[feed.platform_label(p) for p in e.platforms or []],
            post_count=e.post_count,
            negative_count=e.negative_count,
            status=e.status.value,
            status_label=feed.STATUS_LABELS[e.status],
            first_seen_at=e.first_seen_at.isoformat(),
            last_seen_at=e.last_seen_at.isoformat(),
            updated_at=e.updated_at.isoformat(),
            unacknowledged_alerts=pending.get(e.id, 0),
        )
        for e in events
    ]


def _post_read(post: Post) -> schemas.PostRead:
    reasons = post.sentiment_reasons or {}
    words = [*reasons.get("negative", []), *reasons.get("positive", []), *reasons.get("cues", [])]
    return schemas.PostRead(
        id=post.id,
        platform=post.platform,
        platform_label=feed.platform_label(post.platform),
        url=sentiment_service.safe_post_url(post.url),  # rows stored before URLs were checked too
        title=mask_text(post.title) if post.title else None,
        text=mask_text(post.text),
        author=post.author,
        author_followers=post.author_followers,
        author_verified=post.author_verified,
        published_at=_iso(post.published_at),
        crawled_at=post.crawled_at.isoformat(),
        likes=post.likes,
        comments=post.comments,
        reposts=post.reposts,
        views=post.views,
        matched=list(post.matched or []),
        sentiment=post.sentiment,
        sentiment_score=round(post.sentiment_score, 3),
        sentiment_words=[str(w) for w in words][:12],
        risk_grade=post.risk_grade,
        risk_reasons=list(post.risk_reasons or []),
    )


def _log_reads(session: SessionDep, logs: Sequence[EventLog]) -> list[schemas.LogRead]:
    names = feed.staff_names(session=session, ids=(entry.staff_id for entry in logs))
    return [
        schemas.LogRead(
            id=entry.id,
            at=entry.at.isoformat(),
            kind=entry.kind,
            staff=names.get(entry.staff_id) if entry.staff_id else None,
            text=entry.text,
        )
        for entry in logs
    ]


def _alert_reads(session: SessionDep, alerts: Sequence[Alert]) -> list[schemas.AlertRead]:
    names = feed.staff_names(session=session, ids=(a.acknowledged_by for a in alerts))
    return [
        schemas.AlertRead(
            id=a.id,
            event_id=a.event_id,
            grade=a.grade,
            grade_label=feed.grade_label(a.grade),
            created_at=a.created_at.isoformat(),
            sent_at=_iso(a.sent_at),
            delivered=list(a.delivered or []),
            held_back=a.held_back,
            error=a.error,
            acknowledged_at=_iso(a.acknowledged_at),
            acknowledged_by=(names.get(a.acknowledged_by) if a.acknowledged_by else None)
            or ("预警消息链接" if a.acknowledged_at else None),
            escalated_at=_iso(a.escalated_at),
        )
        for a in alerts
    ]


def _detail(session: SessionDep, event: Event) -> schemas.EventDetail:
    posts, total = feed.event_posts(session=session, event=event)
    return schemas.EventDetail(
        event=event_reads(session, [event])[0],
        posts=[_post_read(p) for p in posts],
        post_total=total,
        logs=_log_reads(session, feed.event_logs(session=session, event=event)),
        alerts=_alert_reads(session, feed.event_alerts(session=session, event=event)),
        transitions=[s.value for s in feed.transitions(event)],
    )


# --- the feed ----------------------------------------------------------------------------------


@router.get("/api/opinion/filters", response_model=schemas.FeedFilters)
def filters(user: FeedUser, session: SessionDep) -> schemas.FeedFilters:
    """What the filter bar offers: this user's communities, the platforms posts came from."""
    communities, platforms = feed.filter_options(session=session, user=user)
    return schemas.FeedFilters(
        communities=[schemas.FilterOption(value=str(c.id), label=c.name) for c in communities],
        platforms=[schemas.FilterOption(value=p, label=feed.platform_label(p)) for p in platforms],
    )


@router.get("/api/opinion/events", response_model=schemas.EventPage)
def list_events(
    user: FeedUser,
    session: SessionDep,
    filters: FilterDep,
    limit: Annotated[int, Query(ge=1, le=feed.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.EventPage:
    """Events the user may see, the newest activity first."""
    events, total = feed.list_events(session=session, user=user, filters=filters, limit=limit, offset=offset)
    return schemas.EventPage(items=event_reads(session, events), total=total, limit=limit, offset=offset)


@router.get("/api/opinion/events.csv", response_class=Response)
def export_events(user: FeedUser, session: SessionDep, filters: FilterDep) -> Response:
    """The same filters as the list, as a CSV file Excel opens (UTF-8 with BOM)."""
    text = feed.export_csv(session=session, user=user, filters=filters)
    stamp = datetime.now(BEIJING).strftime("%Y%m%d-%H%M")
    return Response(
        content=text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="opinion-events-{stamp}.csv"; '
            f"filename*=UTF-8''%E8%88%86%E6%83%85%E4%BA%8B%E4%BB%B6-{stamp}.csv"  # 舆情事件-….csv
        },
    )


@router.get("/api/opinion/events/{event_id}", response_model=schemas.EventDetail)
def get_event(event_id: PathId, user: FeedUser, session: SessionDep) -> schemas.EventDetail:
    """The event with its newest posts, its timeline and its alerts."""
    return _detail(session, feed.get_event(session=session, user=user, event_id=event_id))


@router.get("/api/opinion/events/{event_id}/series", response_model=schemas.Series)
def event_series(event_id: PathId, user: FeedUser, session: SessionDep) -> schemas.Series:
    """Posts per hour (per day for a story longer than three days), by sentiment, for the chart."""
    event = feed.get_event(session=session, user=user, event_id=event_id)
    unit, buckets = feed.series(session=session, event=event)
    shape = "%m-%d" if unit == "day" else "%m-%d %H:00"
    return schemas.Series(
        unit="day" if unit == "day" else "hour",
        points=[
            schemas.SeriesPoint(
                at=b.start.isoformat(),
                label=b.start.strftime(shape),
                posts=b.posts,
                neg=b.neg,
                neu=b.neu,
                pos=b.pos,
                mean_score=b.mean_score,
            )
            for b in buckets
        ],
    )


@router.post("/api/opinion/events/{event_id}/status", response_model=schemas.EventDetail)
def set_status(
    event_id: PathId, body: schemas.StatusChange, user: FeedUser, session: SessionDep, settings: SettingsDep
) -> schemas.EventDetail:
    """新 → 已确认 → 处置中 → 已处置, one step at a time; 已处置 → 处置中 reopens (with the reason)."""
    event = feed.set_status(session=session, settings=settings, user=user, event_id=event_id,
                            status=EventStatus(body.status), note=body.note)  # fmt: skip
    return _detail(session, event)


@router.post("/api/opinion/events/{event_id}/notes", response_model=schemas.LogRead, status_code=201)
def add_note(
    event_id: PathId, body: schemas.NoteIn, user: FeedUser, session: SessionDep, settings: SettingsDep
) -> schemas.LogRead:
    entry = feed.add_note(session=session, settings=settings, user=user, event_id=event_id, text=body.text)
    return _log_reads(session, [entry])[0]


@router.post("/api/opinion/alerts/{alert_id}/ack", response_model=schemas.AlertRead)
def acknowledge(
    alert_id: PathId, user: FeedUser, session: SessionDep, settings: SettingsDep
) -> schemas.AlertRead:
    """确认收到: a Ⅰ/Ⅱ alert then stops escalating (its event's earlier alerts too)."""
    alert = feed.acknowledge_alert(session=session, settings=settings, user=user, alert_id=alert_id)
    return _alert_reads(session, [alert])[0]


@router.get("/api/opinion/stream")
async def opinion_stream(settings: SettingsDep, user: FeedUser) -> StreamingResponse:
    """Server-sent events: {"type": "opinion", "event_ids": [...]} when events change; the page
    refetches what it shows. Staff of some communities hear only of theirs and the company-wide
    ones (not even the ids of the others)."""
    mine = None if user.all_communities else set(user.community_ids)

    def keep(event: dict[str, Any]) -> bool:
        place = event.get("community_id")
        return event.get("type") == "opinion" and (mine is None or place is None or place in mine)

    events = stream(settings, [company_topic(user.company_id)], keep=keep)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- the signed link in a robot message --------------------------------------------------------

_LINK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@router.get("/opinion/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack_page(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Shows the alert and a button; only the button acknowledges (a chat app's link preview
    fetches the page, and must not acknowledge by doing so)."""
    try:
        alert, event = feed.alert_for_link(session=session, settings=settings, token=token)
    except (NotFound, Gone) as exc:
        return _ack_refused(exc, settings)
    place = feed.community_names(session=session, ids=[event.community_id]).get(
        event.community_id or 0, "全公司"
    )
    return HTMLResponse(_ack_html(alert, event, place), headers=_LINK_HEADERS)


@router.post("/opinion/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack_by_link(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    try:
        alert, event = feed.acknowledge_by_link(session=session, settings=settings, token=token)
    except (NotFound, Gone) as exc:
        return _ack_refused(exc, settings)
    place = feed.community_names(session=session, ids=[event.community_id]).get(
        event.community_id or 0, "全公司"
    )
    return HTMLResponse(_ack_html(alert, event, place), headers=_LINK_HEADERS)


_ACK_HEAD = (
    "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    "<meta name='robots' content='noindex'>"
    "<title>{title}</title><link rel='stylesheet' href='/static/anju.css'></head><body class='ack'>"
    "<main class='card narrow'>"
)


def _ack_refused(exc: NotFound | Gone, settings: Settings) -> HTMLResponse:
    """A page, not JSON: whoever opens the link reads why it does nothing and where to go."""
    if isinstance(exc, Gone):
        why = (f"这条预警发出已超过 {settings.ack_link_hours} 小时，链接不能再用来确认。"
               "如仍需跟进，请登录舆情页面处理。")  # fmt: skip
    else:
        why = escape(exc.message)
    page = _ACK_HEAD.format(title=escape(exc.message)) + (
        f"<h1>{escape(exc.message)}</h1><p>{why}</p>"
        "<p><a href='/login?next=/opinion'>登录舆情页面</a></p></main></body></html>"
    )
    return HTMLResponse(page, exc.status_code, headers=_LINK_HEADERS)


def _ack_html(alert: Alert, event: Event, place: str) -> str:
    grade = feed.grade_label(alert.grade)
    if alert.acknowledged_at is not None:
        when = alert.acknowledged_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
        body = f"<p class='ok' id='done'>已确认收到（{when}）。请登录舆情页面跟进处置。</p>"
    else:
        body = "<form method='post'><button type='submit' class='primary'>确认收到</button></form>"
    return _ACK_HEAD.format(title=f"舆情预警 {escape(grade)}") + (
        f"<h1>舆情{escape(grade)}预警</h1>"
        f"<p><b>{escape(mask_text(event.title))}</b></p>"
        f"<p class='muted'>社区：{escape(place)}　帖子：{event.post_count} 条（负面 {event.negative_count}）"
        f"　状态：{feed.STATUS_LABELS[event.status]}</p>"
        + "".join(f"<p class='muted'>· {escape(r)}</p>" for r in (event.reasons or [])[:6])
        + body
        + f"<p><a href='/opinion?event={event.id}'>查看事件详情（需登录）</a></p></main></body></html>"
    )


# --- alert routes (admins) ---------------------------------------------------------------------


def _route_read(route: AlertRoute) -> schemas.AlertRouteRead:
    return schemas.AlertRouteRead(
        id=route.id,
        name=route.name,
        channel=route.channel.value,
        target=feed.mask_target(route),
        secret=feed.mask_secret(route.secret),
        community_id=route.community_id,
        worst_grade=route.worst_grade,
        escalation=route.escalation,
    )


@router.get("/api/opinion/alert-routes", response_model=list[schemas.AlertRouteRead])
def list_routes(user: AdminUser, session: SessionDep) -> list[schemas.AlertRouteRead]:
    return [_route_read(r) for r in feed.list_routes(session=session, company_id=user.company_id)]


@router.post("/api/opinion/alert-routes", response_model=schemas.AlertRouteRead, status_code=201)
def create_route(
    body: schemas.AlertRouteIn, user: AdminUser, session: SessionDep, settings: SettingsDep
) -> schemas.AlertRouteRead:
    """A group robot (WeCom / DingTalk / Feishu webhook, with its signing secret) or mailboxes that
    get alerts of ``worst_grade`` or worse, for one community or all."""
    route = feed.save_route(session=session, company_id=user.company_id, route_id=None, name=body.name,
                            channel=AlertChannel(body.channel), target=body.target, secret=body.secret,
                            community_id=body.community_id, worst_grade=body.worst_grade,
                            escalation=body.escalation, policy=outbound_policy(settings))  # fmt: skip
    return _route_read(route)


@router.get("/api/opinion/alert-routes/{route_id}", response_model=schemas.AlertRouteRead)
def get_route(route_id: PathId, user: AdminUser, session: SessionDep) -> schemas.AlertRouteRead:
    return _route_read(feed.get_route(session=session, company_id=user.company_id, route_id=route_id))


@router.put("/api/opinion/alert-routes/{route_id}", response_model=schemas.AlertRouteRead)
def update_route(
    route_id: PathId,
    body: schemas.AlertRouteUpdate,
    user: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.AlertRouteRead:
    """Leave ``target`` and ``secret`` out to keep the stored ones."""
    route = feed.save_route(session=session, company_id=user.company_id, route_id=route_id, name=body.name,
                            channel=AlertChannel(body.channel), target=body.target, secret=body.secret,
                            community_id=body.community_id, worst_grade=body.worst_grade,
                            escalation=body.escalation, policy=outbound_policy(settings))  # fmt: skip
    return _route_read(route)


@router.post("/api/opinion/alert-routes/{route_id}/test", response_model=schemas.RouteTestResult)
def test_route(
    route_id: PathId, user: AdminUser, session: SessionDep, settings: SettingsDep
) -> schemas.RouteTestResult:
    """Send a test message to this route now and say whether the robot or mail server took it."""
    route = feed.get_route(session=session, company_id=user.company_id, route_id=route_id)
    error = alert_service.send_test(session=session, settings=settings, route=route)
    return schemas.RouteTestResult(delivered=error is None, error=error)


@router.delete("/api/opinion/alert-routes/{route_id}", status_code=204)
def delete_route(route_id: PathId, user: AdminUser, session: SessionDep) -> Response:
    feed.delete_route(session=session, company_id=user.company_id, route_id=route_id)
    return Response(status_code=204)


@router.get("/api/opinion/watch-terms", response_model=list[schemas.WatchTermRead])
def list_watch_terms(user: FeedUser, session: SessionDep) -> list[schemas.WatchTermRead]:
    """The names besides the company's and its communities' own that make a post ours."""
    rows = sentiment_service.list_watch_terms(session=session, company_id=user.company_id)
    return [
        schemas.WatchTermRead(id=r.id, term=r.term, kind=r.kind.value, community_id=r.community_id)  # type: ignore[arg-type]
        for r in rows
    ]


@router.post("/api/opinion/watch-terms", response_model=schemas.WatchTermRead, status_code=201)
def add_watch_term(body: schemas.WatchTermIn, user: AdminUser, session: SessionDep) -> schemas.WatchTermRead:
    row = sentiment_service.add_watch_term(
        session=session,
        company_id=user.company_id,
        term=body.term,
        kind=WatchKind(body.kind),
        community_id=body.community_id,
    )
    return schemas.WatchTermRead(id=row.id, term=row.term, kind=body.kind, community_id=row.community_id)


@router.delete("/api/opinion/watch-terms/{term_id}", status_code=204)
def delete_watch_term(term_id: PathId, user: AdminUser, session: SessionDep) -> None:
    sentiment_service.delete_watch_term(session=session, company_id=user.company_id, term_id=term_id)
