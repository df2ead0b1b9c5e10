"""Apply a side effect at most once, even when the job that applies it runs again."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import EffectRecord


def claim_effect(session: Session, key: str, *, job_id: str | None = None) -> bool:
    """Record ``key`` in the current transaction; False if it was already applied.

    Call it in the same transaction as the effect: if the transaction rolls back (the worker
    died), the claim goes with it and the retried job applies the effect once.
    """
    if session.get(EffectRecord, key) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(EffectRecord(key=key, job_id=job_id))
    except IntegrityError:
        return False
    return True
