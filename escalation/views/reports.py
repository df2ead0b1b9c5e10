"""Supervisors' views: agents' workload, and the SLA and satisfaction reports over a period."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter

from accounts.deps import CurrentUser
from core.db import utcnow
from core.deps import SessionDep, SettingsDep
from core.errors import InvalidInput
from core.routing import CommittingRoute
from core.types import QueryId
from escalation import reports

router = APIRouter(tags=["console"], route_class=CommittingRoute)


@router.get("/api/console/workload")
def workload(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> list[dict[str, object]]:
    """Per agent: cases held, overdue, the longest a resident has waited."""
    return reports.workload(session=session, settings=settings, user=user)


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
    return reports.sla_report(
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
    return reports.csat_report(
        session=session, user=user, by=by, since=start, until=end, community_id=community_id
    )
