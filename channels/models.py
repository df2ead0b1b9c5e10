"""The intake's own tables: every inbound message stored once before it is acknowledged, and every
reply on its way out through the channel it answers. The conversation itself is conversations'."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from conversations.models import Channel
from core.db import Base, UTCDateTime, utcnow
from core.tenancy import Tenant


class InboundStatus(enum.StrEnum):
    accepted = "accepted"  # stored and acknowledged to the channel; not yet processed
    processing = "processing"  # a worker claimed it (claimed_at says when)
    done = "done"  # answered (or forwarded) and the reply handed to delivery
    failed = "failed"  # processing gave up; visible to agents


class InboundMessage(Base):
    """Every message a channel hands us, stored once before the channel is acknowledged.

    The database is the source of truth: the queue only says "process this id now", and the
    sweeper re-enqueues what was accepted but never processed (a dead worker, Redis restarted).
    """

    __tablename__ = "inbound_message"
    __tenant__ = Tenant.community()
    __table_args__ = (
        # WeChat's three retries, an app's resend, four concurrent deliveries: one row.
        UniqueConstraint("company_id", "channel", "external_id"),
        Index("ix_inbound_message_status_received_at", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    channel: Mapped[Channel] = mapped_column(Enum(Channel, native_enum=False, length=16))
    external_id: Mapped[str] = mapped_column(String(128))  # the channel's message id / idempotency key
    sender: Mapped[str] = mapped_column(String(128))  # the channel's user id (app user, openid, caller)
    account: Mapped[str | None] = mapped_column(String(64))  # which account received it (a WeChat key)
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # as the channel says
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[InboundStatus] = mapped_column(
        Enum(InboundStatus, native_enum=False, length=16), default=InboundStatus.accepted
    )
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversation.id", ondelete="SET NULL"))
    reply_message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"))


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    sending = "sending"  # an attempt is under way (attempted_at); only one sender holds it
    sent = "sent"
    failed = "failed"  # gave up after the last retry; visible to agents


class OutboundDelivery(Base):
    """A reply on its way out through the channel it answers (one per reply message)."""

    __tablename__ = "outbound_delivery"
    __tenant__ = Tenant.via("conversation_id", "conversation")
    __table_args__ = (
        UniqueConstraint("message_id"),
        Index("ix_outbound_delivery_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(Enum(Channel, native_enum=False, length=16))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id", ondelete="SET NULL"))
    recipient: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16), default=DeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
