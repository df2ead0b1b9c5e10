"""Call-backs (回电) after phone calls: one per call, listed for agents, and marked done or not
reached (noted on the case; a call made is the case's first response).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import StaffUser
from accounts.service import accessible_community_ids, require_community
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from escalation.common import add_event, require_staff
from escalation.models import CallbackStatus, CallbackTask, Case, CaseEventKind

log = logging.getLogger(__name__)


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
            add_event(
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
