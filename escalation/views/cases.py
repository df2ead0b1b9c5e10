"""The console's API on cases: the queue (cached per scope while nothing changed), a case and its
history, opening one, and the actions on it: claim, assign, transfer, reply, note, priority,
resolve, reopen, acknowledge an emergency, a survey score taken on the phone, draft replies.
"""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from accounts.deps import CurrentUser
from accounts.models import Role, StaffUser
from core.deps import SessionDep, SettingsDep
from core.errors import Conflict
from core.masking import mask_mobile, mask_name
from core.routing import CommittingRoute
from core.types import PathId, QueryId
from escalation import cases, common, paging, queue, schemas, surveys, working
from escalation.models import CaseCategory, Priority, Survey, WorkOrder
from escalation.views.reads import (
    case_read,
    case_reads,
    event_read,
    iso,
    message_read,
    room_label,
    work_order_read,
)
from org.models import IdentityKind, Resident

router = APIRouter(tags=["console"], route_class=CommittingRoute)


class ListCache:
    """Lists of cases as sent, per scope, while no case of the company has changed.

    Twenty consoles reload the same queue within a second of each change (bench/console_load.py):
    the first builds it, the others get its bytes. An entry is keyed by the company's cases
    version (``common.cases_version``, bumped before every change is announced), so a reload
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
    version = common.cases_version(settings, user.company_id)
    key = _list_key(user, view, community_id, version) if version is not None else None
    body = _lists.get(key) if key is not None else None
    if body is None:
        found = queue.list_cases(session=session, user=user, view=view, community_id=community_id)
        body = _case_rows.dump_json(case_reads(session, found))
        if key is not None:
            _lists.put(key, body)
    return Response(body, media_type="application/json")


@router.get("/api/cases/{case_id}", response_model=schemas.CaseDetail)
def get_case(case_id: PathId, user: CurrentUser, session: SessionDep) -> schemas.CaseDetail:
    """Everything at once: the whole conversation with the assistant's citations, the timeline,
    the resident (masked) and their past cases, work orders, surveys."""
    case = common.get_case(session=session, user=user, case_id=case_id)
    resident = session.get(Resident, case.resident_id) if case.resident_id else None
    orders = session.query(WorkOrder).filter(
        (WorkOrder.case_id == case.id)
        | ((WorkOrder.conversation_id == case.conversation_id) if case.conversation_id else False)
    )
    sent_surveys = session.query(Survey).filter(Survey.case_id == case.id).order_by(Survey.id)
    return schemas.CaseDetail(
        case=case_read(session, case),
        messages=[message_read(m) for m in cases.conversation_messages(session=session, case=case)],
        events=[event_read(session, e) for e in cases.timeline(session=session, case=case)],
        resident=schemas.ResidentRead(
            id=resident.id,
            name=mask_name(resident.name),
            room=room_label(resident),
            mobile=mask_mobile(resident.identity(IdentityKind.mobile) or "") or None,
        )
        if resident
        else None,
        past_cases=case_reads(session, cases.past_cases(session=session, case=case)),
        work_orders=[work_order_read(o) for o in orders.order_by(WorkOrder.id)],
        surveys=[
            schemas.SurveyRead(
                id=s.id,
                channel=s.channel,
                sent_at=s.sent_at.isoformat(),
                score=s.score,
                comment=s.comment,
                answered_at=iso(s.answered_at),
            )
            for s in sent_surveys
        ],
    )


@router.post("/api/cases", response_model=schemas.CaseRead, status_code=201)
def create_case(
    body: schemas.CaseCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    """An agent opens a case (a walk-in, a call outside the call centre)."""
    case = cases.open_case_by_staff(
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
    return case_read(session, queue.claim(session=session, settings=settings, user=user, case_id=case_id))


@router.post("/api/cases/{case_id}/assign", response_model=schemas.CaseRead)
def assign(
    case_id: PathId, body: schemas.AssignIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = queue.assign(
        session=session, settings=settings, user=user, case_id=case_id, agent_id=body.agent_id, note=body.note
    )
    return case_read(session, case)


@router.post("/api/cases/{case_id}/transfer", response_model=schemas.CaseRead)
def transfer(
    case_id: PathId, body: schemas.TransferIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = queue.transfer(
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
    message = working.reply(session=session, settings=settings, user=user, case_id=case_id, text=body.text)
    return message_read(message)


@router.post("/api/cases/{case_id}/notes", response_model=schemas.EventRead, status_code=201)
def add_note(
    case_id: PathId, body: schemas.TextIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.EventRead:
    """An internal note: colleagues see it, the resident never does."""
    event = working.add_note(session=session, settings=settings, user=user, case_id=case_id, text=body.text)
    return event_read(session, event)


@router.post("/api/cases/{case_id}/priority", response_model=schemas.CaseRead)
def set_priority(
    case_id: PathId, body: schemas.PriorityIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = working.set_priority(
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
    case = working.resolve(session=session, settings=settings, user=user, case_id=case_id, note=body.note)
    return case_read(session, case)


@router.post("/api/cases/{case_id}/reopen", response_model=schemas.CaseRead)
def reopen(
    case_id: PathId, body: schemas.ReasonIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    case = cases.reopen_by(session=session, settings=settings, user=user, case_id=case_id, reason=body.reason)
    return case_read(session, case)


@router.post("/api/cases/{case_id}/acknowledge", response_model=schemas.CaseRead)
def acknowledge(
    case_id: PathId, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.CaseRead:
    """An emergency taken: the duty chain stops paging."""
    case = common.get_case(session=session, user=user, case_id=case_id)
    paging.acknowledge(session=session, settings=settings, case=case, by=user.display_name, actor=user)
    return case_read(session, case)


@router.post("/api/cases/{case_id}/survey", response_model=schemas.SurveyRead)
def record_survey(
    case_id: PathId, body: schemas.SurveyIn, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> schemas.SurveyRead:
    """A score the resident gave on the phone (回访 by call)."""
    case = common.get_case(session=session, user=user, case_id=case_id)
    survey = session.query(Survey).filter(Survey.case_id == case.id, Survey.answered_at.is_(None)).first()
    if survey is None:
        raise Conflict("该案件没有待录入的回访")
    surveys.record_survey(
        session=session, settings=settings, survey=survey, score=body.score, comment=body.comment, actor=user
    )
    return schemas.SurveyRead(
        id=survey.id,
        channel=survey.channel,
        sent_at=survey.sent_at.isoformat(),
        score=survey.score,
        comment=survey.comment,
        answered_at=iso(survey.answered_at),
    )


@router.get("/api/cases/{case_id}/suggestions", response_model=list[schemas.Suggestion])
def suggestions(
    case_id: PathId, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> list[schemas.Suggestion]:
    """Draft replies from the knowledge base for the resident's latest messages, with sources."""
    from assistant.service import Assistant

    case = common.get_case(session=session, user=user, case_id=case_id)
    messages = cases.conversation_messages(session=session, case=case, limit=20)
    said = [m.text for m in messages if m.sender.value == "resident"][-2:]
    query = " ".join(said) or case.summary[-200:]
    found = Assistant(settings).suggest(community_id=case.community_id, text=query[:300])
    return [schemas.Suggestion(text=t, document=c.document, section=c.section, score=s) for t, c, s in found]
