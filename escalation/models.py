"""Cases (a resident handed to a person) and work orders (a repair or service to do).

This is the seam the assistant writes through; the escalation issue grows it into queues,
SLA timers, the agent console and follow-up surveys.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.tenancy import Tenant


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
    open = "待处理"  # in the queue, nobody holds it
    in_progress = "处理中"  # an agent holds it
    resolved = "已解决"  # the survey is out; a low score reopens it
    closed = "已关闭"  # done for good (survey answered well, or nothing came back)


ACTIVE_STATUSES = (CaseStatus.open, CaseStatus.in_progress)


class Case(Base):
    __tablename__ = "escalation_case"
    __tenant__ = Tenant.community()
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

    # The queue: which skill group takes it, who holds it, since when the resident waits.
    skill: Mapped[str] = mapped_column(String(16), default="客服")
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_user.id", ondelete="SET NULL"), index=True
    )
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The resident's oldest unanswered message (None: nobody is waiting for a person's reply).
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # SLA timers: a timer job carries the version it was set for; a changed case ignores old ones.
    sla_version: Mapped[int] = mapped_column(Integer, default=0)
    response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolve_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    needs_supervisor: Mapped[bool] = mapped_column(Boolean, default=False)  # breach, low score
    # Emergencies: who was paged (the step of the duty chain) and when someone took it.
    page_level: Mapped[int | None] = mapped_column(Integer)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # 安全隐患: the kind of danger (an emergency category) a resident described as past, chronic
    # or possible. Not an emergency (nobody is paged), but an urgent case.
    hazard: Mapped[str | None] = mapped_column(String(16))
    # Where the case came from: the resident's channel (web, wechat, app, phone) or "staff" when an
    # agent opened it; and for an emergency its kind (火灾, 电梯困人…). Columns, not text to parse.
    channel: Mapped[str | None] = mapped_column(String(16))
    emergency_kind: Mapped[str | None] = mapped_column(String(16))
    # An emergency raised while another case of the conversation was open is its own case, with its
    # own SLA and survey, linked to the case it interrupted.
    linked_case_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_case.id", ondelete="SET NULL"))

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def next_due(self) -> datetime:
        """What the queue orders by: the first response until it is given, then the resolution."""
        return self.first_response_due if self.first_response_at is None else self.resolve_due


class CaseEventKind(enum.StrEnum):
    created = "created"
    message = "message"  # the resident wrote again while the case is open
    claimed = "claimed"
    assigned = "assigned"
    transferred = "transferred"
    released = "released"  # idle with an agent past the threshold: back to the queue
    replied = "replied"
    note = "note"  # internal, never shown to the resident
    priority = "priority"
    reminder = "reminder"  # an SLA is about to be breached
    breach = "breach"  # an SLA was breached: the supervisor is told
    paged = "paged"  # an emergency paged the duty chain
    acknowledged = "acknowledged"
    resolved = "resolved"
    reopened = "reopened"
    closed = "closed"
    survey_sent = "survey_sent"
    survey_answered = "survey_answered"
    work_order = "work_order"


class CaseEvent(Base):
    """The case's timeline: every action, who did it and when (internal notes are events too)."""

    __tablename__ = "case_event"
    __tenant__ = Tenant.via("case_id", "escalation_case")
    __table_args__ = (Index("ix_case_event_case_id_id", "case_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("escalation_case.id", ondelete="CASCADE"))
    kind: Mapped[CaseEventKind] = mapped_column(Enum(CaseEventKind, native_enum=False, length=24))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text, default="")  # in Chinese, for the timeline
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SlaPolicy(Base):
    """A company's own response and resolution times for one category (PRODUCT.md's defaults
    apply where a company has none)."""

    __tablename__ = "sla_policy"
    __tenant__ = Tenant.company()
    __table_args__ = (UniqueConstraint("company_id", "category"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    category: Mapped[CaseCategory] = mapped_column(Enum(CaseCategory, native_enum=False, length=16))
    # Seconds in the table (tests run whole breaches in seconds); minutes in the API.
    first_response_seconds: Mapped[int] = mapped_column(Integer)
    resolve_seconds: Mapped[int] = mapped_column(Integer)
    remind_before_seconds: Mapped[int] = mapped_column(Integer)


class DutyContact(Base):
    """One step of a community's emergency chain: who is paged, how, and how long they have to
    acknowledge before the next step is paged."""

    __tablename__ = "duty_contact"
    __tenant__ = Tenant.community()
    __table_args__ = (UniqueConstraint("community_id", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    level: Mapped[int] = mapped_column(Integer)  # 0 first
    name: Mapped[str] = mapped_column(String(64))  # 值班经理 张工
    phone: Mapped[str | None] = mapped_column(String(32))  # for the SMS gateway
    robot_kind: Mapped[str | None] = mapped_column(String(16))  # wecom / dingtalk / feishu
    robot_url: Mapped[str | None] = mapped_column(String(500))
    robot_secret: Mapped[str | None] = mapped_column(String(200))
    ack_seconds: Mapped[int] = mapped_column(Integer, default=300)  # 5 minutes to acknowledge


class CannedReply(Base):
    """A reply agents pick instead of typing (per company; a community's own ones first)."""

    __tablename__ = "canned_reply"
    __tenant__ = Tenant.company_or_community()

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)


class Survey(Base):
    """回访: the satisfaction survey sent when a case is resolved, and the resident's answer."""

    __tablename__ = "survey"
    __tenant__ = Tenant.community()
    __table_args__ = (Index("ix_survey_case_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("escalation_case.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversation.id", ondelete="SET NULL"))
    # Copied from the case when sent, so CSAT reports need no joins and survive reassignment.
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    category: Mapped[CaseCategory] = mapped_column(Enum(CaseCategory, native_enum=False, length=16))
    channel: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    score: Mapped[int | None] = mapped_column(Integer)  # 1–5
    comment: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
    __tenant__ = Tenant.community()
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
    # 发起-分配-执行-核验-完成: who does it, which department holds it now (a hand-off moves it,
    # e.g. 工程 repaired it → 客服 calls the resident back).
    department: Mapped[str | None] = mapped_column(String(16))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    assignee_name: Mapped[str | None] = mapped_column(String(64))  # a technician without an account
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def location(self) -> str:
        return "".join(p for p in (self.building, self.unit, self.room) if p)


class WorkOrderEvent(Base):
    """A work order's timeline: status changes, notes, photos, hand-offs between departments."""

    __tablename__ = "work_order_event"
    __tenant__ = Tenant.via("work_order_id", "work_order")
    __table_args__ = (Index("ix_work_order_event_order_id_id", "work_order_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_order.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[str]] = mapped_column(JSON, default=list)  # stored file names
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CallbackStatus(enum.StrEnum):
    pending = "待回电"
    done = "已回电"
    unreachable = "未接通"


class CallbackTask(Base):
    """A resident to be called again (a phone call's reply is a call back): what was promised,
    by when, and the number to dial, the one raw personal value this needs."""

    __tablename__ = "callback_task"
    __tenant__ = Tenant.community()
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
