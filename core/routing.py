"""The route class of every router: a sync view's request session commits in the view's own
thread, as the view returns.

FastAPI runs a sync view in one thread-pool trip and validates its response in another, and the
session dependency commits only after both. On SQLite a view that wrote holds the write lock
across those trips; when every pool thread waits for that lock, the holder waits for a thread and
the whole API stalls until the busy timeout. Committing at the end of the view itself releases
the lock before any further trip. (Async views validate on the event loop: nothing to do.)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import Session


def _commit_on_return(view: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(
        view, eval_str=True
    )  # resolved here: the wrapper's module has none of its names

    @functools.wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = view(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session) and value.in_transaction():
                value.commit()  # an error raised above skips this: the dependency rolls back
        return result

    run.__signature__ = signature  # type: ignore[attr-defined]
    return run


class CommittingRoute(APIRoute):
    """The endpoint itself is wrapped (not the route's dependant): an included router rebuilds
    its routes from ``route.endpoint``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _commit_on_return(endpoint)
        super().__init__(path, endpoint, **kwargs)
