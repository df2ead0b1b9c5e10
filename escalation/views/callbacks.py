"""Call-backs: residents to call back after a phone call, and marking one done."""

from __future__ import annotations

from fastapi import APIRouter, Query

from accounts.deps import CurrentUser
from core.db import utcnow
from core.deps import SessionDep
from core.routing import CommittingRoute
from core.types import PathId, QueryId
from escalation import callbacks, schemas
from escalation.models import CallbackStatus, CallbackTask

router = APIRouter(tags=["console"], route_class=CommittingRoute)


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
    tasks = callbacks.list_callbacks(
        session=session, user=user, community_id=community_id, pending_only=pending
    )
    return [_callback_read(t) for t in tasks]


@router.post("/api/callbacks/{task_id}/done", response_model=schemas.CallbackRead)
def finish_callback(
    task_id: PathId, body: schemas.CallbackDone, user: CurrentUser, session: SessionDep
) -> schemas.CallbackRead:
    task = callbacks.finish_callback(
        session=session, user=user, task_id=task_id, status=CallbackStatus(body.status), note=body.note
    )
    return _callback_read(task)
