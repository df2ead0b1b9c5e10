"""A resident's conversation: one per resident session on a channel, every turn stored once.

The conversations domain owns these tables: channels, the assistant's flows and escalation read
them and change them only through conversations.service.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields
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
    # What the conversation remembers between turns (ConversationContext, through the service).
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


@dataclass(frozen=True)
class ConversationContext:
    """What a conversation remembers between turns, typed: the protocol between the assistant's
    flow and escalation (a survey awaited, a work order's missing address…). Stored as JSON in
    ``Conversation.context``; read and written only through conversations.service."""

    topic: str | None = None  # the last question answered: "那要多久？" is asked about it
    failures: int = 0  # turns in a row the assistant could not answer (two hand over)
    awaiting_location: int | None = None  # a work order registered without an address
    awaiting_survey: int | None = None  # a survey was sent: the next message may be its score
    survey_comment: int | None = None  # a low score came without a comment: the next message is it
    survey_answered: int | None = None  # answered: a second tap on a score is thanked
    acknowledged: int | None = None  # the held case whose follow-ups were acknowledged once

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ConversationContext:
        """From the stored JSON: unknown keys (an older or newer release) are ignored, and a value
        of the wrong type is dropped rather than trusted."""
        data = data or {}
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            if f.name == "topic":
                values[f.name] = str(value)[:200]
            elif isinstance(value, int | float | str) and str(value).lstrip("-").isdigit():
                values[f.name] = int(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != 0}
