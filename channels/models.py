"""The conversation store: one conversation per resident session on a channel, every turn once.

The web chat page is the first channel; WeChat, the resident app and phone transcripts arrive
through the intake issue and land in the same tables.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow
from core.tenancy import Tenant


class Channel(enum.StrEnum):
    web = "web"
    wechat = "wechat"
    app = "app"
    phone = "phone"


class ConversationState(enum.StrEnum):
    assistant = "assistant"  # the assistant answers
    human = "human"  # handed to a person: the assistant only acknowledges
    closed = "closed"


class Conversation(Base):
    __tablename__ = "conversation"
    __tenant__ = Tenant.community()
    __table_args__ = (UniqueConstraint("community_id", "channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    channel: Mapped[Channel] = mapped_column(Enum(Channel, native_enum=False, length=16))
    external_id: Mapped[str] = mapped_column(String(128))  # the channel's session: web session id, openid…
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("resident.id", ondelete="SET NULL"))
    state: Mapped[ConversationState] = mapped_column(
        Enum(ConversationState, native_enum=False, length=16), default=ConversationState.assistant
    )
    # What the assistant is waiting for (e.g. the location of a work order) and the recent topic.
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        order_by="Message.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Sender(enum.StrEnum):
    resident = "resident"
    assistant = "assistant"
    agent = "agent"
    system = "system"


class Message(Base):
    __tablename__ = "message"
    __tenant__ = Tenant.via("conversation_id", "conversation")
    __table_args__ = (
        # A resent message (same client id) is stored once.
        UniqueConstraint("conversation_id", "client_id"),
        Index("ix_message_conversation_id_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"))
    sender: Mapped[Sender] = mapped_column(Enum(Sender, native_enum=False, length=16))
    text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(128))  # the channel's message id, for dedup
    # Assistant turns: the action taken, its citations and confidence, what it raised.
    action: Mapped[str | None] = mapped_column(String(16))
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    confidence: Mapped[float | None] = mapped_column(Float)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_case.id", ondelete="SET NULL"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id", ondelete="SET NULL"))
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("message.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


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
