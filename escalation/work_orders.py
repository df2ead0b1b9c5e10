"""Work orders: registering one (from the resident's message, or by an agent from a case), the
location filled in when the resident gives it later, and the flow 发起-分配-执行-核验-完成 across
departments, with photos of the work; the resident is told on their channel when it is done.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import StaffUser
from accounts.service import accessible_community_ids, require_community
from conversations import service as conversations
from conversations.models import Channel, Conversation, Sender
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from core.settings import Settings
from core.tenancy import get_visible
from escalation.common import add_event, case_changed, get_case, require_staff
from escalation.models import (
    Case,
    CaseEventKind,
    WorkOrder,
    WorkOrderCategory,
    WorkOrderEvent,
    WorkOrderStatus,
)
from escalation.sla import REPAIR

log = logging.getLogger(__name__)


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
        add_event(
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
    case_changed(session, settings, case, "work_order")
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


# --- work orders: 发起-分配-执行-核验-完成 -----------------------------------------------------------------

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
    conversation = session.get(Conversation, order.conversation_id)
    if conversation is None or conversation.channel is Channel.phone:
        return  # a caller hears it on the call-back
    conversations.post_message(
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
