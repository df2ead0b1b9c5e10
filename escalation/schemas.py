"""What the agent console sends and reads. Personal data is masked before it gets here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.types import Id

QueueView = Literal["queue", "mine", "active", "breached", "done"]


class CaseRead(BaseModel):
    id: int
    community_id: int
    community: str
    channel: str | None
    category: str
    priority: str
    status: str
    reason: str
    summary: str  # masked, the newest lines
    skill: str
    assignee_id: int | None
    assignee: str | None
    resident: str | None  # masked name and room
    created_at: str
    first_response_due: str
    resolve_due: str
    next_due: str
    first_response_at: str | None
    resolved_at: str | None
    waiting_since: str | None
    overdue: bool
    response_breached: bool
    resolve_breached: bool
    needs_supervisor: bool
    hazard: str | None  # 安全隐患: the kind of danger described (not happening now)
    emergency_kind: str | None = None  # an emergency's kind (火灾, 电梯困人…)
    linked_case_id: int | None = None  # the case an emergency interrupted (its own case, linked)
    acknowledged_at: str | None
    reopen_count: int


class MessageRead(BaseModel):
    id: int
    sender: str
    text: str  # masked
    action: str | None
    citations: list[dict[str, Any]] = []
    created_at: str


class EventRead(BaseModel):
    id: int
    kind: str
    text: str
    actor: str | None
    created_at: str


class ResidentRead(BaseModel):
    id: int
    name: str  # masked
    room: str | None
    mobile: str | None  # masked


class SurveyRead(BaseModel):
    id: int
    channel: str
    sent_at: str
    score: int | None
    comment: str | None
    answered_at: str | None


class WorkOrderRead(BaseModel):
    id: int
    community_id: int
    case_id: int | None
    conversation_id: int | None
    category: str
    department: str | None
    status: str
    location: str
    description: str  # masked
    assignee: str | None
    response_due: str
    resolve_due: str
    created_at: str
    done_at: str | None


class CaseDetail(BaseModel):
    case: CaseRead
    messages: list[MessageRead]
    events: list[EventRead]
    resident: ResidentRead | None
    past_cases: list[CaseRead]
    work_orders: list[WorkOrderRead]
    surveys: list[SurveyRead]


class CaseCreate(BaseModel):
    community_id: Id
    category: Literal["报修", "投诉", "咨询", "建议", "紧急"]
    summary: str = Field(min_length=1, max_length=4000)
    conversation_id: Id | None = None
    resident_id: Id | None = None


class TextIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class AssignIn(BaseModel):
    agent_id: Id
    note: str = Field(default="", max_length=500)


class TransferIn(BaseModel):
    note: str = Field(max_length=500)
    agent_id: Id | None = None
    skill: str | None = Field(default=None, max_length=16)


class PriorityIn(BaseModel):
    priority: Literal["紧急", "重要", "一般"]
    note: str = Field(default="", max_length=500)


class NoteIn(BaseModel):
    note: str = Field(default="", max_length=500)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class SurveyIn(BaseModel):
    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=1000)


class Suggestion(BaseModel):
    text: str
    document: str
    section: str
    score: float


class CannedReplyRead(BaseModel):
    id: int
    community_id: int | None
    title: str
    text: str


class CannedReplyCreate(BaseModel):
    title: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)
    community_id: Id | None = None


class SlaPolicyRead(BaseModel):
    category: str
    first_response_minutes: float
    resolve_minutes: float
    remind_before_minutes: float


class SlaPolicyIn(BaseModel):
    first_response_minutes: float = Field(gt=0, le=60 * 24 * 30)
    resolve_minutes: float = Field(gt=0, le=60 * 24 * 90)
    remind_before_minutes: float = Field(ge=0, le=60 * 24 * 30)


class DutyStep(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(default=None, max_length=32)
    robot_kind: Literal["wecom", "dingtalk", "feishu"] | None = None
    # Admins only. Left out (None): the level keeps its stored robot; "": the robot is removed.
    robot_url: str | None = Field(default=None, max_length=500)
    robot_secret: str | None = Field(default=None, max_length=200)
    ack_minutes: float = Field(default=5, gt=0, le=120)


class DutyStepRead(BaseModel):
    level: int
    name: str
    phone: str | None  # masked
    robot_kind: str | None
    has_robot: bool
    ack_minutes: float


class WorkOrderMove(BaseModel):
    to: Literal["待派单", "已派单", "处理中", "待核验", "已完成"]
    note: str = Field(default="", max_length=1000)
    assignee_id: Id | None = None
    assignee_name: str | None = Field(default=None, max_length=64)


class WorkOrderCreate(BaseModel):
    category: Literal["工程", "保洁", "秩序", "绿化", "客服"]
    description: str = Field(min_length=1, max_length=2000)
    building: str | None = Field(default=None, max_length=32)
    unit: str | None = Field(default=None, max_length=32)
    room: str | None = Field(default=None, max_length=32)


class WorkOrderHandOff(BaseModel):
    department: Literal["工程", "保洁", "秩序", "绿化", "客服"]
    note: str = Field(min_length=1, max_length=1000)


class WorkOrderEventRead(BaseModel):
    id: int
    text: str
    from_status: str | None
    to_status: str | None
    photos: list[str]
    created_at: str


class WorkOrderDetail(BaseModel):
    order: WorkOrderRead
    events: list[WorkOrderEventRead]


class CallbackRead(BaseModel):
    id: int
    community_id: int
    case_id: int | None
    work_order_id: int | None
    phone: str  # the number to dial: agents need it whole
    reason: str
    status: str
    due_at: str
    overdue: bool


class CallbackDone(BaseModel):
    status: Literal["已回电", "未接通"]
    note: str = Field(default="", max_length=500)
