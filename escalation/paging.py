"""Emergencies: the community's duty chain paged level by level until someone acknowledges (by
the link in the page, which needs no login, or in the console), and the notices that tell
supervisors about a breach or an emergency nobody took.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import StaffUser
from core import links
from core.db import utcnow
from core.errors import NotFound
from core.events import after_commit
from core.masking import mask_text
from core.settings import Settings
from escalation.common import add_event, case_changed
from escalation.models import Case, CaseEventKind, DutyContact
from escalation.sla import BEIJING
from org.models import Community


def duty_chain(*, session: Session, community_id: int) -> list[DutyContact]:
    return list(
        session.scalars(
            select(DutyContact).where(DutyContact.community_id == community_id).order_by(DutyContact.level)
        )
    )


def start_paging(session: Session, settings: Settings, case: Case) -> None:
    """An emergency: the first level of the duty chain is paged once the case is committed
    (``tasks.page_duty`` goes on down the chain until someone acknowledges)."""
    case.page_level = None
    case_id = case.id

    def page() -> None:
        from core.queue import enqueue

        enqueue(
            "escalation.tasks.page_duty",
            queue="high",
            job_id=f"page-{case_id}-0",
            settings=settings,
            case_id=case_id,
            level=0,
        )

    after_commit(session, page)


def ack_token(settings: Settings, case_id: int, *, issued_at: datetime | None = None) -> str:
    """The link in a page lets whoever receives it acknowledge without logging in, for
    ``ack_link_hours`` (core.links)."""
    return links.sign(settings, "ack", case_id, issued_at=issued_at)


def case_for_ack_token(*, session: Session, settings: Settings, token: str) -> Case:
    """The case a valid link names; NotFound for any other token, LinkExpired for an old one."""
    case = session.get(Case, links.verify(settings, "ack", token))
    if case is None:
        raise NotFound(links.INVALID)
    return case


@dataclass
class Page:
    """One step of paging: whom to notify now, and when to check for the acknowledgement."""

    case_id: int
    level: int
    contact: DutyContact | None  # None: the chain is exhausted (or empty): the supervisors are told
    next_check: timedelta | None
    title: str
    text: str


def page_step(*, session: Session, settings: Settings, case_id: int, level: int) -> Page | None:
    """Record that level ``level`` of the chain is paged now (None when nothing is to be paged:
    acknowledged, resolved, or already paged at this level)."""
    case = session.scalar(select(Case).where(Case.id == case_id).with_for_update())
    if case is None or case.acknowledged_at is not None or not case.active:
        return None
    if case.page_level is not None and case.page_level >= level:
        return None  # a retried job: this level was paged already
    chain = duty_chain(session=session, community_id=case.community_id)
    contact = chain[level] if level < len(chain) else None
    case.page_level = level

    place = session.get(Community, case.community_id)
    where = place.name if place else ""
    title = f"【紧急】{where} {case.emergency_kind or case.category.value}（案件 {case.id}）"
    link = f"{settings.base_url}/ack/{ack_token(settings, case.id)}"
    head = f"### {title}\n\n{_masked_summary(case.summary)}\n\n"
    if contact is not None:
        seconds = contact.ack_seconds
        within = f"{seconds // 60} 分钟" if seconds >= 60 else f"{seconds} 秒"
        text = f"{head}请在 {within}内确认：[我来处理]({link})"
    else:
        text = f"{head}值班链已全部通知仍无人确认，请主管立即安排：[确认]({link})"
    if contact is not None:
        add_event(
            session,
            case,
            CaseEventKind.paged,
            f"已通知第 {level + 1} 级值班：{contact.name}",
            data={"level": level, "contact": contact.name},
        )
    else:
        case.needs_supervisor = True
        add_event(
            session,
            case,
            CaseEventKind.paged,
            "值班链无人确认，已通知主管" if chain else "本小区未配置值班链，已通知主管",
            data={"level": level, "exhausted": True},
        )
    case_changed(session, settings, case, "paged")
    return Page(
        case.id, level, contact, timedelta(seconds=contact.ack_seconds) if contact else None, title, text
    )


def acknowledge(
    *, session: Session, settings: Settings, case: Case, by: str, actor: StaffUser | None = None
) -> Case:
    """Someone took the emergency: the chain stops here."""
    if case.acknowledged_at is not None:
        return case
    case.acknowledged_at = utcnow()
    case.acknowledged_by = by[:64]
    if case.first_response_at is None:
        case.first_response_at = case.acknowledged_at
    add_event(session, case, CaseEventKind.acknowledged, f"{by} 已确认，开始处置", actor=actor)
    case_changed(session, settings, case, "acknowledged")
    return case


def note_page_failure(
    *, session: Session, settings: Settings, case_id: int, level: int, errors: list[str]
) -> None:
    case = session.get(Case, case_id)
    if case is not None:
        add_event(
            session,
            case,
            CaseEventKind.paged,
            f"第 {level + 1} 级值班通知发送失败：{'；'.join(errors)}"[:500],
            data={"level": level, "failed": True},
        )
        case_changed(session, settings, case, "page_failed")


def supervisor_notice(
    *, session: Session, settings: Settings, case_id: int, kind: str
) -> tuple[str, str] | None:
    """(title, markdown) telling supervisors about a breach or an unacknowledged emergency; None
    when the case no longer needs them (resolved meanwhile)."""

    case = session.get(Case, case_id)
    if case is None or not case.active:
        return None
    place = session.get(Community, case.community_id)
    holder = session.get(StaffUser, case.assignee_id) if case.assignee_id else None
    what = {
        "response_breach": "首次响应超时",
        "resolve_breach": "办结超时",
        "unacknowledged": "紧急事件无人确认",
    }.get(kind, kind)
    where = place.name if place else ""
    title = f"【{what}】{where} 案件 {case.id}（{case.category.value}·{case.priority.value}）"
    due = case.first_response_due if kind == "response_breach" else case.resolve_due
    lines = [
        f"### {title}",
        f"- 处理人：{holder.display_name if holder else '未分配'}",
        f"- 应完成时间：{due.astimezone(BEIJING).strftime('%m-%d %H:%M')}",
        f"- 摘要：{_masked_summary(case.summary)[-200:]}",
        f"- 查看：{settings.base_url}/console?case={case.id}",
    ]
    return title, "\n".join(lines)


def _masked_summary(summary: str) -> str:
    return mask_text(summary[-600:])
