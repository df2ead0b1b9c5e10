"""Tables the core owns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class EffectRecord(Base):
    """One row per side effect already applied: written in the same transaction as the effect,
    so a job that runs again after its worker died does not apply it twice."""

    __tablename__ = "effect_record"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
