"""The operations on a resident's conversation. The only writer of conversations and messages.

- find or open a conversation (the resident behind the channel's id resolved from the directory);
- add a resident's message, an assistant's reply, a person's message (``post_message``, which
  tells channels' delivery through ``signals.message_posted``);
- hand it to a person and back, with the hand-over's expiry;
- what it remembers between turns (``ConversationContext``), read and written typed;
- the resident's history across channels, and a community's export.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations.models import (
    Channel,
    Conversation,
    ConversationContext,
    ConversationState,
    Message,
    Sender,
)
from conversations.signals import MessagePosted, message_posted
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from core.events import after_commit
from core.settings import Settings
from org.models import Community, IdentityKind, Resident, ResidentIdentity

log = logging.getLogger(__name__)

HANDOVER_EXPIRES = timedelta(hours=24)  # a hand-off nobody answered for a day returns to the assistant


# --- what it remembers -------------------------------------------------------------------------


def context_of(conversation: Conversation) -> ConversationContext:
    return ConversationContext.from_json(conversation.context)


def set_context(conversation: Conversation, context: ConversationContext) -> None:
    conversation.context = context.to_json()


def remember(conversation: Conversation, **changes: Any) -> ConversationContext:
    """Change some of what the conversation remembers (``None`` forgets a field)."""
    context = replace(context_of(conversation), **changes)
    set_context(conversation, context)
    return context


# --- finding and opening -----------------------------------------------------------------------


def find(
    session: Session, *, community_id: int, channel: Channel, external_id: str, lock: bool = False
) -> Conversation | None:
    """The conversation of this channel session. ``lock``: FOR UPDATE, so turns of one
    conversation are stored one after another (PostgreSQL; SQLite writers are serialised already)
    and its context and hand-offs are never overwritten."""
    query = select(Conversation).where(
        Conversation.community_id == community_id,
        Conversation.channel == channel,
        Conversation.external_id == external_id,
    )
    return session.scalar(query.with_for_update() if lock else query)


def find_or_open(
    session: Session,
    *,
    community: Community,
    channel: Channel,
    external_id: str,
    created_at: datetime | None = None,
    sender: str | None = None,
) -> Conversation:
    """The channel session's conversation, locked, opened if new; linked to the directory's
    resident as soon as the directory knows the channel's user id (``sender``; the session id
    itself where the channel has one per user: an openid, an app user; a call's is its caller)."""
    conversation = find(
        session, community_id=community.id, channel=channel, external_id=external_id, lock=True
    )
    if conversation is None:
        now = utcnow()
        conversation = Conversation(
            company_id=community.company_id, community_id=community.id, channel=channel,
            external_id=external_id, context={}, created_at=created_at or now, last_message_at=now,
        )  # fmt: skip
        session.add(conversation)
        session.flush()
    if conversation.resident_id is None:  # new, or the directory has learnt this id since
        conversation.resident_id = resolve_resident(session, community.id, channel, sender or external_id)
    return conversation


# --- messages ----------------------------------------------------------------------------------


def add_message(
    session: Session,
    *,
    conversation: Conversation,
    sender: Sender,
    text: str,
    client_id: str | None = None,
    created_at: datetime | None = None,
    **details: Any,
) -> Message:
    """A message stored in the conversation (``details``: the assistant's action, citations,
    confidence, the case or work order it raised, the message it replies to)."""
    message = Message(conversation_id=conversation.id, sender=sender, text=text, client_id=client_id,
                      **details)  # fmt: skip
    if created_at is not None:  # a call's utterances, stored at their time into the call
        message.created_at = created_at
    else:
        conversation.last_message_at = utcnow()
    session.add(message)
    session.flush()
    return message


def answered(
    session: Session, *, conversation_id: int, client_id: str
) -> tuple[Message, Message | None] | None:
    """The resident's message with this channel message id and the reply stored for it (None
    when nothing was said: a person held the conversation); None when it was never stored."""
    inbound = session.scalar(
        select(Message).where(Message.conversation_id == conversation_id, Message.client_id == client_id)
    )
    if inbound is None:
        return None
    return inbound, session.scalar(select(Message).where(Message.reply_to_id == inbound.id))


def recent(session: Session, *, conversation_id: int, limit: int) -> list[Message]:
    """The newest ``limit`` messages, oldest first."""
    rows = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def post_message(
    *,
    session: Session,
    settings: Settings,
    conversation: Conversation,
    text: str,
    sender: Sender = Sender.agent,
    action: str | None = None,
    case_id: int | None = None,
) -> Message:
    """A message from a person (an agent's reply, a survey) into the conversation, on its way to
    the resident on the channel they used once the transaction commits: the web chat page over
    its live stream; WeChat and the app through channels' delivery, which receives
    ``message_posted``. A phone call cannot be answered in writing: call back."""
    from core.live import conversation_topic, publish

    text = text.strip()
    if not text:
        raise InvalidInput("回复内容不能为空")
    if conversation.channel is Channel.phone:
        raise InvalidInput("电话渠道无法发送文字回复，请回电给住户")
    if conversation.channel is not Channel.web and not message_posted.receivers:
        # A process that posts without a delivery connected would drop the reply silently.
        raise RuntimeError("conversations.message_posted has no receiver: call anju.wiring.connect() first")
    message = add_message(
        session, conversation=conversation, sender=sender, text=text, action=action, case_id=case_id
    )
    message_posted.send(
        session,
        settings,
        MessagePosted(
            conversation_id=conversation.id, message_id=message.id, company_id=conversation.company_id,
            community_id=conversation.community_id, channel=conversation.channel,
            external_id=conversation.external_id, sender=sender, text=text, action=action, case_id=case_id,
        ),
    )  # fmt: skip
    event = {"type": "message", "conversation_id": conversation.id, "message_id": message.id}
    conversation_id = conversation.id
    after_commit(session, lambda: publish(settings, conversation_topic(conversation_id), event))
    return message


# --- who answers: the assistant or a person ----------------------------------------------------


def held(conversation: Conversation, *, now: datetime | None = None) -> bool:
    """A person holds the conversation (and the hand-over has not expired)."""
    return (
        conversation.state is ConversationState.human
        and (now or utcnow()) - conversation.last_message_at <= HANDOVER_EXPIRES
    )


def expire_hand_over(conversation: Conversation, *, now: datetime | None = None) -> None:
    """A day of silence after a hand-over: the assistant is back."""
    now = now or utcnow()
    if (
        conversation.state is ConversationState.human
        and now - conversation.last_message_at > HANDOVER_EXPIRES
    ):
        conversation.state = ConversationState.assistant


def hand_over(conversation: Conversation) -> None:
    """A person answers now; the assistant stays out of the way."""
    conversation.state = ConversationState.human


def hand_back(conversation: Conversation) -> None:
    """The person is done: the assistant answers again."""
    conversation.state = ConversationState.assistant


def close(conversation: Conversation) -> None:
    """Nothing more to answer (a call with nothing to follow up)."""
    conversation.state = ConversationState.closed


# --- who is writing: one resident across channels ----------------------------------------------

IDENTITY_OF: dict[Channel, IdentityKind] = {
    Channel.wechat: IdentityKind.wechat_openid,
    Channel.app: IdentityKind.app_user_id,
    Channel.phone: IdentityKind.mobile,
}


def resolve_resident(session: Session, community_id: int, channel: Channel, sender: str) -> int | None:
    """The directory's resident behind a channel's user id (openid, app user, caller number);
    None for a stranger or the anonymous web page."""
    from org.service import find_resident

    kind = IDENTITY_OF.get(channel)
    if kind is None or not sender:
        return None
    try:
        resident = find_resident(session=session, community_id=community_id, kind=kind, value=sender)
    except InvalidInput:  # a caller id that is not a mobile number (a landline, "anonymous")
        return None
    return resident.id if resident is not None else None


def same_person(session: Session, resident_id: int) -> list[int]:
    """The directory entries of one person: this resident and, in the same company, every entry
    with the same mobile number (an owner of two flats, a record per channel)."""
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise NotFound("住户不存在")
    mobile = resident.identity(IdentityKind.mobile)
    if not mobile:
        return [resident.id]
    company_id = session.scalar(select(Community.company_id).where(Community.id == resident.community_id))
    ids = session.scalars(
        select(ResidentIdentity.resident_id)
        .join(Community, Community.id == ResidentIdentity.community_id)
        .where(
            ResidentIdentity.kind == IdentityKind.mobile,
            ResidentIdentity.value == mobile,
            Community.company_id == company_id,
        )
    )
    return sorted({resident.id, *ids})


def resident_history(
    session: Session, resident_id: int, *, limit: int = 200
) -> list[tuple[Message, Conversation]]:
    """One history for one person across web, WeChat, app and phone: the newest ``limit``
    messages of every conversation linked to them, oldest first."""
    people = same_person(session, resident_id)
    rows = session.execute(
        select(Message, Conversation)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.resident_id.in_(people))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    ).all()
    return [(m, c) for m, c in reversed(rows)]


EXPORT_LIMIT = 100_000


def export_rows(
    session: Session, community_id: int, *, since: datetime | None = None, until: datetime | None = None
) -> list[tuple[Message, Conversation]]:
    """A community's messages in time order, for an export (at most EXPORT_LIMIT)."""
    query = (
        select(Message, Conversation)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.community_id == community_id)
    )
    if since is not None:
        query = query.where(Message.created_at >= since)
    if until is not None:
        query = query.where(Message.created_at < until)
    rows = session.execute(query.order_by(Message.created_at, Message.id).limit(EXPORT_LIMIT)).all()
    return [(m, c) for m, c in rows]
