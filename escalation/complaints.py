"""What residents complained about, for readers outside the console: the opinion monitor's internal
early warnings read cases and work orders here, as typed rows, and nowhere else.

A complaint carries the resident's own words: what they wrote or said in the case's conversation
(the assistant's and the agents' turns name topics too, 电梯 in a safety reminder), never lines
picked out of the case summary by its wording. A case opened without a conversation (a walk-in
an agent wrote down) has only its summary, which counts as a whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, literal, select
from sqlalchemy.orm import Session

from conversations.models import Message, Sender
from core.db import UTCDateTime
from escalation.models import Case, CaseCategory, WorkOrder

# What counts as a resident complaining: a complaint, a repair handed to a person, an emergency.
COMPLAINT_CATEGORIES = (CaseCategory.complaint, CaseCategory.repair, CaseCategory.emergency)
REPORT_ROWS = 5000  # cases or work orders returned by one call unless the caller asks for fewer
# A WeChat or app conversation lasts as long as the account: only what the resident wrote from a
# day before the case opened (the exchange that led to the hand-off; a call is processed minutes
# after it ended) until the case was resolved is about this case, and of that the latest 30
# messages (the case summary kept its newest 4000 characters for the same reason).
WORDS_BEFORE = timedelta(hours=24)
WORDS_PER_CASE = 30


@dataclass(frozen=True)
class InternalComplaint:
    """A resident's complaint, repair or emergency as the console holds it."""

    case_id: int
    community_id: int
    category: CaseCategory
    created_at: datetime
    resident_id: int | None
    conversation_id: int | None
    words: str  # the resident's messages in order, one a line; the summary for a case without any

    @property
    def urgent(self) -> bool:
        return self.category is CaseCategory.emergency


@dataclass(frozen=True)
class RaisedWorkOrder:
    """A work order as it was raised (by the assistant, a call or an agent)."""

    work_order_id: int
    community_id: int
    case_id: int | None
    conversation_id: int | None
    resident_id: int | None
    building: str | None  # as entered: 3栋, 3号楼
    description: str
    created_at: datetime


def resident_complaints(
    *,
    session: Session,
    company_id: int,
    since: datetime,
    until: datetime,
    community_ids: Collection[int] | None = None,
    limit: int = REPORT_ROWS,
) -> list[InternalComplaint]:
    """The company's complaints, repairs and emergencies created in [since, until] (of the given
    communities; all when None), the newest ``limit`` of them, newest first; one query."""
    where = [
        Case.company_id == company_id,
        Case.created_at >= since,
        Case.created_at <= until,
        Case.category.in_(COMPLAINT_CATEGORIES),
    ]
    if community_ids is not None:
        where.append(Case.community_id.in_(list(community_ids)))
    cases = (
        select(
            Case.id,
            Case.community_id,
            Case.conversation_id,
            Case.resident_id,
            Case.category,
            Case.summary,
            Case.created_at,
            func.coalesce(Case.resolved_at, literal(until, UTCDateTime())).label("words_until"),
        )
        .where(*where)
        .order_by(Case.created_at.desc(), Case.id.desc())
        .limit(limit)
        .cte("cases")
    )
    rank = func.row_number().over(partition_by=cases.c.id, order_by=Message.id.desc()).label("rank")
    said = (
        select(
            cases.c.id.label("case_id"),
            Message.id.label("message_id"),
            Message.text,
            Message.created_at,
            rank,
        )
        .join(Message, Message.conversation_id == cases.c.conversation_id)
        .where(
            Message.sender == Sender.resident,
            Message.created_at >= since - WORDS_BEFORE,  # per case below; this bounds the scan
            Message.created_at <= cases.c.words_until,
        )
        .subquery("said")
    )
    rows = session.execute(
        select(cases, said.c.text, said.c.created_at.label("said_at"))
        .outerjoin(said, (said.c.case_id == cases.c.id) & (said.c.rank <= WORDS_PER_CASE))
        .order_by(cases.c.created_at.desc(), cases.c.id.desc(), said.c.message_id)
    ).all()

    cases_by_id: dict[int, Row[Any]] = {}
    words: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        cases_by_id.setdefault(row.id, row)
        if row.text is not None and row.said_at >= row.created_at - WORDS_BEFORE:
            words[row.id].append(row.text)
    return [
        InternalComplaint(
            case_id=case.id,
            community_id=case.community_id,
            category=CaseCategory(case.category),
            created_at=case.created_at,
            resident_id=case.resident_id,
            conversation_id=case.conversation_id,
            words="\n".join(words[case.id]) if words.get(case.id) else (case.summary or ""),
        )
        for case in cases_by_id.values()
    ]


def work_orders_raised(
    *,
    session: Session,
    company_id: int,
    since: datetime,
    until: datetime,
    community_ids: Collection[int] | None = None,
    limit: int = REPORT_ROWS,
) -> list[RaisedWorkOrder]:
    """The company's work orders created in [since, until] (of the given communities; all when
    None), the newest ``limit`` of them, newest first."""
    where = [WorkOrder.company_id == company_id, WorkOrder.created_at >= since, WorkOrder.created_at <= until]
    if community_ids is not None:
        where.append(WorkOrder.community_id.in_(list(community_ids)))
    rows = session.execute(
        select(
            WorkOrder.id,
            WorkOrder.community_id,
            WorkOrder.case_id,
            WorkOrder.conversation_id,
            WorkOrder.resident_id,
            WorkOrder.building,
            WorkOrder.description,
            WorkOrder.created_at,
        )
        .where(*where)
        .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())
        .limit(limit)
    ).all()
    return [
        RaisedWorkOrder(
            work_order_id=row.id,
            community_id=row.community_id,
            case_id=row.case_id,
            conversation_id=row.conversation_id,
            resident_id=row.resident_id,
            building=row.building,
            description=row.description or "",
            created_at=row.created_at,
        )
        for row in rows
    ]
