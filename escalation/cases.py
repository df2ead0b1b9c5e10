"""Opening and reopening a case, and what the console reads of one.

Opening: the assistant, the channels and agents write through here; a message joins its
conversation's open case (a question that becomes a complaint raises it), an emergency gets its
own case and is paged. Reopening: by an agent, or by a low survey score (``escalation.surveys``).
Reading: a case's timeline, its conversation, the same person's past cases.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import StaffUser
from accounts.service import require_community
from conversations import service as conversations
from conversations.models import Conversation, Message
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.settings import Settings
from core.tenancy import get_visible
from escalation.common import add_event, case_changed, get_case, list_summary, require_staff
from escalation.models import (
    ACTIVE_STATUSES,
    Case,
    CaseCategory,
    CaseEvent,
    CaseEventKind,
    CaseStatus,
    Priority,
)
from escalation.paging import start_paging
from escalation.queue import DEFAULT_SKILL, SKILL_OF
from escalation.sla import case_priority, policy
from escalation.timers import bump_timers, business_hours, retime, schedule_timers
from org.models import Resident

log = logging.getLogger(__name__)


SEVERITY = {
    CaseCategory.suggestion: 0,
    CaseCategory.inquiry: 1,
    CaseCategory.repair: 2,
    CaseCategory.complaint: 3,
    CaseCategory.emergency: 4,
}
PRIORITY_ORDER = {Priority.urgent: 0, Priority.important: 1, Priority.normal: 2}


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
    start = now if priority is Priority.urgent else business_hours(settings).clock_start(now)
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
        add_event(session, linked, CaseEventKind.note, told)
        case_changed(session, settings, linked, "message")
    flag = f"，安全隐患（{hazard}）" if hazard else ""
    add_event(
        session,
        case,
        CaseEventKind.created,
        f"{category.value}（{priority.value}{flag}）：{reason}",
        actor=actor,
    )
    schedule_timers(session, settings, case)
    case_changed(session, settings, case, "created")
    if category is CaseCategory.emergency:
        start_paging(session, settings, case)
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
        retime(session, settings, existing, dispute=dispute, keep_earlier=True)
        raised_to = f"升级为{category.value}（{existing.priority.value}）"
        add_event(session, existing, CaseEventKind.priority, raised_to)
    flagged = bool(hazard and not existing.hazard)
    if flagged:
        existing.hazard = (hazard or "")[:16]
        raised_by_hazard = existing.priority is not Priority.urgent
        existing.priority = Priority.urgent
        add_event(session, existing, CaseEventKind.priority,
                  f"安全隐患（{hazard}）" + ("：升为紧急" if raised_by_hazard else ""))  # fmt: skip
        if raised_by_hazard:
            retime(session, settings, existing, dispute=dispute, keep_earlier=True)
    existing.summary = f"{existing.summary}\n{summary}"[-4000:]  # the newest lines matter most
    if waiting:  # a question; a "谢谢" does not leave anyone waiting
        existing.waiting_since = existing.waiting_since or now
    add_event(session, existing, CaseEventKind.message, summary[-500:])
    session.flush()
    case_changed(session, settings, existing, "priority" if flagged else "message",
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


# --- reopening ---------------------------------------------------------------------------------


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
        conversations.hand_over(conversation)
        conversations.remember(conversation, awaiting_survey=None)
    bump_timers(session, settings, case)
    add_event(session, case, CaseEventKind.reopened, reason, actor=user)
    case_changed(session, settings, case, "reopened")
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


# --- reading a case ----------------------------------------------------------------------------


def timeline(*, session: Session, case: Case) -> list[CaseEvent]:
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)))


def conversation_messages(*, session: Session, case: Case, limit: int = 500) -> list[Message]:
    if case.conversation_id is None:
        return []
    return conversations.recent(session, conversation_id=case.conversation_id, limit=limit)


def past_cases(*, session: Session, case: Case, limit: int = 20) -> list[Case]:
    """The same person's other cases (every directory entry of theirs in the company)."""
    if case.resident_id is None:
        return []
    people = conversations.same_person(session, case.resident_id)
    return list(
        session.scalars(
            select(Case)
            .where(Case.resident_id.in_(people), Case.id != case.id, Case.company_id == case.company_id)
            .order_by(Case.created_at.desc())
            .limit(limit)
        )
    )
