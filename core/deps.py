"""FastAPI dependencies shared by every domain's views."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core import tenancy
from core.db import Database
from core.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request: committed when the view returns, rolled back when it raises.

    GET and HEAD requests read only (HTTP says they must not change anything), so they get a
    read-only session that never waits behind a writer on SQLite.

    An async dependency on purpose: the commit runs on the event loop as soon as the view returns
    (a few milliseconds), never in a second trip through the thread pool. A write transaction
    that had to wait for a free pool thread to commit would hold SQLite's write lock while every
    pool thread waits for that lock: the whole API would stop until the busy timeout.
    """
    database: Database = request.app.state.database
    readonly = request.method in ("GET", "HEAD")
    session = (database.read_sessionmaker if readonly else database.sessionmaker)()
    # Once the caller is known (accounts.deps), this session sees only their tenant's rows.
    tenancy.scope_from(session, request.state)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_redis_dep(request: Request) -> redis.Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": commit before the response is sent, so a client that reads right after a
# write (or follows the login redirect) sees it. The default would commit after sending.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
RedisDep = Annotated[redis.Redis, Depends(get_redis_dep)]
