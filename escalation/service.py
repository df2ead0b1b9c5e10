"""Cases and work orders: opening them (the assistant, the channels and agents write through
here), the agents' queue, the case's life (claim, reply, transfer, resolve, reopen), SLA timers,
emergency paging and the follow-up survey (回访).

Everything that leaves the transaction (a timer job, a page, a live update for open consoles)
is registered with ``core.events.after_commit`` and happens only once the change is committed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import case as sql_case
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import Role, StaffUser
from accounts.service import accessible_community_ids, require_community, works_in
from conversations.models import Channel, Conversation, ConversationState, Message, Sender
from core import links
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from core.events import after_commit
from core.live import company_topic, publish
from core.masking import mask_text
from core.outbound import OutboundPolicy, check_url
from core.redis import get_redis
from core.settings import Settings
from core.tenancy import get_visible
from escalation.models import (
    ACTIVE_STATUSES,
    CallbackStatus,
    CallbackTask,
    CannedReply,
    Case,
    CaseCategory,
    CaseEvent,
    CaseEventKind,
    CaseStatus,
    DutyContact,
    Priority,
    SlaPolicy,
    Survey,
    WorkOrder,
    WorkOrderCategory,
    WorkOrderEvent,
    WorkOrderStatus,
)
from escalation.sla import BEIJING, REPAIR, BusinessHours, Sla, case_priority, policy
from org.models import Community, Resident

log = logging.getLogger(__name__)

SEVERITY = {
    CaseCategory.suggestion: 0,
    CaseCategory.inquiry: 1,
    CaseCategory.repair: 2,
    CaseCategory.complaint: 3,
    CaseCategory.emergency: 4,
}
PRIORITY_ORDER = {Priority.urgent: 0, Priority.important: 1, Priority.normal: 2}
# The skill group that takes a category first (agents without skills take every group).
SKILL_OF = {CaseCategory.emergency: "应急", CaseCategory.complaint: "投诉", CaseCategory.repair: "工程"}
DEFAULT_SKILL = "客服"
TIMER_KINDS = ("response_reminder", "response_breach", "resolve_reminder", "resolve_breach")


# --- live updates ------------------------------------------------------------------------------


def _changed(session: Session, settings: Settings, case: Case, what: str, **details: Any) -> None:
    """Tell open consoles of the company that this case changed (after the commit). ``details``
    let a console update a row in place instead of reloading its lists (a resident's message:
    the row's new summary line, masked as the list shows it)."""
    event = {"type": "case", "case_id": case.id, "community_id": case.community_id, "what": what, **details}
    company_id = case.company_id

    def announce() -> None:
        if what not in ROW_KEEPS:
            bump_cases_version(settings, company_id)  # before the event: a reload it causes sees it
        publish(settings, company_topic(company_id), event)

    after_commit(session, announce)


def list_summary(summary: str) -> str:
    """What a queue row shows of a case: its latest line, masked."""
    return mask_text(summary.rsplit("\n", 1)[-1][-120:])


# Changes after which a case's queue row reads the same (a cached list stays valid). A resident's
# message changes only the row's summary line: its event carries the line for open consoles, and
# a list cached before it shows the previous line for at most ListCache.SECONDS.
ROW_KEEPS = frozenset({"message", "note", "work_order", "reminder", "paged", "page_failed"})


def cases_version_key(company_id: int) -> str:
    return f"anju:cases:version:{company_id}"


def bump_cases_version(settings: Settings, company_id: int) -> None:
    try:
        get_redis(settings).incr(cases_version_key(company_id))
    except RedisError as exc:  # lists are then recomputed on every read until Redis is back
        log.warning("cases version of company %s not bumped: %s", company_id, exc)


def cases_version(settings: Settings, company_id: int) -> int | None:
    """Bumped by every change of a case of the company (None: Redis unreachable, do not cache)."""
    try:
        value = get_redis(settings).get(cases_version_key(company_id))
    except RedisError:
        return None
    return int(value or 0)


def _event(
    session: Session,
    case: Case,
    kind: CaseEventKind,
    text: str = "",
    *,
    actor: StaffUser | None = None,
    data: dict[str, Any] | None = None,
) -> CaseEvent:
    event = CaseEvent(
        case_id=case.id,
        kind=kind,
        text=text,
        actor_id=actor.id if actor else None,
        data=data or {},
        created_at=utcnow(),
    )
    session.add(event)
    case.updated_at = event.created_at
    return event


# --- opening -----------------------------------------------------------------------------------


def open_case(
    *,
    session: Session,
    settings: Settings,
    company_id: int,
    community_id: int,
    category: CaseCategory,
    reason: str,
    summary: str,
    conversation_id: int | None = None,
    resident_id: int | None = None,
    dispute: bool = False,
    now: datetime | None = None,
    actor: StaffUser | None = None,
    waiting: bool = True,
    hazard: str | None = None,
    emergency_kind: str | None = None,
    channel: str | None = None,
) -> Case:
    """A case for a person to take, with its priority, skill group and SLA due times.

    A conversation's messages join its open case (a question that becomes a complaint raises it),
    and mark the resident as waiting for a reply. An emergency is never folded into a complaint:
    it joins an open emergency of the conversation, or opens its own case, linked to the case it
    interrupted, with its own SLA, paging and survey. ``hazard`` names a danger the resident
    described but that is not happening now (安全隐患: "电梯多次困人"): the case is urgent and
    flagged, and nobody is paged. ``channel`` is where it came from (the conversation's channel
    when there is one; "staff" for an agent's own case)."""
    now = now or utcnow()
    linked: Case | None = None
    if conversation_id is not None:
        open_cases = list(
            session.scalars(
                select(Case)
                .where(Case.conversation_id == conversation_id, Case.status.in_(ACTIVE_STATUSES))
                .order_by(Case.id.desc())
            )
        )
        emergency = category is CaseCategory.emergency
        existing = next(
            (c for c in open_cases if not emergency or c.category is CaseCategory.emergency), None
        )
        linked = open_cases[0] if open_cases and existing is None else None
        if existing is not None:
            return _join(
                session, settings, existing, category=category, reason=reason, summary=summary,
                dispute=dispute, now=now, waiting=waiting, hazard=hazard,
            )  # fmt: skip
        if channel is None:
            conversation = session.get(Conversation, conversation_id)
            channel = conversation.channel.value if conversation is not None else None
    priority = Priority.urgent if hazard else case_priority(category)
    sla = policy(
        session=session, company_id=company_id, category=category, priority=priority, dispute=dispute
    )
    start = now if priority is Priority.urgent else _hours(settings).clock_start(now)
    case = Case(
        company_id=company_id,
        community_id=community_id,
        conversation_id=conversation_id,
        resident_id=resident_id,
        category=category,
        priority=priority,
        reason=reason[:64],
        summary=summary[-4000:],
        first_response_due=start + sla.first_response,
        resolve_due=start + sla.resolve,
        created_at=now,
        updated_at=now,
        skill=SKILL_OF.get(category, DEFAULT_SKILL),
        waiting_since=now,
        status=CaseStatus.open,
        sla_version=0,
        reopen_count=0,
        needs_supervisor=False,
        hazard=hazard[:16] if hazard else None,
        channel=channel,
        emergency_kind=emergency_kind[:16] if emergency_kind else None,
        linked_case_id=linked.id if linked is not None else None,
    )
    session.add(case)
    session.flush()
    if linked is not None:
        told = f"住户在此会话中报告了紧急情况，已另开案件 {case.id}（{emergency_kind or reason}）"
        _event(session, linked, CaseEventKind.note, told)
        _changed(session, settings, linked, "message")
    flag = f"，安全隐患（{hazard}）" if hazard else ""
    _event(
        session,
        case,
        CaseEventKind.created,
        f"{category.value}（{priority.value}{flag}）：{reason}",
        actor=actor,
    )
    _schedule_timers(session, settings, case)
    _changed(session, settings, case, "created")
    if category is CaseCategory.emergency:
        _start_paging(session, settings, case)
    log.info(
        "case %s opened: %s/%s (%s) in community %s",
        case.id,
        category.value,
        case.priority.value,
        reason,
        community_id,
    )
    return case


def _join(
    session: Session,
    settings: Settings,
    existing: Case,
    *,
    category: CaseCategory,
    reason: str,
    summary: str,
    dispute: bool,
    now: datetime,
    waiting: bool,
    hazard: str | None,
) -> Case:
    """A message added to the conversation's open case: a question that became a complaint raises
    it (an emergency never joins a lesser case: see open_case)."""
    raised = SEVERITY[category] > SEVERITY[existing.category]
    if raised:
        existing.category = category
        existing.priority = min(existing.priority, case_priority(category), key=PRIORITY_ORDER.__getitem__)
        existing.reason = reason[:64]
        existing.skill = SKILL_OF.get(category, existing.skill)
        _retime(session, settings, existing, dispute=dispute, keep_earlier=True)
        raised_to = f"升级为{category.value}（{existing.priority.value}）"
        _event(session, existing, CaseEventKind.priority, raised_to)
    flagged = bool(hazard and not existing.hazard)
    if flagged:
        existing.hazard = (hazard or "")[:16]
        raised_by_hazard = existing.priority is not Priority.urgent
        existing.priority = Priority.urgent
        _event(session, existing, CaseEventKind.priority,
               f"安全隐患（{hazard}）" + ("：升为紧急" if raised_by_hazard else ""))  # fmt: skip
        if raised_by_hazard:
            _retime(session, settings, existing, dispute=dispute, keep_earlier=True)
    existing.summary = f"{existing.summary}\n{summary}"[-4000:]  # the newest lines matter most
    if waiting:  # a question; a "谢谢" does not leave anyone waiting
        existing.waiting_since = existing.waiting_since or now
    _event(session, existing, CaseEventKind.message, summary[-500:])
    session.flush()
    _changed(session, settings, existing, "priority" if flagged else "message",
             summary=list_summary(existing.summary))  # fmt: skip
    return existing


def open_case_by_staff(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    community_id: int,
    category: CaseCategory,
    summary: str,
    conversation_id: int | None = None,
    resident_id: int | None = None,
) -> Case:
    """A case an agent opens (a walk-in, a call outside the call centre). Every id the agent gave
    is looked up within their communities first, and must be of the case's community: a
    conversation or resident of anyone else is not found."""
    require_staff(user)
    community = require_community(session=session, user=user, community_id=community_id)
    conversation = (
        get_visible(session, Conversation, conversation_id) if conversation_id is not None else None
    )
    resident = get_visible(session, Resident, resident_id) if resident_id is not None else None
    if conversation is not None and conversation.community_id != community.id:
        raise InvalidInput(f"该会话不是{community.name}的")
    if resident is not None and resident.community_id != community.id:
        raise InvalidInput(f"该住户不是{community.name}的")
    if (
        conversation is not None
        and resident is not None
        and conversation.resident_id not in (None, resident.id)
    ):
        raise InvalidInput("该会话不是这位住户的")
    return open_case(
        session=session,
        settings=settings,
        company_id=user.company_id,
        community_id=community.id,
        category=category,
        reason="opened by agent",
        summary=summary,
        channel="staff",
        conversation_id=conversation.id if conversation else None,
        resident_id=resident.id if resident else (conversation.resident_id if conversation else None),
        actor=user,
    )


def _hours(settings: Settings) -> BusinessHours:
    return BusinessHours.parse(settings.business_hours)


def _retime(
    session: Session, settings: Settings, case: Case, *, dispute: bool = False, keep_earlier: bool = False
) -> None:
    """Due times from the case's category and priority, counted from its creation; new timers."""
    sla = policy(
        session=session,
        company_id=case.company_id,
        category=case.category,
        priority=case.priority,
        dispute=dispute,
    )
    start = (
        case.created_at if case.priority is Priority.urgent else _hours(settings).clock_start(case.created_at)
    )
    first, resolve = start + sla.first_response, start + sla.resolve
    if keep_earlier:
        first, resolve = min(first, case.first_response_due), min(resolve, case.resolve_due)
    case.first_response_due, case.resolve_due = first, resolve
    _bump_timers(session, settings, case)


# --- SLA timers --------------------------------------------------------------------------------


def _timer_job_id(case_id: int, version: int, kind: str) -> str:
    return f"sla-{case_id}-v{version}-{kind}"


def timers(session: Session, case: Case) -> list[tuple[str, datetime]]:
    """The timers a case needs now: (kind, when)."""
    if not case.active:
        return []
    sla = policy(session=session, company_id=case.company_id, category=case.category, priority=case.priority)
    out: list[tuple[str, datetime]] = []
    if case.first_response_at is None:
        remind = min(sla.remind_before, (case.first_response_due - case.created_at) / 2)
        out += [
            ("response_reminder", case.first_response_due - remind),
            ("response_breach", case.first_response_due),
        ]
    remind = min(sla.remind_before, (case.resolve_due - case.created_at) / 2)
    out += [("resolve_reminder", case.resolve_due - remind), ("resolve_breach", case.resolve_due)]
    return out


def _schedule_timers(session: Session, settings: Settings, case: Case) -> None:
    """rq scheduled jobs for the case's reminders and breaches (the sweeper catches any a
    restarted Redis lost)."""
    planned = [
        (kind, at)
        for kind, at in timers(session, case)
        if not (kind == "response_breach" and case.response_breached_at)
        and not (kind == "resolve_breach" and case.resolve_breached_at)
    ]
    case_id, version = case.id, case.sla_version

    def enqueue_all() -> None:
        from core.queue import enqueue
        from escalation import tasks

        now = utcnow()
        for kind, at in planned:
            try:
                enqueue(
                    tasks.check_sla,
                    queue="high",
                    job_id=_timer_job_id(case_id, version, kind),
                    settings=settings,
                    delay=max(at - now, timedelta(0)) or None,
                    retry=None,
                    case_id=case_id,
                    version=version,
                    kind=kind,
                )
            except Exception as exc:  # the periodic SLA sweep still finds the breach
                log.warning("SLA timer %s of case %s not scheduled: %s", kind, case_id, exc)

    after_commit(session, enqueue_all)


def _bump_timers(session: Session, settings: Settings, case: Case) -> None:
    """The case's timers changed: the old ones become no-ops (and are removed), new ones are set."""
    old = (case.id, case.sla_version)
    case.sla_version += 1

    def cancel() -> None:
        from core.queue import get_queue

        try:
            registry = get_queue("high", settings=settings).scheduled_job_registry
            for kind in TIMER_KINDS:
                registry.remove(_timer_job_id(old[0], old[1], kind), delete_job=True)
        except Exception as exc:  # a stale timer that still runs finds a newer version and stops
            log.info("old SLA timers of case %s not removed: %s", old[0], exc)

    after_commit(session, cancel)
    _schedule_timers(session, settings, case)


@dataclass
class TimerOutcome:
    case_id: int
    kind: str
    outcome: str  # stale, met, reminded, breached, early


def check_sla(
    *,
    session: Session,
    settings: Settings,
    case_id: int,
    version: int,
    kind: str,
    now: datetime | None = None,
) -> TimerOutcome:
    """One timer firing: a reminder to whoever holds the case, or a breach that goes to the
    supervisor. A timer of an older version (the case was resolved, re-prioritised) does nothing."""
    now = now or utcnow()
    case = session.scalar(select(Case).where(Case.id == case_id).with_for_update())
    if case is None or case.sla_version != version or not case.active:
        return TimerOutcome(case_id, kind, "stale")
    response = kind.startswith("response")
    if response and case.first_response_at is not None:
        return TimerOutcome(case_id, kind, "met")
    due = case.first_response_due if response else case.resolve_due
    what = "首次响应" if response else "办结"
    local = due.astimezone(BEIJING).strftime("%H:%M")
    if kind.endswith("reminder"):
        _event(
            session,
            case,
            CaseEventKind.reminder,
            f"{what}将于 {local} 超时，请尽快处理",
            data={"kind": kind, "due": due.isoformat()},
        )
        _changed(session, settings, case, "reminder")
        return TimerOutcome(case_id, kind, "reminded")
    if now < due - timedelta(seconds=1):
        return TimerOutcome(case_id, kind, "early")  # a clock ahead of ours: the sweep fires it later
    return _breach(session, settings, case, kind, now)


def _breach(session: Session, settings: Settings, case: Case, kind: str, now: datetime) -> TimerOutcome:
    response = kind.startswith("response")
    if (case.response_breached_at if response else case.resolve_breached_at) is not None:
        return TimerOutcome(case.id, kind, "breached")
    # rq's scheduler keeps whole seconds, so a timer may fire up to a second before its due time
    # (tolerated above): the breach happened at the due time, never before it.
    now = max(now, case.first_response_due if response else case.resolve_due)
    if response:
        case.response_breached_at = now
    else:
        case.resolve_breached_at = now
    case.needs_supervisor = True
    what = "首次响应" if response else "办结"
    _event(session, case, CaseEventKind.breach, f"{what}已超时，已通知主管", data={"kind": kind})
    _changed(session, settings, case, "breach")
    case_id = case.id

    def notify() -> None:
        from core.queue import enqueue
        from escalation import tasks

        enqueue(
            tasks.notify_supervisors,
            job_id=f"breach-{case_id}-{kind}",
            settings=settings,
            case_id=case_id,
            kind=kind,
        )

    after_commit(session, notify)
    log.warning("case %s breached its %s SLA", case.id, what)
    return TimerOutcome(case.id, kind, "breached")


def sweep_sla(*, session: Session, settings: Settings, now: datetime | None = None) -> list[int]:
    """Periodic: breaches whose timer job was lost (Redis restarted empty) fire here. Returns the
    breached case ids."""
    now = now or utcnow()
    late = session.scalars(
        select(Case)
        .where(
            Case.status.in_(ACTIVE_STATUSES),
            (
                (
                    Case.first_response_at.is_(None)
                    & Case.response_breached_at.is_(None)
                    & (Case.first_response_due < now)
                )
                | (Case.resolve_breached_at.is_(None) & (Case.resolve_due < now))
            ),
        )
        .limit(200)
    ).all()
    breached = []
    for case in late:
        if (
            case.first_response_at is None
            and case.response_breached_at is None
            and case.first_response_due < now
        ):
            _breach(session, settings, case, "response_breach", now)
        if case.resolve_breached_at is None and case.resolve_due < now:
            _breach(session, settings, case, "resolve_breach", now)
        breached.append(case.id)
    return breached


# --- emergencies: paging the duty chain --------------------------------------------------------


def duty_chain(*, session: Session, community_id: int) -> list[DutyContact]:
    return list(
        session.scalars(
            select(DutyContact).where(DutyContact.community_id == community_id).order_by(DutyContact.level)
        )
    )


def _start_paging(session: Session, settings: Settings, case: Case) -> None:
    case.page_level = None
    case_id = case.id

    def page() -> None:
        from core.queue import enqueue
        from escalation import tasks

        enqueue(
            tasks.page_duty,
            queue="high",
            job_id=f"page-{case_id}-0",
            settings=settings,
            case_id=case_id,
            level=0,
        )

    after_commit(session, page)


def ack_token(settings: Settings, case_id: int, *, issued_at: datetime | None = None) -> str:
    """The link in a page lets whoever receives it acknowledge without logging in, for
    ``ack_link_hours`` (core.links)."""
    return links.sign(settings, "ack", case_id, issued_at=issued_at)


def case_for_ack_token(*, session: Session, settings: Settings, token: str) -> Case:
    """The case a valid link names; NotFound for any other token, LinkExpired for an old one."""
    case = session.get(Case, links.verify(settings, "ack", token))
    if case is None:
        raise NotFound(links.INVALID)
    return case


@dataclass
class Page:
    """One step of paging: whom to notify now, and when to check for the acknowledgement."""

    case_id: int
    level: int
    contact: DutyContact | None  # None: the chain is exhausted (or empty): the supervisors are told
    next_check: timedelta | None
    title: str
    text: str


def page_step(*, session: Session, settings: Settings, case_id: int, level: int) -> Page | None:
    """Record that level ``level`` of the chain is paged now (None when nothing is to be paged:
    acknowledged, resolved, or already paged at this level)."""
    case = session.scalar(select(Case).where(Case.id == case_id).with_for_update())
    if case is None or case.acknowledged_at is not None or not case.active:
        return None
    if case.page_level is not None and case.page_level >= level:
        return None  # a retried job: this level was paged already
    chain = duty_chain(session=session, community_id=case.community_id)
    contact = chain[level] if level < len(chain) else None
    case.page_level = level

    place = session.get(Community, case.community_id)
    where = place.name if place else ""
    title = f"【紧急】{where} {case.emergency_kind or case.category.value}（案件 {case.id}）"
    link = f"{settings.base_url}/ack/{ack_token(settings, case.id)}"
    head = f"### {title}\n\n{_masked_summary(case.summary)}\n\n"
    if contact is not None:
        seconds = contact.ack_seconds
        within = f"{seconds // 60} 分钟" if seconds >= 60 else f"{seconds} 秒"
        text = f"{head}请在 {within}内确认：[我来处理]({link})"
    else:
        text = f"{head}值班链已全部通知仍无人确认，请主管立即安排：[确认]({link})"
    if contact is not None:
        _event(
            session,
            case,
            CaseEventKind.paged,
            f"已通知第 {level + 1} 级值班：{contact.name}",
            data={"level": level, "contact": contact.name},
        )
    else:
        case.needs_supervisor = True
        _event(
            session,
            case,
            CaseEventKind.paged,
            "值班链无人确认，已通知主管" if chain else "本小区未配置值班链，已通知主管",
            data={"level": level, "exhausted": True},
        )
    _changed(session, settings, case, "paged")
    return Page(
        case.id, level, contact, timedelta(seconds=contact.ack_seconds) if contact else None, title, text
    )


def acknowledge(
    *, session: Session, settings: Settings, case: Case, by: str, actor: StaffUser | None = None
) -> Case:
    """Someone took the emergency: the chain stops here."""
    if case.acknowledged_at is not None:
        return case
    case.acknowledged_at = utcnow()
    case.acknowledged_by = by[:64]
    if case.first_response_at is None:
        case.first_response_at = case.acknowledged_at
    _event(session, case, CaseEventKind.acknowledged, f"{by} 已确认，开始处置", actor=actor)
    _changed(session, settings, case, "acknowledged")
    return case


def note_page_failure(
    *, session: Session, settings: Settings, case_id: int, level: int, errors: list[str]
) -> None:
    case = session.get(Case, case_id)
    if case is not None:
        _event(
            session,
            case,
            CaseEventKind.paged,
            f"第 {level + 1} 级值班通知发送失败：{'；'.join(errors)}"[:500],
            data={"level": level, "failed": True},
        )
        _changed(session, settings, case, "page_failed")


def supervisor_notice(
    *, session: Session, settings: Settings, case_id: int, kind: str
) -> tuple[str, str] | None:
    """(title, markdown) telling supervisors about a breach or an unacknowledged emergency; None
    when the case no longer needs them (resolved meanwhile)."""

    case = session.get(Case, case_id)
    if case is None or not case.active:
        return None
    place = session.get(Community, case.community_id)
    holder = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
    what = {
        "response_breach": "首次响应超时",
        "resolve_breach": "办结超时",
        "unacknowledged": "紧急事件无人确认",
    }.get(kind, kind)
    where = place.name if place else ""
    title = f"【{what}】{where} 案件 {case.id}（{case.category.value}·{case.priority.value}）"
    due = case.first_response_due if kind == "response_breach" else case.resolve_due
    lines = [
        f"### {title}",
        f"- 处理人：{holder.display_name if holder else '未分配'}",
        f"- 应完成时间：{due.astimezone(BEIJING).strftime('%m-%d %H:%M')}",
        f"- 摘要：{_masked_summary(case.summary)[-200:]}",
        f"- 查看：{settings.base_url}/console?case={case.id}",
    ]
    return title, "\n".join(lines)


def _masked_summary(summary: str) -> str:
    return mask_text(summary[-600:])


# --- the queue ---------------------------------------------------------------------------------


def require_staff(user: StaffUser, what: str = "客服案件") -> None:
    if user.role not in (Role.agent, Role.supervisor, Role.admin):
        raise Forbidden(f"您的角色无权处理{what}")


def _skills_ok(user: StaffUser, case: Case) -> bool:
    return user.role is not Role.agent or not user.skills or case.skill in user.skills


def get_case(*, session: Session, user: StaffUser, case_id: int) -> Case:
    """A case the user may see: 404 when it does not exist, 403 when it is another community's."""
    require_staff(user)
    case = session.get(Case, case_id)
    if case is None or case.company_id != user.company_id:
        raise NotFound("案件不存在")
    require_community(session=session, user=user, community_id=case.community_id)
    return case


def list_cases(
    *,
    session: Session,
    user: StaffUser,
    view: str = "queue",
    community_id: int | None = None,
    limit: int = 200,
) -> list[Case]:
    """``queue``: open cases nobody holds; ``mine``: the user's; ``active``: every open or held
    case; ``breached``: cases waiting for a supervisor; ``done``: resolved and closed. Ordered by
    priority, then the next SLA due time."""
    require_staff(user)
    ids = accessible_community_ids(session=session, user=user)
    if community_id is not None:
        require_community(session=session, user=user, community_id=community_id)
        ids = {community_id}
    priority_rank = sql_case(
        (Case.priority == Priority.urgent, 0), (Case.priority == Priority.important, 1), else_=2
    )
    next_due = sql_case((Case.first_response_at.is_(None), Case.first_response_due), else_=Case.resolve_due)
    stmt = select(Case).where(Case.company_id == user.company_id, Case.community_id.in_(ids))
    if view == "queue":
        stmt = stmt.where(Case.status == CaseStatus.open)
        if user.role is Role.agent and user.skills:
            stmt = stmt.where(Case.skill.in_(user.skills))
    elif view == "mine":
        stmt = stmt.where(Case.assignee_id == user.id, Case.status.in_(ACTIVE_STATUSES))
    elif view == "active":
        stmt = stmt.where(Case.status.in_(ACTIVE_STATUSES))
    elif view == "breached":
        stmt = stmt.where(Case.needs_supervisor.is_(True), Case.status.in_(ACTIVE_STATUSES))
    elif view == "done":
        stmt = stmt.where(Case.status.in_([CaseStatus.resolved, CaseStatus.closed]))
        return list(session.scalars(stmt.order_by(Case.updated_at.desc()).limit(limit)))
    else:
        raise InvalidInput(f"未知的列表：{view}")
    return list(session.scalars(stmt.order_by(priority_rank, next_due, Case.id).limit(limit)))


def _holding(session: Session, user_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.assignee_id == user_id, Case.status == CaseStatus.in_progress)
        )
        or 0
    )


def _give_to(session: Session, settings: Settings, case: Case, agent: StaffUser, *, by: StaffUser) -> None:
    if (
        agent.company_id != case.company_id
        or not agent.is_active
        or agent.role not in (Role.agent, Role.supervisor)
    ):
        raise InvalidInput("只能分配给本公司在岗的客服或主管")
    place = session.get(Community, case.community_id)
    if place is None or not works_in(agent, place):
        raise InvalidInput(f"{agent.display_name}不负责{place.name if place else '这个小区'}，不能分配给他")
    cap = settings.agent_max_open_cases
    if case.assignee_id != agent.id and _holding(session, agent.id) >= cap:
        who = "您" if agent.id == by.id else agent.display_name
        raise Conflict(f"{who}手上已有 {cap} 个处理中的案件，请先处理完再接新的")
    case.assignee_id = agent.id
    case.status = CaseStatus.in_progress
    case.claimed_at = utcnow()


def claim(*, session: Session, settings: Settings, user: StaffUser, case_id: int) -> Case:
    case = get_case(session=session, user=user, case_id=case_id)
    case = session.scalar(select(Case).where(Case.id == case.id).with_for_update()) or case
    if case.assignee_id == user.id and case.status is CaseStatus.in_progress:
        return case
    if case.status is not CaseStatus.open:
        holder = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
        raise Conflict(
            f"案件已被{holder.display_name}接手" if holder else f"案件状态为{case.status.value}，不能接手"
        )
    if not _skills_ok(user, case):
        raise Forbidden(f"该案件属于「{case.skill}」组")
    _give_to(session, settings, case, user, by=user)
    _event(session, case, CaseEventKind.claimed, f"{user.display_name} 接手", actor=user)
    _changed(session, settings, case, "claimed")
    return case


def _require_holder(user: StaffUser, case: Case) -> None:
    """Who may act on a case: the agent holding it, a supervisor, or anyone when nobody holds it."""
    if user.role in (Role.supervisor, Role.admin):
        return
    if case.assignee_id not in (None, user.id):
        raise Forbidden("该案件由其他客服处理中，请先转交或请主管分配")


def assign(
    *, session: Session, settings: Settings, user: StaffUser, case_id: int, agent_id: int, note: str = ""
) -> Case:
    """A supervisor gives a case to an agent (reassignment included)."""
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管可以分配案件")
    case = get_case(session=session, user=user, case_id=case_id)
    agent = get_visible(session, StaffUser, agent_id, label="客服账号")
    _active_or_conflict(case)
    previous = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
    _give_to(session, settings, case, agent, by=user)
    text = f"{user.display_name} 分配给 {agent.display_name}" + (
        f"（原：{previous.display_name}）" if previous else ""
    )
    _event(
        session,
        case,
        CaseEventKind.assigned,
        text + (f"：{note}" if note else ""),
        actor=user,
        data={"agent_id": agent.id},
    )
    _changed(session, settings, case, "assigned")
    return case


def transfer(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    case_id: int,
    note: str,
    agent_id: int | None = None,
    skill: str | None = None,
) -> Case:
    """Hand a case on, with a note for whoever takes it: to a colleague, or back to a skill
    group's queue."""
    case = get_case(session=session, user=user, case_id=case_id)
    agent = get_visible(session, StaffUser, agent_id, label="客服账号") if agent_id is not None else None
    _active_or_conflict(case)
    _require_holder(user, case)
    if not note.strip():
        raise InvalidInput("转交时请写明原因和进展，方便接手的同事")
    if (agent_id is None) == (skill is None):
        raise InvalidInput("请选择转交给哪位同事，或转回哪个技能组的队列")
    if agent is not None:
        _give_to(session, settings, case, agent, by=user)
        target = agent.display_name
    else:
        case.skill = (skill or DEFAULT_SKILL)[:16]
        case.assignee_id, case.status, case.claimed_at = None, CaseStatus.open, None
        target = f"「{case.skill}」组队列"
    _event(
        session,
        case,
        CaseEventKind.transferred,
        f"{user.display_name} 转交给 {target}：{note.strip()}",
        actor=user,
        data={"agent_id": agent_id, "skill": skill},
    )
    _changed(session, settings, case, "transferred")
    return case


def _active_or_conflict(case: Case) -> None:
    if not case.active:
        raise Conflict(f"案件{case.status.value}，请先重新打开")


def release_idle(*, session: Session, settings: Settings, now: datetime | None = None) -> list[int]:
    """Periodic: a case whose resident has waited past the threshold while an agent holds it goes
    back to the queue, so someone else can answer."""
    now = now or utcnow()
    limit = now - timedelta(minutes=settings.case_idle_minutes)
    idle = session.scalars(
        select(Case).where(
            Case.status == CaseStatus.in_progress,
            Case.assignee_id.is_not(None),
            Case.waiting_since.is_not(None),
            Case.waiting_since < limit,
            Case.claimed_at < limit,
        )
    ).all()
    for case in idle:
        holder = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
        case.assignee_id, case.status, case.claimed_at = None, CaseStatus.open, None
        minutes = int((now - (case.waiting_since or now)).total_seconds() // 60)
        _event(
            session,
            case,
            CaseEventKind.released,
            f"住户已等待 {minutes} 分钟无人回复，案件从{holder.display_name if holder else '客服'}处退回队列",
        )
        _changed(session, settings, case, "released")
    return [c.id for c in idle]


# --- working a case ----------------------------------------------------------------------------


def reply(*, session: Session, settings: Settings, user: StaffUser, case_id: int, text: str) -> Message:
    """The agent's reply, delivered on the resident's own channel. Replying to a case nobody
    holds takes it."""
    from channels.service import send_to_resident

    case = get_case(session=session, user=user, case_id=case_id)
    _active_or_conflict(case)
    _require_holder(user, case)
    if case.conversation_id is None:
        raise InvalidInput("该案件没有关联的会话，请电话联系住户")
    conversation = session.get(Conversation, case.conversation_id)
    if conversation is None:
        raise InvalidInput("该案件的会话已删除")
    if case.assignee_id is None and user.role is Role.agent:
        _give_to(session, settings, case, user, by=user)
        _event(session, case, CaseEventKind.claimed, f"{user.display_name} 接手", actor=user)
    message = send_to_resident(
        session=session,
        settings=settings,
        conversation=conversation,
        text=text,
        sender=Sender.agent,
        case_id=case.id,
    )
    now = utcnow()
    if case.first_response_at is None:
        case.first_response_at = now
    case.waiting_since = None
    conversation.state = ConversationState.human
    _event(
        session, case, CaseEventKind.replied, text.strip()[:500], actor=user, data={"message_id": message.id}
    )
    _changed(session, settings, case, "replied")
    return message


def add_note(*, session: Session, settings: Settings, user: StaffUser, case_id: int, text: str) -> CaseEvent:
    case = get_case(session=session, user=user, case_id=case_id)
    if not text.strip():
        raise InvalidInput("备注内容不能为空")
    event = _event(session, case, CaseEventKind.note, text.strip()[:2000], actor=user)
    session.flush()
    _changed(session, settings, case, "note")
    return event


def set_priority(
    *, session: Session, settings: Settings, user: StaffUser, case_id: int, priority: Priority, note: str = ""
) -> Case:
    """A new priority recomputes the due times (from when the case arrived) and resets the timers."""
    case = get_case(session=session, user=user, case_id=case_id)
    _active_or_conflict(case)
    _require_holder(user, case)
    if case.priority is priority:
        return case
    before = case.priority
    case.priority = priority
    _retime(session, settings, case)
    _event(
        session,
        case,
        CaseEventKind.priority,
        f"优先级 {before.value} → {priority.value}" + (f"：{note}" if note else ""),
        actor=user,
    )
    _changed(session, settings, case, "priority")
    return case


SURVEY_TEXT = (
    "【满意度回访】{what}（案件编号 {case_id}）已处理完毕。请您为本次服务打分：回复 1–5 的数字"
    "（5 分非常满意，1 分非常不满意），也可以在数字后写下您的意见。"
)
# What the survey names, so that a resident with two cases knows which one it asks about.
SURVEY_SUBJECT = {CaseCategory.emergency: "您报告的紧急情况", CaseCategory.complaint: "您的投诉"}


def resolve(*, session: Session, settings: Settings, user: StaffUser, case_id: int, note: str = "") -> Case:
    """Resolved: the timers stop, the assistant answers the conversation again, and the resident
    gets the satisfaction survey on their own channel."""
    case = get_case(session=session, user=user, case_id=case_id)
    _active_or_conflict(case)
    _require_holder(user, case)
    now = utcnow()
    if case.assignee_id is None:
        case.assignee_id = user.id
    case.status, case.resolved_at, case.waiting_since = CaseStatus.resolved, now, None
    if case.first_response_at is None:
        case.first_response_at = now
    _bump_timers(session, settings, case)  # no timers for a resolved case: the old ones stop
    _event(
        session,
        case,
        CaseEventKind.resolved,
        f"{user.display_name} 办结" + (f"：{note}" if note else ""),
        actor=user,
    )
    conversation = session.get(Conversation, case.conversation_id) if case.conversation_id else None
    if conversation is not None:
        others = session.scalar(
            select(func.count(Case.id)).where(
                Case.conversation_id == conversation.id, Case.id != case.id, Case.status.in_(ACTIVE_STATUSES)
            )
        )
        if not others:  # another case of the conversation (a complaint beside an emergency) still holds it
            conversation.state = ConversationState.assistant
        _send_survey(session, settings, case, conversation)
    _changed(session, settings, case, "resolved")
    return case


def _send_survey(
    session: Session, settings: Settings, case: Case, conversation: Conversation
) -> Survey | None:
    from channels.service import send_to_resident

    survey = Survey(
        case_id=case.id,
        conversation_id=conversation.id,
        company_id=case.company_id,
        community_id=case.community_id,
        agent_id=case.assignee_id,
        category=case.category,
        channel=conversation.channel.value,
        sent_at=utcnow(),
    )
    session.add(survey)
    session.flush()
    if conversation.channel is Channel.phone:
        _event(
            session,
            case,
            CaseEventKind.survey_sent,
            "电话渠道：请回电回访并在此录入评分",
            data={"survey_id": survey.id},
        )
        return survey
    send_to_resident(
        session=session,
        settings=settings,
        conversation=conversation,
        text=SURVEY_TEXT.format(case_id=case.id, what=SURVEY_SUBJECT.get(case.category, "您反映的问题")),
        sender=Sender.system,
        action="survey",
        case_id=case.id,
    )
    context = dict(conversation.context or {})
    context["awaiting_survey"] = survey.id
    conversation.context = context
    _event(session, case, CaseEventKind.survey_sent, "已向住户发送满意度回访", data={"survey_id": survey.id})
    return survey


def reopen(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser | None,
    case: Case,
    reason: str,
    for_supervisor: bool = False,
) -> Case:
    """Back to work: the resolution clock starts again. A low survey score sends it to the
    supervisors (``needs_supervisor``) instead of the agent who closed it."""
    if case.active:
        raise Conflict("案件仍在处理中")
    now = utcnow()
    sla = policy(session=session, company_id=case.company_id, category=case.category, priority=case.priority)
    case.reopen_count += 1
    case.resolved_at = case.closed_at = None
    case.resolve_due = now + sla.resolve
    case.resolve_breached_at = None
    case.waiting_since = now
    if for_supervisor or user is None:
        case.status, case.assignee_id, case.claimed_at = CaseStatus.open, None, None
        case.needs_supervisor = case.needs_supervisor or for_supervisor
    else:
        case.status, case.assignee_id, case.claimed_at = CaseStatus.in_progress, user.id, now
    conversation = session.get(Conversation, case.conversation_id) if case.conversation_id else None
    if conversation is not None:
        conversation.state = ConversationState.human
        context = dict(conversation.context or {})
        context.pop("awaiting_survey", None)
        conversation.context = context
    _bump_timers(session, settings, case)
    _event(session, case, CaseEventKind.reopened, reason, actor=user)
    _changed(session, settings, case, "reopened")
    return case


def reopen_by(*, session: Session, settings: Settings, user: StaffUser, case_id: int, reason: str) -> Case:
    case = get_case(session=session, user=user, case_id=case_id)
    if not reason.strip():
        raise InvalidInput("请写明重新打开的原因")
    return reopen(
        session=session,
        settings=settings,
        user=user,
        case=case,
        reason=f"{user.display_name} 重新打开：{reason.strip()}",
    )


SURVEY_ANSWER = re.compile(
    r"^\s*([1-5１-５一二三四五])\s*(?:分|星|(?=$|[\s,，。.:：、!！]))[\s,，。.:：、!！]*(.*)$", re.S
)
FULLWIDTH = {"１": 1, "２": 2, "３": 3, "４": 4, "５": 5, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5}


def parse_survey_answer(text: str) -> tuple[int, str] | None:
    """'5', '4分 师傅很准时', '１', '二分，太慢了' → (score, comment); anything else → None."""
    match = SURVEY_ANSWER.match(text or "")
    if match is None:
        return None
    digit = match.group(1)
    score = FULLWIDTH.get(digit) or int(digit)
    return score, match.group(2).strip()[:1000]


@dataclass
class SurveyReply:
    reply: str
    reopened: bool
    case_id: int


def answer_survey(
    *, session: Session, settings: Settings, conversation: Conversation, text: str
) -> SurveyReply | None:
    """The messages around a survey. Right after it, a score (with a comment) is stored and a low
    one reopens the case for a supervisor; a low score without a comment asks for one, and the
    next message is kept as the survey's comment; a score sent again once the survey is answered
    (a second tap) is thanked, not routed. Anything else is an ordinary message (None), and the
    survey is no longer awaited, so a later "5" meant as a building number is not taken for a score."""
    context = dict(conversation.context or {})
    awaiting = context.pop("awaiting_survey", None)
    commenting = context.pop("survey_comment", None)
    answered = context.pop("survey_answered", None)
    conversation.context = context
    parsed = parse_survey_answer(text)
    if awaiting is not None and parsed is not None:
        survey = session.get(Survey, awaiting)
        if survey is not None and survey.answered_at is None:
            score, comment = parsed
            reply = record_survey(
                session=session, settings=settings, survey=survey, score=score, comment=comment
            )
            low = score <= settings.survey_low_score
            context = dict(conversation.context or {})
            if low and not comment:
                context["survey_comment"] = survey.id
                reply += "您也可以直接写下哪里不满意，我们会一并转给主管。"
            else:
                context["survey_answered"] = survey.id
            conversation.context = context
            return SurveyReply(reply, low, survey.case_id)
    if commenting is not None and parsed is None and text.strip():
        survey = session.get(Survey, commenting)
        if survey is not None and survey.answered_at is not None and not survey.comment:
            survey.comment = text.strip()[:1000]
            case = session.get(Case, survey.case_id)
            assert case is not None
            if case.active:
                case.waiting_since = case.waiting_since or utcnow()
            _event(session, case, CaseEventKind.survey_answered, f"回访意见：{survey.comment}",
                   data={"score": survey.score, "comment": True})  # fmt: skip
            _changed(session, settings, case, "survey")
            conversation.context = {**context, "survey_answered": survey.id}  # a second tap is thanked
            return SurveyReply("已记下您的意见，主管会一并跟进并联系您。", True, survey.case_id)
    earlier = answered or commenting
    if earlier is not None and parsed is not None:
        survey = session.get(Survey, earlier)
        if survey is not None and survey.answered_at is not None:
            return SurveyReply(
                f"您已经为这次服务评过分了（{survey.score} 分），感谢您的评价！", False, survey.case_id
            )
    return None


def record_survey(
    *,
    session: Session,
    settings: Settings,
    survey: Survey,
    score: int,
    comment: str = "",
    actor: StaffUser | None = None,
) -> str:
    if not 1 <= score <= 5:
        raise InvalidInput("评分应为 1–5")
    if survey.answered_at is not None:
        raise Conflict("该回访已有评分")
    survey.score, survey.comment, survey.answered_at = score, comment or None, utcnow()
    case = session.get(Case, survey.case_id)
    assert case is not None
    _event(
        session,
        case,
        CaseEventKind.survey_answered,
        f"回访评分 {score} 分" + (f"：{comment}" if comment else ""),
        actor=actor,
        data={"score": score},
    )
    if score <= settings.survey_low_score:
        if case.active:
            case.needs_supervisor = True
        else:
            reopen(
                session=session,
                settings=settings,
                user=None,
                case=case,
                for_supervisor=True,
                reason=f"回访评分 {score} 分，已重新打开交主管跟进",
            )
        _changed(session, settings, case, "survey")
        return f"非常抱歉这次没让您满意。已重新打开案件（编号 {case.id}），主管会亲自跟进并联系您。"
    if case.status is CaseStatus.resolved:
        case.status, case.closed_at = CaseStatus.closed, utcnow()
        _event(session, case, CaseEventKind.closed, "回访完成，案件关闭")
    _changed(session, settings, case, "survey")
    return "感谢您的评价！如果还有其他问题，随时在这里告诉我。"


@dataclass(frozen=True)
class ChatMark:
    """What a resident's chat page shows beside a message that names a case: is the case still
    open (the emergency banner stays while it is), an emergency's kind, and for a survey message
    whether it was answered (its buttons are gone) and with what score."""

    case_active: bool
    emergency_kind: str | None = None
    survey_score: int | None = None
    survey_answered: bool = False


def chat_marks(
    *, session: Session, conversation_id: int, messages: list[tuple[int, int, datetime, bool]]
) -> dict[int, ChatMark]:
    """Marks for the messages (id, case id, sent at, is a survey) of one conversation, by message id."""
    case_ids = {case_id for _, case_id, _, _ in messages}
    if not case_ids:
        return {}
    cases = {
        c.id: c
        for c in session.scalars(
            select(Case).where(Case.id.in_(case_ids), Case.conversation_id == conversation_id)
        )
    }
    surveys = list(
        session.scalars(
            select(Survey).where(Survey.conversation_id == conversation_id, Survey.case_id.in_(case_ids))
            .order_by(Survey.id)
        )
    )  # fmt: skip
    marks = {}
    for message_id, case_id, sent_at, is_survey in messages:
        case = cases.get(case_id)
        if case is None:
            continue
        score, answered = None, False
        if is_survey:  # the survey this message carried: the case's last one sent before it
            sent = [s for s in surveys if s.case_id == case_id and s.sent_at <= sent_at]
            if sent:
                score, answered = sent[-1].score, sent[-1].answered_at is not None
        marks[message_id] = ChatMark(case.active, case.emergency_kind, score, answered)
    return marks


def close_unanswered(*, session: Session, settings: Settings, now: datetime | None = None) -> list[int]:
    """Periodic: resolved cases whose survey got no answer within the window are closed."""
    now = now or utcnow()
    stale = session.scalars(
        select(Case)
        .where(
            Case.status == CaseStatus.resolved,
            Case.resolved_at < now - timedelta(hours=settings.survey_close_after_hours),
        )
        .limit(500)
    ).all()
    for case in stale:
        case.status, case.closed_at = CaseStatus.closed, now
        _event(session, case, CaseEventKind.closed, "回访未获回复，案件自动关闭")
        _changed(session, settings, case, "closed")
    return [c.id for c in stale]


def timeline(*, session: Session, case: Case) -> list[CaseEvent]:
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)))


def conversation_messages(*, session: Session, case: Case, limit: int = 500) -> list[Message]:
    if case.conversation_id is None:
        return []
    rows = session.scalars(
        select(Message)
        .where(Message.conversation_id == case.conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def past_cases(*, session: Session, case: Case, limit: int = 20) -> list[Case]:
    """The same person's other cases (every directory entry of theirs in the company)."""
    if case.resident_id is None:
        return []
    from channels.service import same_person

    people = same_person(session, case.resident_id)
    return list(
        session.scalars(
            select(Case)
            .where(Case.resident_id.in_(people), Case.id != case.id, Case.company_id == case.company_id)
            .order_by(Case.created_at.desc())
            .limit(limit)
        )
    )


# --- reports -----------------------------------------------------------------------------------


@dataclass
class SlaRow:
    key: str
    cases: int = 0
    responded: int = 0
    responded_in_time: int = 0
    resolved: int = 0
    resolved_in_time: int = 0
    breaches: int = 0
    open_overdue: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "cases": self.cases,
            "responded": self.responded,
            "response_rate": _rate(self.responded_in_time, self.responded),
            "resolved": self.resolved,
            "resolve_rate": _rate(self.resolved_in_time, self.resolved),
            "breaches": self.breaches,
            "open_overdue": self.open_overdue,
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _group_key(session: Session, case_or_survey: Any, by: str, names: dict[tuple[str, int], str]) -> str:
    if by == "category":
        return str(case_or_survey.category.value)
    if by == "community":
        ident = case_or_survey.community_id
        if ("c", ident) not in names:
            from org.models import Community

            place = session.get(Community, ident)
            names[("c", ident)] = place.name if place else str(ident)
        return names[("c", ident)]
    ident = case_or_survey.assignee_id if isinstance(case_or_survey, Case) else case_or_survey.agent_id
    if ident is None:
        return "未分配"
    if ("a", ident) not in names:
        agent = session.get(StaffUser, ident)
        names[("a", ident)] = agent.display_name if agent else str(ident)
    return names[("a", ident)]


def _report_scope(*, session: Session, user: StaffUser, by: str, community_id: int | None) -> set[int]:
    """The communities a report covers (a supervisor's, or the one asked for)."""
    if by not in ("community", "agent", "category"):
        raise InvalidInput("by 应为 community、agent 或 category")
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管可以查看报表")
    if community_id is None:
        return accessible_community_ids(session=session, user=user)
    return {require_community(session=session, user=user, community_id=community_id).id}


def sla_report(
    *,
    session: Session,
    user: StaffUser,
    by: str,
    since: datetime,
    until: datetime,
    community_id: int | None = None,
) -> list[dict[str, Any]]:
    """SLA compliance of the cases created in [since, until), per community, agent or category."""
    ids = _report_scope(session=session, user=user, by=by, community_id=community_id)
    cases = session.scalars(
        select(Case).where(
            Case.company_id == user.company_id,
            Case.community_id.in_(ids),
            Case.created_at >= since,
            Case.created_at < until,
        )
    ).all()
    now, names, rows = utcnow(), {}, {}  # type: ignore[var-annotated]
    for case in cases:
        key = _group_key(session, case, by, names)
        row = rows.setdefault(key, SlaRow(key))
        row.cases += 1
        if case.first_response_at is not None:
            row.responded += 1
            row.responded_in_time += case.first_response_at <= case.first_response_due
        if case.resolved_at is not None:
            row.resolved += 1
            row.resolved_in_time += case.resolved_at <= case.resolve_due
        row.breaches += (case.response_breached_at is not None) + (case.resolve_breached_at is not None)
        row.open_overdue += case.active and case.next_due < now
    return [r.as_dict() for r in sorted(rows.values(), key=lambda r: -r.cases)]


def csat_report(
    *,
    session: Session,
    user: StaffUser,
    by: str,
    since: datetime,
    until: datetime,
    community_id: int | None = None,
) -> list[dict[str, Any]]:
    """Satisfaction (回访) of surveys sent in [since, until): answered, average, share 4–5."""
    ids = _report_scope(session=session, user=user, by=by, community_id=community_id)
    surveys = session.scalars(
        select(Survey).where(
            Survey.company_id == user.company_id,
            Survey.community_id.in_(ids),
            Survey.sent_at >= since,
            Survey.sent_at < until,
        )
    ).all()
    names: dict[tuple[str, int], str] = {}
    groups: dict[str, list[Survey]] = {}
    for survey in surveys:
        groups.setdefault(_group_key(session, survey, by, names), []).append(survey)
    out = []
    for key, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        scores = [s.score for s in items if s.score is not None]
        out.append(
            {
                "key": key,
                "sent": len(items),
                "answered": len(scores),
                "average": round(sum(scores) / len(scores), 2) if scores else None,
                "satisfied_rate": _rate(sum(1 for s in scores if s >= 4), len(scores)),
                "low": sum(1 for s in scores if s <= 2),
            }
        )
    return out


def workload(*, session: Session, settings: Settings, user: StaffUser) -> list[dict[str, Any]]:
    """Per agent: cases held, of them overdue, and the oldest waiting resident."""
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管可以查看工作量")
    ids = accessible_community_ids(session=session, user=user)
    agents = session.scalars(
        select(StaffUser).where(
            StaffUser.company_id == user.company_id,
            StaffUser.is_active.is_(True),
            StaffUser.role.in_([Role.agent, Role.supervisor]),
        )
    ).all()
    held = session.scalars(
        select(Case).where(
            Case.company_id == user.company_id,
            Case.community_id.in_(ids),
            Case.status == CaseStatus.in_progress,
        )
    ).all()
    now = utcnow()
    out = []
    for agent in agents:
        mine = [c for c in held if c.assignee_id == agent.id]
        waiting = [c.waiting_since for c in mine if c.waiting_since]
        out.append(
            {
                "agent_id": agent.id,
                "name": agent.display_name,
                "role": agent.role.value,
                "holding": len(mine),
                "overdue": sum(1 for c in mine if c.next_due < now),
                "oldest_wait_seconds": int((now - min(waiting)).total_seconds()) if waiting else None,
                "cap": settings.agent_max_open_cases,
            }
        )
    return out


# --- work orders -------------------------------------------------------------------------------


def create_work_order(
    *,
    session: Session,
    company_id: int,
    community_id: int,
    category: WorkOrderCategory,
    description: str,
    building: str | None = None,
    unit: str | None = None,
    room: str | None = None,
    conversation_id: int | None = None,
    case_id: int | None = None,
    resident_id: int | None = None,
    actor: StaffUser | None = None,
    now: datetime | None = None,
) -> WorkOrder:
    """A work order waiting for dispatch (待派单), due by the repair SLA, held by the department
    of its category. On a case it is a step of the case's timeline: who registered it (an agent,
    or the assistant from the resident's message)."""
    now = now or utcnow()
    order = WorkOrder(
        company_id=company_id,
        community_id=community_id,
        conversation_id=conversation_id,
        case_id=case_id,
        resident_id=resident_id,
        category=category,
        description=description[:2000],
        building=building,
        unit=unit,
        room=room,
        response_due=now + REPAIR.first_response,
        resolve_due=now + REPAIR.resolve,
        created_at=now,
        updated_at=now,
        department=category.value,
    )
    session.add(order)
    session.flush()
    case = session.get(Case, case_id) if case_id is not None else None
    if case is not None:
        who = f"{actor.display_name} 派发" if actor else "按住户所述自动登记"
        _event(
            session,
            case,
            CaseEventKind.work_order,
            f"{who}{category.value}工单 {order.id}",
            actor=actor,
            data={"work_order_id": order.id},
        )
    log.info("work order %s registered: %s in community %s", order.id, category.value, community_id)
    return order


def work_order_for_case(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    case_id: int,
    category: WorkOrderCategory,
    description: str,
    building: str | None = None,
    unit: str | None = None,
    room: str | None = None,
) -> WorkOrder:
    """An agent turns what the resident asked into a work order for a department, linked to the
    case and its conversation (the resident is told when it is done)."""
    case = get_case(session=session, user=user, case_id=case_id)
    if not description.strip():
        raise InvalidInput("请填写工单内容")
    order = create_work_order(
        session=session,
        company_id=case.company_id,
        community_id=case.community_id,
        category=category,
        description=description.strip(),
        building=building,
        unit=unit,
        room=room,
        conversation_id=case.conversation_id,
        case_id=case.id,
        resident_id=case.resident_id,
        actor=user,
    )
    _changed(session, settings, case, "work_order")
    return order


def set_work_order_location(
    *, session: Session, order: WorkOrder, building: str | None, unit: str | None, room: str | None
) -> WorkOrder:
    """Fill in the parts of the location the resident gave later (never erases what is known)."""
    order.building = building or order.building
    order.unit = unit or order.unit
    order.room = room or order.room
    session.flush()
    return order


def request_callback(
    *,
    session: Session,
    company_id: int,
    community_id: int,
    conversation_id: int,
    phone: str,
    reason: str,
    due_at: datetime,
    resident_id: int | None = None,
    case_id: int | None = None,
    work_order_id: int | None = None,
) -> CallbackTask:
    """The call-back of one call (a second request for the same call returns the first)."""
    existing = session.scalar(select(CallbackTask).where(CallbackTask.conversation_id == conversation_id))
    if existing is not None:
        return existing
    task = CallbackTask(
        company_id=company_id,
        community_id=community_id,
        conversation_id=conversation_id,
        resident_id=resident_id,
        case_id=case_id,
        work_order_id=work_order_id,
        phone=phone[:32],
        reason=reason[:200],
        due_at=due_at,
    )
    session.add(task)
    session.flush()
    log.info("call-back %s due %s in community %s: %s", task.id, due_at.isoformat(), community_id, reason)
    return task


# --- work orders: 发起-分配-执行-核验-完成 ------------------------------------------------------

# Where each status may go next (待核验 → 处理中: the check failed, the work goes back).
FLOW = {
    WorkOrderStatus.pending: {WorkOrderStatus.dispatched},
    WorkOrderStatus.dispatched: {WorkOrderStatus.in_progress, WorkOrderStatus.pending},
    WorkOrderStatus.in_progress: {WorkOrderStatus.verifying},
    WorkOrderStatus.verifying: {WorkOrderStatus.done, WorkOrderStatus.in_progress},
    WorkOrderStatus.done: set(),
}
DEPARTMENTS = tuple(c.value for c in WorkOrderCategory)
PHOTO_TYPES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"RIFF": ".webp"}
MAX_PHOTO_BYTES = 5 * 1024 * 1024


def list_work_orders(
    *,
    session: Session,
    user: StaffUser,
    community_id: int | None = None,
    status: WorkOrderStatus | None = None,
    limit: int = 200,
) -> list[WorkOrder]:
    require_staff(user, "工单")
    ids = accessible_community_ids(session=session, user=user)
    if community_id is not None:
        ids = {require_community(session=session, user=user, community_id=community_id).id}
    stmt = select(WorkOrder).where(WorkOrder.company_id == user.company_id, WorkOrder.community_id.in_(ids))
    if status is not None:
        stmt = stmt.where(WorkOrder.status == status)
    else:
        stmt = stmt.where(WorkOrder.status != WorkOrderStatus.done)
    return list(session.scalars(stmt.order_by(WorkOrder.resolve_due, WorkOrder.id).limit(limit)))


def get_work_order(*, session: Session, user: StaffUser, order_id: int) -> WorkOrder:
    require_staff(user, "工单")
    order = session.get(WorkOrder, order_id)
    if order is None or order.company_id != user.company_id:
        raise NotFound("工单不存在")
    require_community(session=session, user=user, community_id=order.community_id)
    return order


def work_order_events(*, session: Session, order: WorkOrder) -> list[WorkOrderEvent]:
    stmt = select(WorkOrderEvent).where(WorkOrderEvent.work_order_id == order.id).order_by(WorkOrderEvent.id)
    return list(session.scalars(stmt))


def move_work_order(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    order_id: int,
    to: WorkOrderStatus,
    note: str = "",
    assignee_id: int | None = None,
    assignee_name: str | None = None,
) -> WorkOrder:
    """One step of the flow. Dispatching needs someone to do it (an account or a technician's
    name); finishing tells the resident on their channel."""
    order = get_work_order(session=session, user=user, order_id=order_id)
    person = get_visible(session, StaffUser, assignee_id, label="处理人") if assignee_id is not None else None
    if to not in FLOW[order.status]:
        raise Conflict(f"工单状态为「{order.status.value}」，不能直接改为「{to.value}」")
    if to is WorkOrderStatus.dispatched:
        if person is not None:
            order.assignee_id, order.assignee_name = person.id, person.display_name
        elif assignee_name and assignee_name.strip():
            order.assignee_id, order.assignee_name = None, assignee_name.strip()[:64]
        else:
            raise InvalidInput("派单时请指定处理人")
    if to is WorkOrderStatus.in_progress and order.status is WorkOrderStatus.verifying and not note.strip():
        raise InvalidInput("核验未通过时请写明原因")
    before = order.status
    order.status, order.updated_at = to, utcnow()
    if to is WorkOrderStatus.done:
        order.done_at = order.updated_at
    who = f"（{order.assignee_name}）" if to is WorkOrderStatus.dispatched else ""
    session.add(
        WorkOrderEvent(
            work_order_id=order.id,
            actor_id=user.id,
            from_status=before.value,
            to_status=to.value,
            text=f"{user.display_name}：{before.value} → {to.value}{who}"
            + (f"，{note.strip()}" if note.strip() else ""),
            photos=[],
        )
    )
    if to is WorkOrderStatus.done and order.conversation_id is not None:
        _tell_resident_done(session, settings, order)
    session.flush()
    return order


def _tell_resident_done(session: Session, settings: Settings, order: WorkOrder) -> None:
    from channels.service import send_to_resident

    conversation = session.get(Conversation, order.conversation_id)
    if conversation is None or conversation.channel is Channel.phone:
        return  # a caller hears it on the call-back
    send_to_resident(
        session=session,
        settings=settings,
        conversation=conversation,
        sender=Sender.system,
        text=f"您的报修（工单 {order.id}）已处理完成。如仍有问题，直接在这里回复我们。",
        action="work_order",
    )


def hand_off_work_order(
    *, session: Session, user: StaffUser, order_id: int, department: str, note: str
) -> WorkOrder:
    """Across departments, e.g. 工程 has repaired it → 客服 calls the resident back (回访)."""
    order = get_work_order(session=session, user=user, order_id=order_id)
    if department not in DEPARTMENTS:
        raise InvalidInput(f"部门应为 {'、'.join(DEPARTMENTS)} 之一")
    if not note.strip():
        raise InvalidInput("转部门时请写明交接内容")
    before = order.department or order.category.value
    order.department, order.updated_at = department, utcnow()
    order.assignee_id = order.assignee_name = None
    session.add(
        WorkOrderEvent(
            work_order_id=order.id,
            actor_id=user.id,
            text=f"{user.display_name}：{before} → {department}，{note.strip()}",
            photos=[],
        )
    )
    session.flush()
    return order


def add_work_order_photo(
    *, session: Session, settings: Settings, user: StaffUser, order_id: int, content: bytes, note: str = ""
) -> WorkOrderEvent:
    """A photo of the work (before, after): JPEG, PNG or WebP up to 5 MB, stored under data_dir."""
    import uuid

    order = get_work_order(session=session, user=user, order_id=order_id)
    if not content:
        raise InvalidInput("照片为空")
    if len(content) > MAX_PHOTO_BYTES:
        raise PayloadTooLarge("照片不能超过 5 MB")
    suffix = next((ext for magic, ext in PHOTO_TYPES.items() if content.startswith(magic)), None)
    if suffix is None or (suffix == ".webp" and content[8:12] != b"WEBP"):
        raise InvalidInput("只支持 JPEG、PNG 或 WebP 照片")
    folder = settings.data_dir / "uploads" / "work_orders" / str(order.id)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}{suffix}"
    (folder / name).write_bytes(content)
    event = WorkOrderEvent(
        work_order_id=order.id,
        actor_id=user.id,
        photos=[name],
        text=f"{user.display_name} 上传照片" + (f"：{note.strip()}" if note.strip() else ""),
    )
    session.add(event)
    order.updated_at = utcnow()
    session.flush()
    return event


def work_order_photo(
    *, session: Session, settings: Settings, user: StaffUser, order_id: int, name: str
) -> Path:
    order = get_work_order(session=session, user=user, order_id=order_id)
    if not re.fullmatch(r"[0-9a-f]{32}\.(jpg|png|webp)", name):
        raise NotFound("照片不存在")
    path = settings.data_dir / "uploads" / "work_orders" / str(order.id) / name
    if not path.is_file():
        raise NotFound("照片不存在")
    return path


# --- call-backs --------------------------------------------------------------------------------


def list_callbacks(
    *, session: Session, user: StaffUser, community_id: int | None = None, pending_only: bool = True
) -> list[CallbackTask]:
    require_staff(user, "工单")
    ids = accessible_community_ids(session=session, user=user)
    if community_id is not None:
        ids = {require_community(session=session, user=user, community_id=community_id).id}
    stmt = select(CallbackTask).where(
        CallbackTask.company_id == user.company_id, CallbackTask.community_id.in_(ids)
    )
    if pending_only:
        stmt = stmt.where(CallbackTask.status == CallbackStatus.pending)
    return list(session.scalars(stmt.order_by(CallbackTask.due_at).limit(200)))


def finish_callback(
    *, session: Session, user: StaffUser, task_id: int, status: CallbackStatus, note: str = ""
) -> CallbackTask:
    require_staff(user, "工单")
    task = session.get(CallbackTask, task_id)
    if task is None or task.company_id != user.company_id:
        raise NotFound("回电任务不存在")
    require_community(session=session, user=user, community_id=task.community_id)
    if status is CallbackStatus.pending:
        raise InvalidInput("请选择已回电或未接通")
    task.status, task.done_at = status, utcnow()
    if task.case_id is not None:
        case = session.get(Case, task.case_id)
        if case is not None:
            _event(
                session,
                case,
                CaseEventKind.note,
                f"{user.display_name} 回电：{status.value}" + (f"，{note.strip()}" if note.strip() else ""),
                actor=user,
            )
            if status is CallbackStatus.done and case.first_response_at is None:
                case.first_response_at = task.done_at
    session.flush()
    return task


# --- configuration -----------------------------------------------------------------------------


def _manager(user: StaffUser) -> None:
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管或管理员可以修改")


def sla_policies(*, session: Session, user: StaffUser) -> dict[CaseCategory, Sla]:
    """Every category's times as they apply to this company (its own, or the default)."""
    return {
        c: policy(session=session, company_id=user.company_id, category=c, priority=case_priority(c))
        for c in CaseCategory
    }


def set_sla_policy(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    category: CaseCategory,
    first_response: timedelta,
    resolve: timedelta,
    remind_before: timedelta,
) -> SlaPolicy:
    _manager(user)
    if not timedelta(0) < first_response <= resolve:
        raise InvalidInput("首次响应时限应大于 0 且不长于办结时限")
    if not timedelta(0) <= remind_before < first_response:
        raise InvalidInput("提前提醒应短于首次响应时限")
    row = session.scalar(
        select(SlaPolicy).where(SlaPolicy.company_id == user.company_id, SlaPolicy.category == category)
    )
    if row is None:
        row = SlaPolicy(company_id=user.company_id, category=category)
        session.add(row)
    row.first_response_seconds = int(first_response.total_seconds())
    row.resolve_seconds = int(resolve.total_seconds())
    row.remind_before_seconds = int(remind_before.total_seconds())
    session.flush()
    return row


ROBOT_FIELDS = ("robot_kind", "robot_url", "robot_secret")


def set_duty_chain(
    *,
    session: Session,
    user: StaffUser,
    community_id: int,
    steps: list[dict[str, Any]],
    policy: OutboundPolicy,
) -> list[DutyContact]:
    """Replace a community's emergency chain (step 0 is paged first).

    A group robot's URL makes the server post to it, so only an admin sets one (checked against
    the outbound policy now, and again at every page). A supervisor edits the people, phones and
    minutes: a step without ``robot_url`` keeps the robot stored at its level; ``""`` removes it.
    """
    _manager(user)
    require_community(session=session, user=user, community_id=community_id)
    old = duty_chain(session=session, community_id=community_id)
    stored = {c.level: {f: getattr(c, f) for f in ROBOT_FIELDS} for c in old}
    rows = []
    for level, step in enumerate(steps):
        step = dict(step)
        if any(step.get(f) is not None for f in ROBOT_FIELDS):
            if user.role is not Role.admin:
                raise Forbidden(
                    "只有管理员可以设置值班链的群机器人（robot_url）；主管可修改值班人员、手机号和确认时限"
                )
            if step.get("robot_url") is None:
                raise InvalidInput(f"第 {level + 1} 级：修改群机器人时请同时填写群机器人地址（robot_url）")
        if step.get("robot_url") is None:
            step.update(stored.get(level) or dict.fromkeys(ROBOT_FIELDS))
        elif not step["robot_url"].strip():
            step.update(dict.fromkeys(ROBOT_FIELDS))
        else:
            if not step.get("robot_kind"):
                raise InvalidInput(f"第 {level + 1} 级：请选择群机器人类型（robot_kind）")
            step["robot_url"] = check_url(
                step["robot_url"], policy=policy, field=f"第 {level + 1} 级群机器人地址（robot_url）"
            )
        if not (step.get("phone") or step.get("robot_url")):
            raise InvalidInput(f"第 {level + 1} 级：请填写手机号或群机器人地址")
        rows.append(DutyContact(community_id=community_id, level=level, **step))
    for contact in old:
        session.delete(contact)
    session.flush()
    session.add_all(rows)
    session.flush()
    return rows


def canned_replies(
    *, session: Session, user: StaffUser, community_id: int | None = None
) -> list[CannedReply]:
    stmt = select(CannedReply).where(CannedReply.company_id == user.company_id)
    if community_id is not None:
        require_community(session=session, user=user, community_id=community_id)
        stmt = stmt.where((CannedReply.community_id.is_(None)) | (CannedReply.community_id == community_id))
    return list(session.scalars(stmt.order_by(CannedReply.community_id.is_(None), CannedReply.id)))


def add_canned_reply(
    *, session: Session, user: StaffUser, title: str, text: str, community_id: int | None = None
) -> CannedReply:
    _manager(user)
    if community_id is not None:
        require_community(session=session, user=user, community_id=community_id)
    if not title.strip() or not text.strip():
        raise InvalidInput("标题和内容都不能为空")
    row = CannedReply(
        company_id=user.company_id, community_id=community_id, title=title.strip()[:64], text=text.strip()
    )
    session.add(row)
    session.flush()
    return row
