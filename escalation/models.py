"""Cases (a resident handed to a person) and work orders (a repair or service to do).

This is the seam the assistant writes through; the escalation issue grows it into queues,
SLA timers, the agent console and follow-up surveys.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class CaseCategory(enum.StrEnum):
    repair = "报修"
    complaint = "投诉"
    inquiry = "咨询"
    suggestion = "建议"
    emergency = "紧急"


class Priority(enum.StrEnum):
    urgent = "紧急"
    important = "重要"
    normal = "一般"


class CaseStatus(enum.StrEnum):
    open = "待处理"
    in_progress = "处理中"
    resolved = "已解决"
    closed = "已关闭"


class Case(Base):
    __tablename__ = "escalation_case"
    __table_args__ = (Index("ix_escalation_case_community_status", "community_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversation.id", ondelete="SET NULL"), index=True
    )
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("resident.id", ondelete="SET NULL"))
    category: Mapped[CaseCategory] = mapped_column(Enum(CaseCategory, native_enum=False, length=16))
    priority: Mapped[Priority] = mapped_column(Enum(Priority, native_enum=False, length=16))
    status: Mapped[CaseStatus] = mapped_column(
        Enum(CaseStatus, native_enum=False, length=16), default=CaseStatus.open
    )
    reason: Mapped[str] = mapped_column(String(64))  # asked_for_person, complaint, emergency:火灾, …
    summary: Mapped[str] = mapped_column(Text)
    first_response_due: Mapped[datetime] = mapped_column(UTCDateTime())
    resolve_due: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkOrderCategory(enum.StrEnum):
    engineering = "工程"
    cleaning = "保洁"
    order = "秩序"
    greening = "绿化"
    service = "客服"


class WorkOrderStatus(enum.StrEnum):
    pending = "待派单"
    dispatched = "已派单"
    in_progress = "处理中"
    verifying = "待核验"
    done = "已完成"


class WorkOrder(Base):
    __tablename__ = "work_order"
    __table_args__ = (Index("ix_work_order_community_status", "community_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversation.id", ondelete="SET NULL"), index=True
    )
    case_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_case.id", ondelete="SET NULL"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("resident.id", ondelete="SET NULL"))
    category: Mapped[WorkOrderCategory] = mapped_column(Enum(WorkOrderCategory, native_enum=False, length=16))
    status: Mapped[WorkOrderStatus] = mapped_column(
        Enum(WorkOrderStatus, native_enum=False, length=16), default=WorkOrderStatus.pending
    )
    building: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str | None] = mapped_column(String(32))
    room: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    response_due: Mapped[datetime] = mapped_column(UTCDateTime())
    resolve_due: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def location(self) -> str:
        return "".join(p for p in (self.building, self.unit, self.room) if p)


class CallbackStatus(enum.StrEnum):
    pending = "待回电"
    done = "已回电"
    unreachable = "未接通"


class CallbackTask(Base):
    """A resident to be called again (a phone call's reply is a call back): what was promised,
    by when, and the number to dial, the one raw personal value this needs."""

    __tablename__ = "callback_task"
    __table_args__ = (
        UniqueConstraint("conversation_id"),  # one call, one call-back (a re-posted transcript too)
        Index("ix_callback_task_community_status", "community_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("resident.id", ondelete="SET NULL"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_case.id", ondelete="SET NULL"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id", ondelete="SET NULL"))
    phone: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200))  # for the agent, in Chinese
    status: Mapped[CallbackStatus] = mapped_column(
        Enum(CallbackStatus, native_enum=False, length=16), default=CallbackStatus.pending
    )
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
