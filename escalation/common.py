"""What several families of the escalation domain use: the case timeline's event writer, the
live notice that a case changed (with the cases version that lets the console's lists be cached),
the access checks on a case, and naming an rq job by its dotted path.

A change is announced to open consoles only after it is committed (``core.events.after_commit``).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from accounts.models import Role, StaffUser
from accounts.service import require_community
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound
from core.events import after_commit
from core.live import company_topic, publish
from core.masking import mask_text
from core.redis import get_redis
from core.settings import Settings
from escalation.models import Case, CaseEvent, CaseEventKind

log = logging.getLogger(__name__)


# --- live updates ------------------------------------------------------------------------------


def case_changed(session: Session, settings: Settings, case: Case, what: str, **details: Any) -> None:
    """Tell open consoles of the company that this case changed (after the commit). ``details``
    let a console update a row in place instead of reloading its lists (a resident's message:
    the row's new summary line, masked as the list shows it)."""
    event = {"type": "case", "case_id": case.id, "community_id": case.community_id, "what": what, **details}
    company_id = case.company_id

    def announce() -> None:
        if what not in ROW_KEEPS:
            bump_cases_version(settings, company_id)  # before the event: a reload it causes sees it
        publish(settings, company_topic(company_id), event)

    after_commit(session, announce)


def list_summary(summary: str) -> str:
    """What a queue row shows of a case: its latest line, masked."""
    return mask_text(summary.rsplit("\n", 1)[-1][-120:])


# Changes after which a case's queue row reads the same (a cached list stays valid). A resident's
# message changes only the row's summary line: its event carries the line for open consoles, and
# a list cached before it shows the previous line for at most ListCache.SECONDS.
ROW_KEEPS = frozenset({"message", "note", "work_order", "reminder", "paged", "page_failed"})


def cases_version_key(company_id: int) -> str:
    return f"anju:cases:version:{company_id}"


def bump_cases_version(settings: Settings, company_id: int) -> None:
    try:
        get_redis(settings).incr(cases_version_key(company_id))
    except RedisError as exc:  # lists are then recomputed on every read until Redis is back
        log.warning("cases version of company %s not bumped: %s", company_id, exc)


def cases_version(settings: Settings, company_id: int) -> int | None:
    """Bumped by every change of a case of the company (None: Redis unreachable, do not cache)."""
    try:
        value = get_redis(settings).get(cases_version_key(company_id))
    except RedisError:
        return None
    return int(value or 0)


# --- the case timeline -------------------------------------------------------------------------


def add_event(
    session: Session,
    case: Case,
    kind: CaseEventKind,
    text: str = "",
    *,
    actor: StaffUser | None = None,
    data: dict[str, Any] | None = None,
) -> CaseEvent:
    """A step of the case's timeline (处理记录); the case counts as updated now."""
    event = CaseEvent(
        case_id=case.id,
        kind=kind,
        text=text,
        actor_id=actor.id if actor else None,
        data=data or {},
        created_at=utcnow(),
    )
    session.add(event)
    case.updated_at = event.created_at
    return event


# --- access ------------------------------------------------------------------------------------


def require_staff(user: StaffUser, what: str = "客服案件") -> None:
    if user.role not in (Role.agent, Role.supervisor, Role.admin):
        raise Forbidden(f"您的角色无权处理{what}")


def get_case(*, session: Session, user: StaffUser, case_id: int) -> Case:
    """A case the user may see: 404 when it does not exist, 403 when it is another community's."""
    require_staff(user)
    case = session.get(Case, case_id)
    if case is None or case.company_id != user.company_id:
        raise NotFound("案件不存在")
    require_community(session=session, user=user, community_id=case.community_id)
    return case


def require_holder(user: StaffUser, case: Case) -> None:
    """Who may act on a case: the agent holding it, a supervisor, or anyone when nobody holds it."""
    if user.role in (Role.supervisor, Role.admin):
        return
    if case.assignee_id not in (None, user.id):
        raise Forbidden("该案件由其他客服处理中，请先转交或请主管分配")


def require_active(case: Case) -> None:
    """Only an open or held case is worked on; a resolved or closed one is reopened first."""
    if not case.active:
        raise Conflict(f"案件{case.status.value}，请先重新打开")
