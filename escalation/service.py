"""Opening cases and registering work orders: the seam between the assistant (and later the
channels and the agent console) and the people who act."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from escalation.models import CallbackTask, Case, CaseCategory, CaseStatus, WorkOrder, WorkOrderCategory
from escalation.sla import REPAIR, case_priority, case_sla

log = logging.getLogger(__name__)

SEVERITY = {
    CaseCategory.suggestion: 0,
    CaseCategory.inquiry: 1,
    CaseCategory.repair: 2,
    CaseCategory.complaint: 3,
    CaseCategory.emergency: 4,
}


def open_case(
    *,
    session: Session,
    company_id: int,
    community_id: int,
    category: CaseCategory,
    reason: str,
    summary: str,
    conversation_id: int | None = None,
    resident_id: int | None = None,
    dispute: bool = False,
    now: datetime | None = None,
) -> Case:
    """A case for a person to take, with its priority and SLA due times. A conversation has at
    most one open case: handing over again adds to it (raising it to an emergency if needed)."""
    now = now or utcnow()
    if conversation_id is not None:
        existing = (
            session.query(Case)
            .filter(
                Case.conversation_id == conversation_id,
                Case.status.in_([CaseStatus.open, CaseStatus.in_progress]),
            )
            .first()
        )
        if existing is not None:
            if SEVERITY[category] > SEVERITY[existing.category]:  # e.g. a question that became a complaint
                sla = case_sla(category, dispute=dispute)
                existing.category = category
                existing.priority = case_priority(category)
                existing.reason = reason[:64]
                existing.first_response_due = min(existing.first_response_due, now + sla.first_response)
                existing.resolve_due = min(existing.resolve_due, now + sla.resolve)
            existing.summary = f"{existing.summary}\n{summary}"[-4000:]  # the newest lines matter most
            session.flush()
            return existing
    sla = case_sla(category, dispute=dispute)
    case = Case(
        company_id=company_id,
        community_id=community_id,
        conversation_id=conversation_id,
        resident_id=resident_id,
        category=category,
        priority=case_priority(category),
        reason=reason[:64],
        summary=summary[-4000:],
        first_response_due=now + sla.first_response,
        resolve_due=now + sla.resolve,
        created_at=now,
    )
    session.add(case)
    session.flush()
    log.info("case %s opened: %s/%s (%s) in community %s", case.id, category.value, case.priority.value,
             reason, community_id)  # fmt: skip
    return case


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
    now: datetime | None = None,
) -> WorkOrder:
    """A work order waiting for dispatch (待派单), due by the repair SLA."""
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
    )
    session.add(order)
    session.flush()
    log.info("work order %s registered: %s in community %s", order.id, category.value, community_id)
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
