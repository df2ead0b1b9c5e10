"""The console's live stream: server-sent events when a case of the user's communities changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from accounts.deps import get_current_user
from accounts.models import StaffUser
from accounts.service import accessible_community_ids
from core.deps import SettingsDep
from core.live import company_topic, stream
from core.routing import CommittingRoute
from escalation import common

router = APIRouter(tags=["console"], route_class=CommittingRoute)


@router.get("/api/console/stream")
async def console_stream(
    request: Request, settings: SettingsDep, user: Annotated[StaffUser, Depends(get_current_user)]
) -> StreamingResponse:
    """Server-sent events: a case of the user's communities changed (the page refetches it)."""
    from fastapi.concurrency import run_in_threadpool

    common.require_staff(user)
    database = request.app.state.database

    def communities() -> set[int]:
        with database.session(readonly=True) as session:
            return accessible_community_ids(session=session, user=session.get(StaffUser, user.id) or user)

    allowed = await run_in_threadpool(communities)
    events = stream(
        settings,
        [company_topic(user.company_id)],
        keep=lambda e: e.get("type") == "case" and e.get("community_id") in allowed,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
