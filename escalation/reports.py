"""Reports for supervisors: SLA compliance and satisfaction (回访) per community, agent or
category over a period, and each agent's workload now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import Role, StaffUser
from accounts.service import accessible_community_ids, require_community
from core.db import utcnow
from core.errors import Forbidden, InvalidInput
from core.settings import Settings
from escalation.models import Case, CaseStatus, Survey


@dataclass
class SlaRow:
    key: str
    cases: int = 0
    responded: int = 0
    responded_in_time: int = 0
    resolved: int = 0
    resolved_in_time: int = 0
    breaches: int = 0
    open_overdue: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "cases": self.cases,
            "responded": self.responded,
            "response_rate": _rate(self.responded_in_time, self.responded),
            "resolved": self.resolved,
            "resolve_rate": _rate(self.resolved_in_time, self.resolved),
            "breaches": self.breaches,
            "open_overdue": self.open_overdue,
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _group_key(session: Session, case_or_survey: Any, by: str, names: dict[tuple[str, int], str]) -> str:
    if by == "category":
        return str(case_or_survey.category.value)
    if by == "community":
        ident = case_or_survey.community_id
        if ("c", ident) not in names:
            from org.models import Community

            place = session.get(Community, ident)
            names[("c", ident)] = place.name if place else str(ident)
        return names[("c", ident)]
    ident = case_or_survey.assignee_id if isinstance(case_or_survey, Case) else case_or_survey.agent_id
    if ident is None:
        return "未分配"
    if ("a", ident) not in names:
        agent = session.get(StaffUser, ident)
        names[("a", ident)] = agent.display_name if agent else str(ident)
    return names[("a", ident)]


def _report_scope(*, session: Session, user: StaffUser, by: str, community_id: int | None) -> set[int]:
    """The communities a report covers (a supervisor's, or the one asked for)."""
    if by not in ("community", "agent", "category"):
        raise InvalidInput("by 应为 community、agent 或 category")
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管可以查看报表")
    if community_id is None:
        return accessible_community_ids(session=session, user=user)
    return {require_community(session=session, user=user, community_id=community_id).id}


def sla_report(
    *,
    session: Session,
    user: StaffUser,
    by: str,
    since: datetime,
    until: datetime,
    community_id: int | None = None,
) -> list[dict[str, Any]]:
    """SLA compliance of the cases created in [since, until), per community, agent or category."""
    ids = _report_scope(session=session, user=user, by=by, community_id=community_id)
    cases = session.scalars(
        select(Case).where(
            Case.company_id == user.company_id,
            Case.community_id.in_(ids),
            Case.created_at >= since,
            Case.created_at < until,
        )
    ).all()
    now, names, rows = utcnow(), {}, {}  # type: ignore[var-annotated]
    for case in cases:
        key = _group_key(session, case, by, names)
        row = rows.setdefault(key, SlaRow(key))
        row.cases += 1
        if case.first_response_at is not None:
            row.responded += 1
            row.responded_in_time += case.first_response_at <= case.first_response_due
        if case.resolved_at is not None:
            row.resolved += 1
            row.resolved_in_time += case.resolved_at <= case.resolve_due
        row.breaches += (case.response_breached_at is not None) + (case.resolve_breached_at is not None)
        row.open_overdue += case.active and case.next_due < now
    return [r.as_dict() for r in sorted(rows.values(), key=lambda r: -r.cases)]


def csat_report(
    *,
    session: Session,
    user: StaffUser,
    by: str,
    since: datetime,
    until: datetime,
    community_id: int | None = None,
) -> list[dict[str, Any]]:
    """Satisfaction (回访) of surveys sent in [since, until): answered, average, share 4–5."""
    ids = _report_scope(session=session, user=user, by=by, community_id=community_id)
    surveys = session.scalars(
        select(Survey).where(
            Survey.company_id == user.company_id,
            Survey.community_id.in_(ids),
            Survey.sent_at >= since,
            Survey.sent_at < until,
        )
    ).all()
    names: dict[tuple[str, int], str] = {}
    groups: dict[str, list[Survey]] = {}
    for survey in surveys:
        groups.setdefault(_group_key(session, survey, by, names), []).append(survey)
    out = []
    for key, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        scores = [s.score for s in items if s.score is not None]
        out.append(
            {
                "key": key,
                "sent": len(items),
                "answered": len(scores),
                "average": round(sum(scores) / len(scores), 2) if scores else None,
                "satisfied_rate": _rate(sum(1 for s in scores if s >= 4), len(scores)),
                "low": sum(1 for s in scores if s <= 2),
            }
        )
    return out


def workload(*, session: Session, settings: Settings, user: StaffUser) -> list[dict[str, Any]]:
    """Per agent: cases held, of them overdue, and the oldest waiting resident."""
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管可以查看工作量")
    ids = accessible_community_ids(session=session, user=user)
    agents = session.scalars(
        select(StaffUser).where(
            StaffUser.company_id == user.company_id,
            StaffUser.is_active.is_(True),
            StaffUser.role.in_([Role.agent, Role.supervisor]),
        )
    ).all()
    held = session.scalars(
        select(Case).where(
            Case.company_id == user.company_id,
            Case.community_id.in_(ids),
            Case.status == CaseStatus.in_progress,
        )
    ).all()
    now = utcnow()
    out = []
    for agent in agents:
        mine = [c for c in held if c.assignee_id == agent.id]
        waiting = [c.waiting_since for c in mine if c.waiting_since]
        out.append(
            {
                "agent_id": agent.id,
                "name": agent.display_name,
                "role": agent.role.value,
                "holding": len(mine),
                "overdue": sum(1 for c in mine if c.next_due < now),
                "oldest_wait_seconds": int((now - min(waiting)).total_seconds()) if waiting else None,
                "cap": settings.agent_max_open_cases,
            }
        )
    return out
