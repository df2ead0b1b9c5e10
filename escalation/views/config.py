"""Configuration: SLA policies per category, a community's duty chain, canned replies."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from accounts.deps import CurrentUser
from accounts.service import require_community
from core.deps import SessionDep, SettingsDep
from core.errors import NotFound
from core.masking import mask_mobile
from core.outbound import outbound_policy
from core.routing import CommittingRoute
from core.types import PathId, QueryId
from escalation import paging, policies, schemas
from escalation.models import CaseCategory

router = APIRouter(tags=["console"], route_class=CommittingRoute)


@router.get("/api/sla-policies", response_model=list[schemas.SlaPolicyRead])
def sla_policies(user: CurrentUser, session: SessionDep) -> list[schemas.SlaPolicyRead]:
    return [
        schemas.SlaPolicyRead(
            category=c.value,
            first_response_minutes=s.first_response.total_seconds() / 60,
            resolve_minutes=s.resolve.total_seconds() / 60,
            remind_before_minutes=s.remind_before.total_seconds() / 60,
        )
        for c, s in policies.sla_policies(session=session, user=user).items()
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
    policies.set_sla_policy(
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
        for d in paging.duty_chain(session=session, community_id=community_id)
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
    policies.set_duty_chain(session=session, user=user, community_id=community_id, steps=steps,
                            policy=outbound_policy(settings))  # fmt: skip
    return get_duty_chain(community_id, user, session)


@router.get("/api/canned-replies", response_model=list[schemas.CannedReplyRead])
def canned_replies(
    user: CurrentUser, session: SessionDep, community_id: QueryId = None
) -> list[schemas.CannedReplyRead]:
    return [
        schemas.CannedReplyRead(id=r.id, community_id=r.community_id, title=r.title, text=r.text)
        for r in policies.canned_replies(session=session, user=user, community_id=community_id)
    ]


@router.post("/api/canned-replies", response_model=schemas.CannedReplyRead, status_code=201)
def add_canned_reply(
    body: schemas.CannedReplyCreate, user: CurrentUser, session: SessionDep
) -> schemas.CannedReplyRead:
    r = policies.add_canned_reply(
        session=session, user=user, title=body.title, text=body.text, community_id=body.community_id
    )
    return schemas.CannedReplyRead(id=r.id, community_id=r.community_id, title=r.title, text=r.text)
