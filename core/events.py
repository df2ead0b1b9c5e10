"""Work to do once a transaction has committed: enqueue a job, publish a live update.

A job enqueued or an event published before the commit could run against rows that are not
there yet (or never will be, after a rollback); these callbacks run only after a commit and are
dropped by a rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_KEY = "anju_after_commit"


def after_commit(session: Session, callback: Callable[[], Any]) -> None:
    """Run ``callback()`` after this session's transaction commits (never if it rolls back)."""
    session.info.setdefault(_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for callback in session.info.pop(_KEY, []):
        try:
            callback()
        except Exception:  # the data is committed; a lost notification is recovered by sweeps
            log.exception("after-commit callback %r failed", callback)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
