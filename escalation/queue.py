"""The agents' queue: the lists of cases, and who holds a case: claiming one, a supervisor
assigning it, transferring it to a colleague or back to a skill group's queue, and cases whose
resident waits too long released back to the queue. Each agent holds a capped number of cases.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case as sql_case
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts.models import Role, StaffUser
from accounts.service import accessible_community_ids, require_community, works_in
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput
from core.settings import Settings
from core.tenancy import get_visible
from escalation.common import add_event, case_changed, get_case, require_active, require_holder, require_staff
from escalation.models import ACTIVE_STATUSES, Case, CaseCategory, CaseEventKind, CaseStatus, Priority
from org.models import Community

# The skill group that takes a category first (agents without skills take every group).
SKILL_OF = {CaseCategory.emergency: "应急", CaseCategory.complaint: "投诉", CaseCategory.repair: "工程"}
DEFAULT_SKILL = "客服"


def list_cases(
    *,
    session: Session,
    user: StaffUser,
    view: str = "queue",
    community_id: int | None = None,
    limit: int = 200,
) -> list[Case]:
    """``queue``: open cases nobody holds; ``mine``: the user's; ``active``: every open or held
    case; ``breached``: cases waiting for a supervisor; ``done``: resolved and closed. Ordered by
    priority, then the next SLA due time."""
    require_staff(user)
    ids = accessible_community_ids(session=session, user=user)
    if community_id is not None:
        require_community(session=session, user=user, community_id=community_id)
        ids = {community_id}
    priority_rank = sql_case(
        (Case.priority == Priority.urgent, 0), (Case.priority == Priority.important, 1), else_=2
    )
    next_due = sql_case((Case.first_response_at.is_(None), Case.first_response_due), else_=Case.resolve_due)
    stmt = select(Case).where(Case.company_id == user.company_id, Case.community_id.in_(ids))
    if view == "queue":
        stmt = stmt.where(Case.status == CaseStatus.open)
        if user.role is Role.agent and user.skills:
            stmt = stmt.where(Case.skill.in_(user.skills))
    elif view == "mine":
        stmt = stmt.where(Case.assignee_id == user.id, Case.status.in_(ACTIVE_STATUSES))
    elif view == "active":
        stmt = stmt.where(Case.status.in_(ACTIVE_STATUSES))
    elif view == "breached":
        stmt = stmt.where(Case.needs_supervisor.is_(True), Case.status.in_(ACTIVE_STATUSES))
    elif view == "done":
        stmt = stmt.where(Case.status.in_([CaseStatus.resolved, CaseStatus.closed]))
        return list(session.scalars(stmt.order_by(Case.updated_at.desc()).limit(limit)))
    else:
        raise InvalidInput(f"未知的列表：{view}")
    return list(session.scalars(stmt.order_by(priority_rank, next_due, Case.id).limit(limit)))


def _skills_ok(user: StaffUser, case: Case) -> bool:
    return user.role is not Role.agent or not user.skills or case.skill in user.skills


def _holding(session: Session, user_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.assignee_id == user_id, Case.status == CaseStatus.in_progress)
        )
        or 0
    )


def give_to(session: Session, settings: Settings, case: Case, agent: StaffUser, *, by: StaffUser) -> None:
    """``agent`` holds the case now: one of the company's active agents or supervisors, working in its
    community, below their cap of cases in progress."""
    if (
        agent.company_id != case.company_id
        or not agent.is_active
        or agent.role not in (Role.agent, Role.supervisor)
    ):
        raise InvalidInput("只能分配给本公司在岗的客服或主管")
    place = session.get(Community, case.community_id)
    if place is None or not works_in(agent, place):
        raise InvalidInput(f"{agent.display_name}不负责{place.name if place else '这个小区'}，不能分配给他")
    cap = settings.agent_max_open_cases
    if case.assignee_id != agent.id and _holding(session, agent.id) >= cap:
        who = "您" if agent.id == by.id else agent.display_name
        raise Conflict(f"{who}手上已有 {cap} 个处理中的案件，请先处理完再接新的")
    case.assignee_id = agent.id
    case.status = CaseStatus.in_progress
    case.claimed_at = utcnow()


def claim(*, session: Session, settings: Settings, user: StaffUser, case_id: int) -> Case:
    case = get_case(session=session, user=user, case_id=case_id)
    case = session.scalar(select(Case).where(Case.id == case.id).with_for_update()) or case
    if case.assignee_id == user.id and case.status is CaseStatus.in_progress:
        return case
    if case.status is not CaseStatus.open:
        holder = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
        raise Conflict(
            f"案件已被{holder.display_name}接手" if holder else f"案件状态为{case.status.value}，不能接手"
        )
    if not _skills_ok(user, case):
        raise Forbidden(f"该案件属于「{case.skill}」组")
    give_to(session, settings, case, user, by=user)
    add_event(session, case, CaseEventKind.claimed, f"{user.display_name} 接手", actor=user)
    case_changed(session, settings, case, "claimed")
    return case


def assign(
    *, session: Session, settings: Settings, user: StaffUser, case_id: int, agent_id: int, note: str = ""
) -> Case:
    """A supervisor gives a case to an agent (reassignment included)."""
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管可以分配案件")
    case = get_case(session=session, user=user, case_id=case_id)
    agent = get_visible(session, StaffUser, agent_id, label="客服账号")
    require_active(case)
    previous = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
    give_to(session, settings, case, agent, by=user)
    text = f"{user.display_name} 分配给 {agent.display_name}" + (
        f"（原：{previous.display_name}）" if previous else ""
    )
    add_event(
        session,
        case,
        CaseEventKind.assigned,
        text + (f"：{note}" if note else ""),
        actor=user,
        data={"agent_id": agent.id},
    )
    case_changed(session, settings, case, "assigned")
    return case


def transfer(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    case_id: int,
    note: str,
    agent_id: int | None = None,
    skill: str | None = None,
) -> Case:
    """Hand a case on, with a note for whoever takes it: to a colleague, or back to a skill
    group's queue."""
    case = get_case(session=session, user=user, case_id=case_id)
    agent = get_visible(session, StaffUser, agent_id, label="客服账号") if agent_id is not None else None
    require_active(case)
    require_holder(user, case)
    if not note.strip():
        raise InvalidInput("转交时请写明原因和进展，方便接手的同事")
    if (agent_id is None) == (skill is None):
        raise InvalidInput("请选择转交给哪位同事，或转回哪个技能组的队列")
    if agent is not None:
        give_to(session, settings, case, agent, by=user)
        target = agent.display_name
    else:
        case.skill = (skill or DEFAULT_SKILL)[:16]
        case.assignee_id, case.status, case.claimed_at = None, CaseStatus.open, None
        target = f"「{case.skill}」组队列"
    add_event(
        session,
        case,
        CaseEventKind.transferred,
        f"{user.display_name} 转交给 {target}：{note.strip()}",
        actor=user,
        data={"agent_id": agent_id, "skill": skill},
    )
    case_changed(session, settings, case, "transferred")
    return case


def release_idle(*, session: Session, settings: Settings, now: datetime | None = None) -> list[int]:
    """Periodic: a case whose resident has waited past the threshold while an agent holds it goes
    back to the queue, so someone else can answer."""
    now = now or utcnow()
    limit = now - timedelta(minutes=settings.case_idle_minutes)
    idle = session.scalars(
        select(Case).where(
            Case.status == CaseStatus.in_progress,
            Case.assignee_id.is_not(None),
            Case.waiting_since.is_not(None),
            Case.waiting_since < limit,
            Case.claimed_at < limit,
        )
    ).all()
    for case in idle:
        holder = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
        case.assignee_id, case.status, case.claimed_at = None, CaseStatus.open, None
        minutes = int((now - (case.waiting_since or now)).total_seconds() // 60)
        add_event(
            session,
            case,
            CaseEventKind.released,
            f"住户已等待 {minutes} 分钟无人回复，案件从{holder.display_name if holder else '客服'}处退回队列",
        )
        case_changed(session, settings, case, "released")
    return [c.id for c in idle]
