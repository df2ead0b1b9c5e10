"""The agent console's API: the queue, a case and its history, the actions on it, work orders,
call-backs, reports, the live stream, and the acknowledgement link of an emergency page."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from accounts.deps import CurrentUser, get_current_user
from accounts.models import Role, StaffUser
from accounts.service import accessible_community_ids, require_community
from conversations.models import Channel, Conversation, Message
from core.db import utcnow
from core.deps import SessionDep, SettingsDep
from core.errors import Conflict, Gone, InvalidInput, NotFound
from core.live import company_topic, stream
from core.masking import mask_mobile, mask_name, mask_text
from core.outbound import outbound_policy
from core.routing import CommittingRoute
from core.settings import Settings
from core.types import PathId, QueryId
from escalation import schemas, service
from escalation.models import (
    CallbackStatus,
    CallbackTask,
    Case,
    CaseCategory,
    CaseEvent,
    Priority,
    Survey,
    WorkOrder,
    WorkOrderCategory,
    WorkOrderStatus,
)
from org.models import Community, IdentityKind, Resident, Room, Unit

router = APIRouter(tags=["console"], route_class=CommittingRoute)


def _iso(value: datetime | None) -> str | None:
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
                summary=service.list_summary(case.summary),
                skill=case.skill,
                assignee_id=case.assignee_id,
                assignee=agents.get(case.assignee_id) if case.assignee_id else None,
                resident=_resident_label(residents.get(case.resident_id) if case.resident_id else None),
                created_at=case.created_at.isoformat(),
                first_response_due=case.first_response_due.isoformat(),
                resolve_due=case.resolve_due.isoformat(),
                next_due=case.next_due.isoformat(),
                first_response_at=_iso(case.first_response_at),
                resolved_at=_iso(case.resolved_at),
                waiting_since=_iso(case.waiting_since),
                overdue=case.active and case.next_due < now,
                response_breached=case.response_breached_at is not None,
                resolve_breached=case.resolve_breached_at is not None,
                needs_supervisor=case.needs_supervisor,
                hazard=case.hazard,
                emergency_kind=case.emergency_kind,
                linked_case_id=case.linked_case_id,
                acknowledged_at=_iso(case.acknowledged_at),
                reopen_count=case.reopen_count,
            )
        )
    return out


def case_read(session: SessionDep, case: Case) -> schemas.CaseRead:
    return case_reads(session, [case])[0]


def _resident_label(resident: Resident | None) -> str | None:
    if resident is None:
        return None
    room = _room(resident)
    return f"{mask_name(resident.name)}" + (f" · {room}" if room else "")


def _room(resident: Resident) -> str | None:
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
        done_at=_iso(order.done_at),
    )


def _message_read(message: Message) -> schemas.MessageRead:
    return schemas.MessageRead(
        id=message.id,
        sender=message.sender.value,
        text=mask_text(message.text),
        action=message.action,
        citations=message.citations or [],
        created_at=message.created_at.isoformat(),
    )


def _event_read(session: SessionDep, event: CaseEvent) -> schemas.EventRead:
    actor = session.get(StaffUser, event.actor_id) if event.actor_id else None
    return schemas.EventRead(
        id=event.id,
        kind=event.kind.value,
        text=mask_text(event.text),
        actor=actor.display_name if actor else None,
        created_at=event.created_at.isoformat(),
    )


# --- the queue and a case ----------------------------------------------------------------------


class ListCache:
    """Lists of cases as sent, per scope, while no case of the company has changed.

    Twenty consoles reload the same queue within a second of each change (bench/console_load.py):
    the first builds it, the others get its bytes. An entry is keyed by the company's cases
    version (``service.cases_version``, bumped before every change is announced), so a reload
    caused by an event always sees the change; it also lives at most ``SECONDS``, for what the
    clock alone changes (a case becoming overdue)."""

    SECONDS = 2.0
    SIZE = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[object, ...], tuple[float, bytes]] = {}

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] > self.SECONDS:
            return None
        return found[1]

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.SIZE:
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] <= self.SECONDS}
            self._entries[key] = (now, body)


_lists = ListCache()
_case_rows = TypeAdapter(list[schemas.CaseRead])


def _list_key(user: StaffUser, view: str, community_id: int | None, version: int) -> tuple[object, ...]:
    """Everything a list depends on besides the data: who may see which communities and groups."""
    scope = "all" if user.all_communities else tuple(sorted(user.community_ids))
    skills = tuple(sorted(user.skills or ())) if user.role is Role.agent else ()
    holder = user.id if view == "mine" else None
    return (user.company_id, version, view, community_id, user.role.value, scope, skills, holder)


@router.get("/api/cases", response_model=list[schemas.CaseRead])
def list_cases(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    view: schemas.QueueView = "queue",
    community_id: QueryId = None,
) -> Response:
    """The queue: by priority (紧急 first), then the next SLA due time."""
    version = service.cases_version(settings, user.company_id)
    key = _list_key(user, view, community_id, version) if version is not None else None
    body = _lists.get(key) if key is not None else None
    if body is None:
        cases = service.list_cases(session=session, user=user, view=view, community_id=community_id)
        body = _case_rows.dump_json(case_reads(session, cases))
        if key is not None:
            _lists.put(key, body)
    return Response(body, media_type="application/json")


@router.get("/api/cases/{case_id}", response_model=schemas.CaseDetail)
def get_case(case_id: PathId, user: CurrentUser, session: SessionDep) -> schemas.CaseDetail:
    """Everything at once: the whole conversation with the assistant's citations, the timeline,
    the resident (masked) and their past cases, work orders, surveys."""
    case = service.get_case(session=session, user=user, case_id=case_id)
    resident = session.get(Resident, case.resident_id) if case.resident_id else None
    orders = session.query(WorkOrder).filter(
        (WorkOrder.case_id == case.id)
        | ((WorkOrder.conversation_id == case.conversation_id) if case.conversation_id else False)
    )
    surveys = session.query(Survey).filter(Survey.case_id == case.id).order_by(Survey.id)
    return schemas.CaseDetail(
        case=case_read(session, case),
        messages=[_message_read(m) for m in service.conversation_messages(session=session, case=case)],
        events=[_event_read(session, e) for e in service.timeline(session=session, case=case)],
        resident=schemas.ResidentRead(
            id=resident.id,
            name=mask_name(resident.name),
            room=_room(resident),
            mobile=mask_mobile(resident.identity(IdentityKind.mobile) or "") or None,
        )
        if resident
        else None,
        past_cases=case_reads(session, service.past_cases(session=session, case=case)),
        work_orders=[work_order_read(o) for o in orders.order_by(WorkOrder.id)],
        surveys=[
            schemas.SurveyRead(
                id=s.id,
                channel=s.channel,
                sent_at=s.sent_at.isoformat(),
                score=s.score,
                comment=s.comment,
                answered_at=_iso(s.answered_at),
            )
            for s in surveys
        ],
    )


@router.post("/api/cases", response_model=schemas.CaseRead, status_code=201)
def create_case(
    body: schemas.CaseCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    """An agent opens a case (a walk-in, a call outside the call centre)."""
    case = service.open_case_by_staff(
        session=session,
        settings=settings,
        user=user,
        community_id=body.community_id,
        category=CaseCategory(body.category),
        summary=body.summary,
        conversation_id=body.conversation_id,
        resident_id=body.resident_id,
    )
    return case_read(session, case)


@router.post("/api/cases/{case_id}/claim", response_model=schemas.CaseRead)
def claim(case_id: PathId, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> schemas.CaseRead:
    return case_read(session, service.claim(session=session, settings=settings, user=user, case_id=case_id))


@router.post("/api/cases/{case_id}/assign", response_model=schemas.CaseRead)
def assign(
    case_id: PathId, body: schemas.AssignIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = service.assign(
        session=session, settings=settings, user=user, case_id=case_id, agent_id=body.agent_id, note=body.note
    )
    return case_read(session, case)


@router.post("/api/cases/{case_id}/transfer", response_model=schemas.CaseRead)
def transfer(
    case_id: PathId, body: schemas.TransferIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = service.transfer(
        session=session,
        settings=settings,
        user=user,
        case_id=case_id,
        note=body.note,
        agent_id=body.agent_id,
        skill=body.skill,
    )
    return case_read(session, case)


@router.post("/api/cases/{case_id}/reply", response_model=schemas.MessageRead, status_code=201)
def reply(
    case_id: PathId, body: schemas.TextIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.MessageRead:
    """Sent to the resident on the channel they used (web page, WeChat, app)."""
    message = service.reply(session=session, settings=settings, user=user, case_id=case_id, text=body.text)
    return _message_read(message)


@router.post("/api/cases/{case_id}/notes", response_model=schemas.EventRead, status_code=201)
def add_note(
    case_id: PathId, body: schemas.TextIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.EventRead:
    """An internal note: colleagues see it, the resident never does."""
    event = service.add_note(session=session, settings=settings, user=user, case_id=case_id, text=body.text)
    return _event_read(session, event)


@router.post("/api/cases/{case_id}/priority", response_model=schemas.CaseRead)
def set_priority(
    case_id: PathId, body: schemas.PriorityIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = service.set_priority(
        session=session,
        settings=settings,
        user=user,
        case_id=case_id,
        priority=Priority(body.priority),
        note=body.note,
    )
    return case_read(session, case)


@router.post("/api/cases/{case_id}/resolve", response_model=schemas.CaseRead)
def resolve(
    case_id: PathId, body: schemas.NoteIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    """Resolved: SLA timers stop, the survey goes to the resident, the assistant answers again."""
    case = service.resolve(session=session, settings=settings, user=user, case_id=case_id, note=body.note)
    return case_read(session, case)


@router.post("/api/cases/{case_id}/reopen", response_model=schemas.CaseRead)
def reopen(
    case_id: PathId, body: schemas.ReasonIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = service.reopen_by(
        session=session, settings=settings, user=user, case_id=case_id, reason=body.reason
    )
    return case_read(session, case)


@router.post("/api/cases/{case_id}/acknowledge", response_model=schemas.CaseRead)
def acknowledge(
    case_id: PathId, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    """An emergency taken: the duty chain stops paging."""
    case = service.get_case(session=session, user=user, case_id=case_id)
    service.acknowledge(session=session, settings=settings, case=case, by=user.display_name, actor=user)
    return case_read(session, case)


@router.post("/api/cases/{case_id}/survey", response_model=schemas.SurveyRead)
def record_survey(
    case_id: PathId, body: schemas.SurveyIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.SurveyRead:
    """A score the resident gave on the phone (回访 by call)."""
    case = service.get_case(session=session, user=user, case_id=case_id)
    survey = session.query(Survey).filter(Survey.case_id == case.id, Survey.answered_at.is_(None)).first()
    if survey is None:
        raise Conflict("该案件没有待录入的回访")
    service.record_survey(
        session=session, settings=settings, survey=survey, score=body.score, comment=body.comment, actor=user
    )
    return schemas.SurveyRead(
        id=survey.id,
        channel=survey.channel,
        sent_at=survey.sent_at.isoformat(),
        score=survey.score,
        comment=survey.comment,
        answered_at=_iso(survey.answered_at),
    )


@router.get("/api/cases/{case_id}/suggestions", response_model=list[schemas.Suggestion])
def suggestions(
    case_id: PathId, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> list[schemas.Suggestion]:
    """Draft replies from the knowledge base for the resident's latest messages, with sources."""
    from assistant.service import Assistant

    case = service.get_case(session=session, user=user, case_id=case_id)
    messages = service.conversation_messages(session=session, case=case, limit=20)
    said = [m.text for m in messages if m.sender.value == "resident"][-2:]
    query = " ".join(said) or case.summary[-200:]
    found = Assistant(settings).suggest(community_id=case.community_id, text=query[:300])
    return [schemas.Suggestion(text=t, document=c.document, section=c.section, score=s) for t, c, s in found]


# --- live updates ------------------------------------------------------------------------------


@router.get("/api/console/stream")
async def console_stream(
    request: Request, settings: SettingsDep, user: Annotated[StaffUser, Depends(get_current_user)]
) -> StreamingResponse:
    """Server-sent events: a case of the user's communities changed (the page refetches it)."""
    from fastapi.concurrency import run_in_threadpool

    service.require_staff(user)
    database = request.app.state.database

    def communities() -> set[int]:
        with database.session(readonly=True) as session:
            return accessible_community_ids(session=session, user=session.get(StaffUser, user.id) or user)

    allowed = await run_in_threadpool(communities)
    events = stream(
        settings,
        [company_topic(user.company_id)],
        keep=lambda e: e.get("type") == "case" and e.get("community_id") in allowed,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- supervisors -------------------------------------------------------------------------------


@router.get("/api/console/workload")
def workload(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> list[dict[str, object]]:
    """Per agent: cases held, overdue, the longest a resident has waited."""
    return service.workload(session=session, settings=settings, user=user)


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or utcnow()
    since = since or until - timedelta(days=30)
    if since >= until:
        raise InvalidInput("起始时间应早于结束时间")
    return since, until


@router.get("/api/reports/sla")
def sla_report(
    user: CurrentUser,
    session: SessionDep,
    by: str = "community",
    since: datetime | None = None,
    until: datetime | None = None,
    community_id: QueryId = None,
) -> list[dict[str, object]]:
    """SLA compliance (first response and resolution in time, breaches) per community, agent or
    category, for cases created in the period (default: the last 30 days)."""
    start, end = _period(since, until)
    return service.sla_report(
        session=session, user=user, by=by, since=start, until=end, community_id=community_id
    )


@router.get("/api/reports/csat")
def csat_report(
    user: CurrentUser,
    session: SessionDep,
    by: str = "community",
    since: datetime | None = None,
    until: datetime | None = None,
    community_id: QueryId = None,
) -> list[dict[str, object]]:
    """Satisfaction (回访): surveys sent and answered, the average score, the share of 4–5."""
    start, end = _period(since, until)
    return service.csat_report(
        session=session, user=user, by=by, since=start, until=end, community_id=community_id
    )


@router.get("/api/sla-policies", response_model=list[schemas.SlaPolicyRead])
def sla_policies(user: CurrentUser, session: SessionDep) -> list[schemas.SlaPolicyRead]:
    return [
        schemas.SlaPolicyRead(
            category=c.value,
            first_response_minutes=s.first_response.total_seconds() / 60,
            resolve_minutes=s.resolve.total_seconds() / 60,
            remind_before_minutes=s.remind_before.total_seconds() / 60,
        )
        for c, s in service.sla_policies(session=session, user=user).items()
    ]


@router.put("/api/sla-policies/{category}", response_model=schemas.SlaPolicyRead)
def set_sla_policy(
    category: str, body: schemas.SlaPolicyIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.SlaPolicyRead:
    """A company's own times for a category (open cases keep theirs; new cases get these)."""
    try:
        which = CaseCategory(category)
    except ValueError:
        raise NotFound("没有这个类别") from None
    service.set_sla_policy(
        session=session,
        settings=settings,
        user=user,
        category=which,
        first_response=timedelta(minutes=body.first_response_minutes),
        resolve=timedelta(minutes=body.resolve_minutes),
        remind_before=timedelta(minutes=body.remind_before_minutes),
    )
    return schemas.SlaPolicyRead(category=which.value, **body.model_dump())


@router.get("/api/communities/{community_id}/duty-chain", response_model=list[schemas.DutyStepRead])
def get_duty_chain(
    community_id: PathId, user: CurrentUser, session: SessionDep
) -> list[schemas.DutyStepRead]:
    require_community(session=session, user=user, community_id=community_id)
    return [
        schemas.DutyStepRead(
            level=d.level,
            name=d.name,
            phone=mask_mobile(d.phone) if d.phone else None,
            robot_kind=d.robot_kind,
            has_robot=bool(d.robot_url),
            ack_minutes=d.ack_seconds / 60,
        )
        for d in service.duty_chain(session=session, community_id=community_id)
    ]


@router.put("/api/communities/{community_id}/duty-chain", response_model=list[schemas.DutyStepRead])
def set_duty_chain(
    community_id: PathId,
    body: list[schemas.DutyStep],
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> list[schemas.DutyStepRead]:
    """Who an emergency pages, in order, and how long each has to acknowledge. Robots (``robot_*``)
    are set by admins only; leave ``robot_url`` out to keep a level's robot, ``""`` removes it."""
    steps = []
    for step in body:
        data = step.model_dump(exclude={"ack_minutes"})
        data["ack_seconds"] = max(1, round(step.ack_minutes * 60))
        steps.append(data)
    service.set_duty_chain(session=session, user=user, community_id=community_id, steps=steps,
                           policy=outbound_policy(settings))  # fmt: skip
    return get_duty_chain(community_id, user, session)


@router.get("/api/canned-replies", response_model=list[schemas.CannedReplyRead])
def canned_replies(
    user: CurrentUser, session: SessionDep, community_id: QueryId = None
) -> list[schemas.CannedReplyRead]:
    return [
        schemas.CannedReplyRead(id=r.id, community_id=r.community_id, title=r.title, text=r.text)
        for r in service.canned_replies(session=session, user=user, community_id=community_id)
    ]


@router.post("/api/canned-replies", response_model=schemas.CannedReplyRead, status_code=201)
def add_canned_reply(
    body: schemas.CannedReplyCreate, user: CurrentUser, session: SessionDep
) -> schemas.CannedReplyRead:
    r = service.add_canned_reply(
        session=session, user=user, title=body.title, text=body.text, community_id=body.community_id
    )
    return schemas.CannedReplyRead(id=r.id, community_id=r.community_id, title=r.title, text=r.text)


# --- work orders and call-backs ----------------------------------------------------------------


@router.get("/api/work-orders", response_model=list[schemas.WorkOrderRead])
def list_work_orders(
    user: CurrentUser, session: SessionDep, community_id: QueryId = None, status: str | None = None
) -> list[schemas.WorkOrderRead]:
    """Open work orders (or those of one status), the most urgent first."""
    try:
        which = WorkOrderStatus(status) if status else None
    except ValueError:
        raise InvalidInput("未知的工单状态") from None
    orders = service.list_work_orders(session=session, user=user, community_id=community_id, status=which)
    return [work_order_read(o) for o in orders]


def _work_order_detail(session: SessionDep, order: WorkOrder) -> schemas.WorkOrderDetail:
    return schemas.WorkOrderDetail(
        order=work_order_read(order),
        events=[
            schemas.WorkOrderEventRead(
                id=e.id,
                text=mask_text(e.text),
                from_status=e.from_status,
                to_status=e.to_status,
                photos=e.photos or [],
                created_at=e.created_at.isoformat(),
            )
            for e in service.work_order_events(session=session, order=order)
        ],
    )


@router.get("/api/work-orders/{order_id}", response_model=schemas.WorkOrderDetail)
def get_work_order(order_id: PathId, user: CurrentUser, session: SessionDep) -> schemas.WorkOrderDetail:
    return _work_order_detail(session, service.get_work_order(session=session, user=user, order_id=order_id))


@router.post("/api/cases/{case_id}/work-orders", response_model=schemas.WorkOrderRead, status_code=201)
def create_work_order(
    case_id: PathId,
    body: schemas.WorkOrderCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.WorkOrderRead:
    """A work order from the case, for the department that does the work."""
    order = service.work_order_for_case(
        session=session,
        settings=settings,
        user=user,
        case_id=case_id,
        category=WorkOrderCategory(body.category),
        description=body.description,
        building=body.building,
        unit=body.unit,
        room=body.room,
    )
    return work_order_read(order)


@router.post("/api/work-orders/{order_id}/move", response_model=schemas.WorkOrderDetail)
def move_work_order(
    order_id: PathId,
    body: schemas.WorkOrderMove,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.WorkOrderDetail:
    """发起 → 分配 → 执行 → 核验 → 完成, one step at a time."""
    order = service.move_work_order(
        session=session,
        settings=settings,
        user=user,
        order_id=order_id,
        to=WorkOrderStatus(body.to),
        note=body.note,
        assignee_id=body.assignee_id,
        assignee_name=body.assignee_name,
    )
    return _work_order_detail(session, order)


@router.post("/api/work-orders/{order_id}/hand-off", response_model=schemas.WorkOrderDetail)
def hand_off_work_order(
    order_id: PathId, body: schemas.WorkOrderHandOff, user: CurrentUser, session: SessionDep
) -> schemas.WorkOrderDetail:
    order = service.hand_off_work_order(
        session=session, user=user, order_id=order_id, department=body.department, note=body.note
    )
    return _work_order_detail(session, order)


@router.post("/api/work-orders/{order_id}/photos", response_model=schemas.WorkOrderDetail, status_code=201)
def add_work_order_photo(
    order_id: PathId, photo: UploadFile, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.WorkOrderDetail:
    """A photo of the work (JPEG, PNG or WebP, up to 5 MB)."""
    content = photo.file.read(service.MAX_PHOTO_BYTES + 1)
    service.add_work_order_photo(
        session=session, settings=settings, user=user, order_id=order_id, content=content
    )
    return _work_order_detail(session, service.get_work_order(session=session, user=user, order_id=order_id))


@router.get("/api/work-orders/{order_id}/photos/{name}")
def work_order_photo(
    order_id: PathId, name: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    path = service.work_order_photo(
        session=session, settings=settings, user=user, order_id=order_id, name=name
    )
    return FileResponse(path)


def _callback_read(task: CallbackTask) -> schemas.CallbackRead:
    return schemas.CallbackRead(
        id=task.id,
        community_id=task.community_id,
        case_id=task.case_id,
        work_order_id=task.work_order_id,
        phone=task.phone,
        reason=task.reason,
        status=task.status.value,
        due_at=task.due_at.isoformat(),
        overdue=task.status is CallbackStatus.pending and task.due_at < utcnow(),
    )


@router.get("/api/callbacks", response_model=list[schemas.CallbackRead])
def list_callbacks(
    user: CurrentUser,
    session: SessionDep,
    community_id: QueryId = None,
    pending: bool = Query(default=True),
) -> list[schemas.CallbackRead]:
    """Residents to call back, the earliest due first."""
    tasks = service.list_callbacks(
        session=session, user=user, community_id=community_id, pending_only=pending
    )
    return [_callback_read(t) for t in tasks]


@router.post("/api/callbacks/{task_id}/done", response_model=schemas.CallbackRead)
def finish_callback(
    task_id: PathId, body: schemas.CallbackDone, user: CurrentUser, session: SessionDep
) -> schemas.CallbackRead:
    task = service.finish_callback(
        session=session, user=user, task_id=task_id, status=CallbackStatus(body.status), note=body.note
    )
    return _callback_read(task)


# --- the acknowledgement link of an emergency page ---------------------------------------------


# Token-bearing pages: the token stays out of Referer headers and caches.
_LINK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@router.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack_page(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    try:
        case = service.case_for_ack_token(session=session, settings=settings, token=token)
    except (NotFound, Gone) as exc:
        return _ack_refused(exc, settings)
    return HTMLResponse(_ack_html(case, done=case.acknowledged_at is not None), headers=_LINK_HEADERS)


@router.post("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Whoever got the page takes the emergency (the link is the credential: it names one case)."""
    try:
        case = service.case_for_ack_token(session=session, settings=settings, token=token)
    except (NotFound, Gone) as exc:
        return _ack_refused(exc, settings)
    level = case.page_level or 0
    chain = service.duty_chain(session=session, community_id=case.community_id)
    who = chain[level].name if level < len(chain) else "值班人员"
    service.acknowledge(session=session, settings=settings, case=case, by=who)
    return HTMLResponse(_ack_html(case, done=True), headers=_LINK_HEADERS)


def _ack_refused(exc: NotFound | Gone, settings: Settings) -> HTMLResponse:
    """A page, not JSON: whoever opens the link reads why it does nothing and where to go."""
    from html import escape

    if isinstance(exc, Gone):
        why = (f"这条紧急通知发出已超过 {settings.ack_link_hours} 小时，链接不能再用来确认。"
               "如事件仍需处理，请登录客服工作台查看。")  # fmt: skip
    else:
        why = "链接不完整或已被修改。如需处理紧急事件，请登录客服工作台，或直接联系值班主管。"
    page = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(exc.message)}</title><link rel='stylesheet' href='/static/anju.css'></head>"
        f"<body class='ack'><h1>{escape(exc.message)}</h1><p>{why}</p>"
        "<p><a href='/login?next=/console'>登录客服工作台</a></p></body></html>"
    )
    return HTMLResponse(page, exc.status_code, headers=_LINK_HEADERS)


def _ack_html(case: Case, *, done: bool) -> str:
    from html import escape

    summary = escape(mask_text(case.summary[-400:]))
    what = escape(case.emergency_kind or case.category.value)
    body = (
        f"<p class='ok'>已确认（{escape(case.acknowledged_by or '')}），请立即前往处置。</p>"
        if done
        else "<form method='post'><button type='submit'>我来处理</button></form>"
    )
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>紧急事件 {case.id}</title><link rel='stylesheet' href='/static/anju.css'></head>"
        f"<body class='ack'><h1>紧急事件：{what}（案件 {case.id}）</h1>"
        f"<pre>{summary}</pre>{body}</body></html>"
    )
