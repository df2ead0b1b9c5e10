"""Working a held case: the agent's reply on the resident's own channel, internal notes, a new
priority (new due times), and resolving it (the timers stop, the survey goes out). Reopening is
in ``escalation.cases``: a low survey score reopens a case too.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import Role, StaffUser
from conversations import service as conversations
from conversations.models import Conversation, Message, Sender
from core.db import utcnow
from core.errors import InvalidInput
from core.settings import Settings
from escalation.common import add_event, case_changed, get_case, require_active, require_holder
from escalation.models import ACTIVE_STATUSES, Case, CaseEvent, CaseEventKind, CaseStatus, Priority
from escalation.queue import give_to
from escalation.surveys import send_survey
from escalation.timers import bump_timers, retime


def reply(*, session: Session, settings: Settings, user: StaffUser, case_id: int, text: str) -> Message:
    """The agent's reply, delivered on the resident's own channel. Replying to a case nobody
    holds takes it."""
    case = get_case(session=session, user=user, case_id=case_id)
    require_active(case)
    require_holder(user, case)
    if case.conversation_id is None:
        raise InvalidInput("该案件没有关联的会话，请电话联系住户")
    conversation = session.get(Conversation, case.conversation_id)
    if conversation is None:
        raise InvalidInput("该案件的会话已删除")
    if case.assignee_id is None and user.role is Role.agent:
        give_to(session, settings, case, user, by=user)
        add_event(session, case, CaseEventKind.claimed, f"{user.display_name} 接手", actor=user)
    message = conversations.post_message(
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
    conversations.hand_over(conversation)
    add_event(
        session, case, CaseEventKind.replied, text.strip()[:500], actor=user, data={"message_id": message.id}
    )
    case_changed(session, settings, case, "replied")
    return message


def add_note(*, session: Session, settings: Settings, user: StaffUser, case_id: int, text: str) -> CaseEvent:
    case = get_case(session=session, user=user, case_id=case_id)
    if not text.strip():
        raise InvalidInput("备注内容不能为空")
    event = add_event(session, case, CaseEventKind.note, text.strip()[:2000], actor=user)
    session.flush()
    case_changed(session, settings, case, "note")
    return event


def set_priority(
    *, session: Session, settings: Settings, user: StaffUser, case_id: int, priority: Priority, note: str = ""
) -> Case:
    """A new priority recomputes the due times (from when the case arrived) and resets the timers."""
    case = get_case(session=session, user=user, case_id=case_id)
    require_active(case)
    require_holder(user, case)
    if case.priority is priority:
        return case
    before = case.priority
    case.priority = priority
    retime(session, settings, case)
    add_event(
        session,
        case,
        CaseEventKind.priority,
        f"优先级 {before.value} → {priority.value}" + (f"：{note}" if note else ""),
        actor=user,
    )
    case_changed(session, settings, case, "priority")
    return case


def resolve(*, session: Session, settings: Settings, user: StaffUser, case_id: int, note: str = "") -> Case:
    """Resolved: the timers stop, the assistant answers the conversation again, and the resident
    gets the satisfaction survey on their own channel."""
    case = get_case(session=session, user=user, case_id=case_id)
    require_active(case)
    require_holder(user, case)
    now = utcnow()
    if case.assignee_id is None:
        case.assignee_id = user.id
    case.status, case.resolved_at, case.waiting_since = CaseStatus.resolved, now, None
    if case.first_response_at is None:
        case.first_response_at = now
    bump_timers(session, settings, case)  # no timers for a resolved case: the old ones stop
    add_event(
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
            conversations.hand_back(conversation)
        send_survey(session, settings, case, conversation)
    case_changed(session, settings, case, "resolved")
    return case
