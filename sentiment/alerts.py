"""Alerts of opinion events: one per event and grade (an upgrade makes a new one), delivered to
the company's routes (WeCom / DingTalk / Feishu group robots, e-mail) for that grade and
community, rate-limited, and escalated when a Ⅰ or Ⅱ alert is not acknowledged in time.

Rate limit: Ⅰ and Ⅱ always go out at once. Ⅲ and Ⅳ beyond ``alert_rate_per_hour`` in the last
hour are held back and go out together as one digest (``send_digest``), so a storm of posts
does not bury the group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import links
from core.db import utcnow
from core.errors import NotFound
from core.settings import Settings
from org.models import Community
from sentiment.models import Alert, AlertChannel, AlertRoute, Event, EventLog, Post
from sentiment.risk import grade_label
from sentiment.service import safe_post_url

log = logging.getLogger(__name__)

ESCALATE_GRADES = (1, 2)  # Ⅰ and Ⅱ must be acknowledged (ANJU_ALERT_ACK_MINUTES) or they escalate
ALWAYS_SEND_GRADES = (1, 2)  # never held back by the hourly limit
LATEST_POSTS = 3  # post links in one message


def raise_alert(*, session: Session, event: Event) -> Alert | None:
    """The alert this event now deserves, if it has not had one of this grade or worse."""
    if event.grade is None or event.id is None:
        return None
    worst = session.scalar(select(func.min(Alert.grade)).where(Alert.event_id == event.id))
    if worst is not None and worst <= event.grade:
        return None
    alert = Alert(company_id=event.company_id, event_id=event.id, grade=event.grade)
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:  # another crawl raised it a moment ago
        return None
    upgrade = worst is not None
    session.add(EventLog(event_id=event.id, kind="alert",
                         text=f"{'升级' if upgrade else '发出'}{grade_label(event.grade)}预警"))  # fmt: skip
    return alert


def queue_delivery(*, settings: Settings, alert_id: int, grade: int | None = None) -> None:
    """Deliver now (a job), and check the acknowledgement later for Ⅰ and Ⅱ."""
    from core.queue import enqueue
    from sentiment import tasks

    enqueue(tasks.deliver_alert, queue="high", job_id=f"alert-{alert_id}", settings=settings,
            alert_id=alert_id)  # fmt: skip
    if grade is None or grade in ESCALATE_GRADES:
        enqueue(tasks.escalate_alert, queue="high", job_id=f"alert-escalate-{alert_id}", settings=settings,
                delay=timedelta(minutes=settings.alert_ack_minutes), alert_id=alert_id)  # fmt: skip


def ack_token(settings: Settings, alert_id: int, *, issued_at: datetime | None = None) -> str:
    """The link in an alert lets whoever receives it acknowledge without logging in, for
    ``ack_link_hours`` (core.links)."""
    return links.sign(settings, "opinion-ack", alert_id, issued_at=issued_at)


def alert_for_token(*, session: Session, settings: Settings, token: str) -> Alert:
    """The alert a valid link names; NotFound for any other token, LinkExpired for an old one."""
    alert = session.get(Alert, links.verify(settings, "opinion-ack", token))
    if alert is None:
        raise NotFound("预警不存在")
    return alert


def acknowledge(*, session: Session, alert: Alert, staff_id: int | None, via: str = "") -> bool:
    """Acknowledge an alert (and every earlier alert of its event). False if it already was."""
    if alert.acknowledged_at is not None:
        return False
    now = utcnow()
    for row in session.scalars(
        select(Alert).where(Alert.event_id == alert.event_id, Alert.acknowledged_at.is_(None))
    ):
        row.acknowledged_at, row.acknowledged_by = now, staff_id
    session.add(EventLog(event_id=alert.event_id, kind="ack", staff_id=staff_id,
                         text=f"确认收到{grade_label(alert.grade)}预警{via}"))  # fmt: skip
    return True


def _post_line(post: Post) -> str:
    """A post in a robot message: linked when it has a web address (never any other kind)."""
    url = safe_post_url(post.url)
    title = (post.title or post.text)[:40]
    return f"- [{title}]({url})" if url else f"- {title}"


@dataclass
class Message:
    title: str
    markdown: str
    text: str  # e-mail body


def compose(*, session: Session, settings: Settings, alert: Alert, escalation: bool = False) -> Message:
    event = session.get(Event, alert.event_id)
    assert event is not None
    community = session.get(Community, event.community_id) if event.community_id else None
    place = community.name if community else "全公司"
    head = "【未确认·升级】" if escalation else ""
    title = f"{head}舆情{grade_label(alert.grade)}：{place} {event.title}"[:120]
    posts = list(session.scalars(
        select(Post).where(Post.event_id == event.id).order_by(Post.id.desc()).limit(LATEST_POSTS)
    ))  # fmt: skip
    link = f"{settings.base_url}/opinion?event={event.id}"
    ack = f"{settings.base_url}/opinion/ack/{ack_token(settings, alert.id)}"
    reasons = "\n".join(f"- {r}" for r in (event.reasons or [])[:6])
    lines = [
        f"### {title}",
        f"**等级**：{grade_label(alert.grade)}　**社区**：{place}　**帖子**：{event.post_count} 条"
        f"（负面 {event.negative_count}）　**平台**：{'、'.join(event.platforms or []) or '—'}",
        "**研判理由**：",
        reasons or "- —",
        "**最新帖子**：",
        *[_post_line(p) for p in posts],
        f"[查看事件]({link})　[确认收到]({ack})",
    ]
    if escalation:
        lines.insert(1, f"> 该预警发出已超过 {settings.alert_ack_minutes} 分钟仍无人确认，请立即处置。")
    markdown = "\n".join(lines)
    text = "\n".join(
        [title, "", f"等级：{grade_label(alert.grade)}", f"社区：{place}",
         f"帖子：{event.post_count} 条（负面 {event.negative_count}）",
         f"平台：{'、'.join(event.platforms or []) or '—'}", "研判理由：",
         *[f"  - {r}" for r in event.reasons or []], "最新帖子：",
         *[f"  - {(p.title or p.text)[:60]} {safe_post_url(p.url)}" for p in posts],
         "", f"查看事件：{link}", f"确认收到：{ack}"]
    )  # fmt: skip
    return Message(title, markdown, text)


def routes_for(
    *, session: Session, company_id: int, community_id: int | None, grade: int, escalation: bool = False
) -> list[AlertRoute]:
    query = select(AlertRoute).where(
        AlertRoute.company_id == company_id,
        or_(AlertRoute.community_id.is_(None), AlertRoute.community_id == community_id),
    )
    if escalation:
        query = query.where(AlertRoute.escalation.is_(True))
    else:
        query = query.where(AlertRoute.worst_grade >= grade)
    return list(session.scalars(query.order_by(AlertRoute.id)))


def held_back(*, session: Session, settings: Settings, alert: Alert) -> bool:
    """Past the hourly limit (Ⅲ and Ⅳ only): fold into the next digest instead."""
    if alert.grade in ALWAYS_SEND_GRADES:
        return False
    sent = session.scalar(
        select(func.count(Alert.id)).where(
            Alert.company_id == alert.company_id,
            Alert.sent_at >= utcnow() - timedelta(hours=1),
            Alert.held_back.is_(False),
        )
    )
    return (sent or 0) >= settings.alert_rate_per_hour


def deliver(*, session: Session, settings: Settings, alert: Alert, escalation: bool = False) -> list[str]:
    """Send to every route not yet reached; returns the errors (routes reached are remembered on
    the alert, so a retry sends only to the ones that failed)."""
    event = session.get(Event, alert.event_id)
    assert event is not None
    if (
        not escalation
        and alert.sent_at is None
        and held_back(session=session, settings=settings, alert=alert)
    ):
        alert.held_back = True
        alert.sent_at = utcnow()
        session.add(EventLog(event_id=event.id, kind="alert", text="本小时预警已达上限，并入汇总"))
        return []
    message = compose(session=session, settings=settings, alert=alert, escalation=escalation)
    done = list(alert.delivered or [])
    errors: list[str] = []
    prefix = "escalation:" if escalation else ""
    routes = routes_for(session=session, company_id=alert.company_id, community_id=event.community_id,
                        grade=alert.grade, escalation=escalation)  # fmt: skip
    for route in routes:
        key = f"{prefix}{route.id}"
        if key in done:
            continue
        try:
            _send(settings=settings, route=route, message=message)
            done.append(key)
        except Exception as exc:
            log.warning("alert %s to route %s failed: %s", alert.id, route.id, exc)
            errors.append(f"{route.name}：{getattr(exc, 'message', type(exc).__name__)}")
    alert.delivered = done
    alert.error = "；".join(errors) or None
    if not escalation and alert.sent_at is None and (not errors or len(done) > 0):
        alert.sent_at = utcnow()
    if not routes:
        log.info("alert %s: no route for grade %s", alert.id, alert.grade)
    return errors


def _send(*, settings: Settings, route: AlertRoute, message: Message) -> None:
    from core.notify import NotifyError, RobotKind, RobotTarget, send_mail, send_robot
    from core.outbound import outbound_policy

    policy = outbound_policy(settings)  # checked again at every send: DNS may have changed since saving
    if route.channel is AlertChannel.email:
        if not settings.smtp_url:
            raise NotifyError("未配置邮件服务器（ANJU_SMTP_URL）")
        send_mail(policy=policy, smtp_url=settings.smtp_url, sender=settings.alert_mail_from,
                  to=[a.strip() for a in route.target.split(",") if a.strip()],
                  subject=message.title, text=message.text)  # fmt: skip
        return
    send_robot(RobotTarget(RobotKind(route.channel.value), route.target, route.secret, name=route.name),
               policy=policy, title=message.title, markdown=message.markdown)  # fmt: skip


def send_test(*, session: Session, settings: Settings, route: AlertRoute) -> str | None:
    """A test message to one route, sent now: None when the robot or mail server took it, else
    the error an admin reads (the route's name, the platform's code or the connection failure)."""
    from core.notify import NotifyError

    community = session.get(Community, route.community_id) if route.community_id else None
    scope = community.name if community else "全部社区"
    grades = "、".join(grade_label(g) for g in range(1, route.worst_grade + 1))
    title = f"【测试】安居舆情预警：{route.name}"
    lines = [
        f"### {title}",
        f"这是一条测试消息。收到说明「{route.name}」已配置正确，无需处理。",
        f"**接收范围**：{scope}　**接收等级**：{grades}"
        + ("　**并接收未确认的Ⅰ/Ⅱ级升级通知**" if route.escalation else ""),
    ]
    text = "\n".join(line.replace("### ", "").replace("**", "") for line in lines)
    try:
        _send(settings=settings, route=route, message=Message(title, "\n".join(lines), text))
    except NotifyError as exc:
        return exc.message
    except Exception as exc:  # a bug in one channel: still an answer for the admin, and a log line
        log.exception("test message to route %s raised", route.id)
        return f"{route.name} 发送失败：{type(exc).__name__}"
    log.info("test message to alert route %s delivered", route.id)
    return None


def escalate(*, session: Session, settings: Settings, alert: Alert) -> list[str] | None:
    """Unacknowledged Ⅰ/Ⅱ alert: to the escalation routes (None: nothing to do)."""
    if alert.acknowledged_at is not None or alert.grade not in ESCALATE_GRADES:
        return None
    if alert.escalated_at is None:
        alert.escalated_at = utcnow()
        text = f"{grade_label(alert.grade)}预警 {settings.alert_ack_minutes} 分钟未确认，已升级通知"
        session.add(EventLog(event_id=alert.event_id, kind="escalated", text=text))
    return deliver(session=session, settings=settings, alert=alert, escalation=True)


def send_digest(*, session: Session, settings: Settings, company_id: int) -> int:
    """Held-back alerts of a company in one message per route; returns how many it folded."""
    rows = [
        alert
        for alert in session.scalars(
            select(Alert).where(Alert.company_id == company_id, Alert.held_back.is_(True))
        )
        if not alert.delivered
    ]
    if not rows:
        return 0
    lines = [f"### 舆情预警汇总：过去一小时另有 {len(rows)} 条"]
    for alert in rows:
        event = session.get(Event, alert.event_id)
        if event is not None:
            lines.append(f"- {grade_label(alert.grade)} {event.title}（{event.post_count} 条）")
    message = Message(f"舆情预警汇总（{len(rows)} 条）", "\n".join(lines), "\n".join(lines))
    worst = min(a.grade for a in rows)
    for route in routes_for(session=session, company_id=company_id, community_id=None, grade=worst):
        try:
            _send(settings=settings, route=route, message=message)
        except Exception as exc:
            log.warning("digest to route %s failed: %s", route.id, exc)
    for alert in rows:
        alert.delivered = ["digest"]
    return len(rows)
