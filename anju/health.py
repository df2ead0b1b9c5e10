"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from rq import Worker
from sqlalchemy import text

from core.routing import CommittingRoute

router = APIRouter(tags=["health"], route_class=CommittingRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database and Redis answer; the number of live workers is reported too."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        # A read-only session: on SQLite it does not queue behind a writer for the lock.
        with request.app.state.database.session(readonly=True) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        ready = False
        checks["database"] = f"error: {type(exc).__name__}"
    connection: redis.Redis = request.app.state.redis
    try:
        connection.ping()
        checks["redis"] = "ok"
        checks["workers"] = Worker.count(connection=connection)
    except (redis.RedisError, OSError) as exc:
        ready = False
        checks["redis"] = f"error: {type(exc).__name__}"
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)
