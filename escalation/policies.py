"""Configuration a supervisor or admin sets: the SLA times per category, a community's emergency
duty chain (its group robots by admins only), and canned replies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import Role, StaffUser
from accounts.service import require_community
from core.errors import Forbidden, InvalidInput
from core.outbound import OutboundPolicy, check_url
from core.settings import Settings
from escalation.models import CannedReply, CaseCategory, DutyContact, SlaPolicy
from escalation.paging import duty_chain
from escalation.sla import Sla, case_priority, policy


def _manager(user: StaffUser) -> None:
    if user.role not in (Role.supervisor, Role.admin):
        raise Forbidden("只有主管或管理员可以修改")


def sla_policies(*, session: Session, user: StaffUser) -> dict[CaseCategory, Sla]:
    """Every category's times as they apply to this company (its own, or the default)."""
    return {
        c: policy(session=session, company_id=user.company_id, category=c, priority=case_priority(c))
        for c in CaseCategory
    }


def set_sla_policy(
    *,
    session: Session,
    settings: Settings,
    user: StaffUser,
    category: CaseCategory,
    first_response: timedelta,
    resolve: timedelta,
    remind_before: timedelta,
) -> SlaPolicy:
    _manager(user)
    if not timedelta(0) < first_response <= resolve:
        raise InvalidInput("首次响应时限应大于 0 且不长于办结时限")
    if not timedelta(0) <= remind_before < first_response:
        raise InvalidInput("提前提醒应短于首次响应时限")
    row = session.scalar(
        select(SlaPolicy).where(SlaPolicy.company_id == user.company_id, SlaPolicy.category == category)
    )
    if row is None:
        row = SlaPolicy(company_id=user.company_id, category=category)
        session.add(row)
    row.first_response_seconds = int(first_response.total_seconds())
    row.resolve_seconds = int(resolve.total_seconds())
    row.remind_before_seconds = int(remind_before.total_seconds())
    session.flush()
    return row


ROBOT_FIELDS = ("robot_kind", "robot_url", "robot_secret")


def set_duty_chain(
    *,
    session: Session,
    user: StaffUser,
    community_id: int,
    steps: list[dict[str, Any]],
    policy: OutboundPolicy,
) -> list[DutyContact]:
    """Replace a community's emergency chain (step 0 is paged first).

    A group robot's URL makes the server post to it, so only an admin sets one (checked against
    the outbound policy now, and again at every page). A supervisor edits the people, phones and
    minutes: a step without ``robot_url`` keeps the robot stored at its level; ``""`` removes it.
    """
    _manager(user)
    require_community(session=session, user=user, community_id=community_id)
    old = duty_chain(session=session, community_id=community_id)
    stored = {c.level: {f: getattr(c, f) for f in ROBOT_FIELDS} for c in old}
    rows = []
    for level, step in enumerate(steps):
        step = dict(step)
        if any(step.get(f) is not None for f in ROBOT_FIELDS):
            if user.role is not Role.admin:
                raise Forbidden(
                    "只有管理员可以设置值班链的群机器人（robot_url）；主管可修改值班人员、手机号和确认时限"
                )
            if step.get("robot_url") is None:
                raise InvalidInput(f"第 {level + 1} 级：修改群机器人时请同时填写群机器人地址（robot_url）")
        if step.get("robot_url") is None:
            step.update(stored.get(level) or dict.fromkeys(ROBOT_FIELDS))
        elif not step["robot_url"].strip():
            step.update(dict.fromkeys(ROBOT_FIELDS))
        else:
            if not step.get("robot_kind"):
                raise InvalidInput(f"第 {level + 1} 级：请选择群机器人类型（robot_kind）")
            step["robot_url"] = check_url(
                step["robot_url"], policy=policy, field=f"第 {level + 1} 级群机器人地址（robot_url）"
            )
        if not (step.get("phone") or step.get("robot_url")):
            raise InvalidInput(f"第 {level + 1} 级：请填写手机号或群机器人地址")
        rows.append(DutyContact(community_id=community_id, level=level, **step))
    for contact in old:
        session.delete(contact)
    session.flush()
    session.add_all(rows)
    session.flush()
    return rows


def canned_replies(
    *, session: Session, user: StaffUser, community_id: int | None = None
) -> list[CannedReply]:
    stmt = select(CannedReply).where(CannedReply.company_id == user.company_id)
    if community_id is not None:
        require_community(session=session, user=user, community_id=community_id)
        stmt = stmt.where((CannedReply.community_id.is_(None)) | (CannedReply.community_id == community_id))
    return list(session.scalars(stmt.order_by(CannedReply.community_id.is_(None), CannedReply.id)))


def add_canned_reply(
    *, session: Session, user: StaffUser, title: str, text: str, community_id: int | None = None
) -> CannedReply:
    _manager(user)
    if community_id is not None:
        require_community(session=session, user=user, community_id=community_id)
    if not title.strip() or not text.strip():
        raise InvalidInput("标题和内容都不能为空")
    row = CannedReply(
        company_id=user.company_id, community_id=community_id, title=title.strip()[:64], text=text.strip()
    )
    session.add(row)
    session.flush()
    return row
