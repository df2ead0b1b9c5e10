"""SLA timers: a case's due times (from its category, priority and the business hours), the rq
jobs that remind and breach at those times, a breach passed on to the supervisors, and the
periodic sweep for breaches whose timer job was lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.events import after_commit
from core.settings import Settings
from escalation.common import add_event, case_changed
from escalation.models import ACTIVE_STATUSES, Case, CaseEventKind, Priority
from escalation.sla import BEIJING, BusinessHours, policy

log = logging.getLogger(__name__)


TIMER_KINDS = ("response_reminder", "response_breach", "resolve_reminder", "resolve_breach")


def business_hours(settings: Settings) -> BusinessHours:
    """When a non-urgent case's clock runs (``settings.business_hours``)."""
    return BusinessHours.parse(settings.business_hours)


def retime(
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
        case.created_at
        if case.priority is Priority.urgent
        else business_hours(settings).clock_start(case.created_at)
    )
    first, resolve = start + sla.first_response, start + sla.resolve
    if keep_earlier:
        first, resolve = min(first, case.first_response_due), min(resolve, case.resolve_due)
    case.first_response_due, case.resolve_due = first, resolve
    bump_timers(session, settings, case)


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


def schedule_timers(session: Session, settings: Settings, case: Case) -> None:
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

        now = utcnow()
        for kind, at in planned:
            try:
                enqueue(
                    "escalation.tasks.check_sla",
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


def bump_timers(session: Session, settings: Settings, case: Case) -> None:
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
    schedule_timers(session, settings, case)


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
        add_event(
            session,
            case,
            CaseEventKind.reminder,
            f"{what}将于 {local} 超时，请尽快处理",
            data={"kind": kind, "due": due.isoformat()},
        )
        case_changed(session, settings, case, "reminder")
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
    add_event(session, case, CaseEventKind.breach, f"{what}已超时，已通知主管", data={"kind": kind})
    case_changed(session, settings, case, "breach")
    case_id = case.id

    def notify() -> None:
        from core.queue import enqueue

        enqueue(
            "escalation.tasks.notify_supervisors",
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
