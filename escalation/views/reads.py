"""What the console reads, as the schemas the routers return: a case's queue row (the names,
channel and resident of many cases in a few queries), a work order, a message and a timeline
event, each masked as agents see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from accounts.models import StaffUser
from conversations.models import Channel, Conversation, Message
from core.db import utcnow
from core.deps import SessionDep
from core.masking import mask_name, mask_text
from escalation import common, schemas
from escalation.models import Case, CaseEvent, WorkOrder
from org.models import Community, Resident, Room, Unit


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def case_reads(session: SessionDep, cases: Sequence[Case]) -> list[schemas.CaseRead]:
    """Rows of the queue: the names, channels and residents of all of them in four queries (one
    list of 200 cases is read by 20 consoles every few seconds)."""
    if not cases:
        return []
    places = dict(
        session.execute(
            select(Community.id, Community.name).where(Community.id.in_({c.community_id for c in cases}))
        ).all()
    )
    agent_ids = {c.assignee_id for c in cases if c.assignee_id}
    agents = (
        dict(
            session.execute(
                select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(agent_ids))
            ).all()
        )
        if agent_ids
        else {}
    )
    conversation_ids = {c.conversation_id for c in cases if c.conversation_id}
    channels = (
        dict(
            session.execute(
                select(Conversation.id, Conversation.channel).where(Conversation.id.in_(conversation_ids))
            ).all()
        )
        if conversation_ids
        else {}
    )
    resident_ids = {c.resident_id for c in cases if c.resident_id}
    residents = (
        {
            r.id: r
            for r in session.scalars(
                select(Resident)
                .where(Resident.id.in_(resident_ids))
                .options(selectinload(Resident.room).selectinload(Room.unit).selectinload(Unit.building))
            )
        }
        if resident_ids
        else {}
    )
    now = utcnow()
    out = []
    for case in cases:
        channel = channels.get(case.conversation_id) if case.conversation_id else None
        if channel is None and case.channel and case.channel != "staff":
            channel = Channel(case.channel)
        out.append(
            schemas.CaseRead(
                id=case.id,
                community_id=case.community_id,
                community=places.get(case.community_id, ""),
                channel=channel.value if channel else None,
                category=case.category.value,
                priority=case.priority.value,
                status=case.status.value,
                reason=case.reason,
                summary=common.list_summary(case.summary),
                skill=case.skill,
                assignee_id=case.assignee_id,
                assignee=agents.get(case.assignee_id) if case.assignee_id else None,
                resident=_resident_label(residents.get(case.resident_id) if case.resident_id else None),
                created_at=case.created_at.isoformat(),
                first_response_due=case.first_response_due.isoformat(),
                resolve_due=case.resolve_due.isoformat(),
                next_due=case.next_due.isoformat(),
                first_response_at=iso(case.first_response_at),
                resolved_at=iso(case.resolved_at),
                waiting_since=iso(case.waiting_since),
                overdue=case.active and case.next_due < now,
                response_breached=case.response_breached_at is not None,
                resolve_breached=case.resolve_breached_at is not None,
                needs_supervisor=case.needs_supervisor,
                hazard=case.hazard,
                emergency_kind=case.emergency_kind,
                linked_case_id=case.linked_case_id,
                acknowledged_at=iso(case.acknowledged_at),
                reopen_count=case.reopen_count,
            )
        )
    return out


def case_read(session: SessionDep, case: Case) -> schemas.CaseRead:
    return case_reads(session, [case])[0]


def _resident_label(resident: Resident | None) -> str | None:
    if resident is None:
        return None
    room = room_label(resident)
    return f"{mask_name(resident.name)}" + (f" · {room}" if room else "")


def room_label(resident: Resident) -> str | None:
    if resident.room is None:
        return None
    flat = resident.room
    return f"{flat.unit.building.name}{flat.unit.name}{flat.number}"


def work_order_read(order: WorkOrder) -> schemas.WorkOrderRead:
    return schemas.WorkOrderRead(
        id=order.id,
        community_id=order.community_id,
        case_id=order.case_id,
        conversation_id=order.conversation_id,
        category=order.category.value,
        department=order.department,
        status=order.status.value,
        location=order.location,
        description=mask_text(order.description),
        assignee=order.assignee_name,
        response_due=order.response_due.isoformat(),
        resolve_due=order.resolve_due.isoformat(),
        created_at=order.created_at.isoformat(),
        done_at=iso(order.done_at),
    )


def message_read(message: Message) -> schemas.MessageRead:
    return schemas.MessageRead(
        id=message.id,
        sender=message.sender.value,
        text=mask_text(message.text),
        action=message.action,
        citations=message.citations or [],
        created_at=message.created_at.isoformat(),
    )


def event_read(session: SessionDep, event: CaseEvent) -> schemas.EventRead:
    actor = session.get(StaffUser, event.actor_id) if event.actor_id else None
    return schemas.EventRead(
        id=event.id,
        kind=event.kind.value,
        text=mask_text(event.text),
        actor=actor.display_name if actor else None,
        created_at=event.created_at.isoformat(),
    )
