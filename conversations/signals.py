"""What the conversations domain tells the packages above it (connected in anju.wiring)."""

from __future__ import annotations

from dataclasses import dataclass

from conversations.models import Channel, Sender
from core.signals import Signal


@dataclass(frozen=True)
class MessagePosted:
    """A person's message (an agent's reply, a survey, a work order done) was added to a
    conversation and must reach the resident on the channel they used."""

    conversation_id: int
    message_id: int
    company_id: int
    community_id: int
    channel: Channel
    external_id: str  # the channel's session: web session id, openid, app user id
    sender: Sender
    text: str
    action: str | None
    case_id: int | None


# Channels' delivery connects here: it stores the outbound delivery in the same transaction and
# enqueues it after the commit. The web page needs no delivery (its live stream is told directly).
message_posted: Signal[MessagePosted] = Signal("conversations.message_posted")
