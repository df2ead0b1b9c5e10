"""Signals between domains: a person's message reaches channels' delivery in the same transaction,
once however often the receivers are connected, and a process that forgot to connect them is
stopped loudly instead of dropping the reply."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anju import wiring
from channels.models import OutboundDelivery
from channels.service import deliver_posted
from conversations import service as conversations
from conversations.models import Channel, Message
from conversations.signals import message_posted
from core.db import get_database
from core.settings import Settings
from org.models import Community

SAID = "您好，已安排师傅下午上门"


@pytest.fixture
def unwired() -> Iterator[None]:
    message_posted.disconnect(deliver_posted)
    try:
        yield
    finally:
        wiring.connect()


def _conversation_on(settings: Settings, channel: Channel) -> int:
    with get_database(settings).session() as session:
        place = session.scalars(select(Community).where(Community.code == "cuihu")).one()
        return conversations.find_or_open(
            session, community=place, channel=channel, external_id=f"{channel.value}-user-0001"
        ).id


def _counts(settings: Settings, conversation_id: int) -> tuple[int, int]:
    with get_database(settings).session(readonly=True) as session:
        messages = session.scalar(
            select(func.count(Message.id)).where(Message.conversation_id == conversation_id)
        )
        deliveries = session.scalar(
            select(func.count(OutboundDelivery.id)).where(OutboundDelivery.conversation_id == conversation_id)
        )
        return int(messages or 0), int(deliveries or 0)


def test_a_posted_message_gets_one_delivery_in_its_transaction(demo: Settings) -> None:
    wiring.connect()
    wiring.connect()  # the app factory, the CLI and the test session all connect: still one receiver
    assert message_posted.receivers.count(deliver_posted) == 1
    conversation_id = _conversation_on(demo, Channel.app)
    with get_database(demo).session() as session:
        conversation = conversations.find(
            session, community_id=_community_id(session), channel=Channel.app, external_id="app-user-0001"
        )
        assert conversation is not None
        conversations.post_message(
            session=session, settings=demo, conversation=conversation, text="您好，已安排"
        )
        session.rollback()  # a rollback takes the message and its delivery with it
    assert _counts(demo, conversation_id) == (0, 0)
    with get_database(demo).session() as session:
        conversation = conversations.find(
            session, community_id=_community_id(session), channel=Channel.app, external_id="app-user-0001"
        )
        assert conversation is not None
        conversations.post_message(
            session=session, settings=demo, conversation=conversation, text="您好，已安排"
        )
    assert _counts(demo, conversation_id) == (1, 1)


def test_posting_without_a_delivery_connected_is_refused_and_stores_nothing(
    demo: Settings, unwired: None
) -> None:
    conversation_id = _conversation_on(demo, Channel.wechat)
    with get_database(demo).session() as session, pytest.raises(RuntimeError, match=r"anju\.wiring"):
        conversation = conversations.find(
            session,
            community_id=_community_id(session),
            channel=Channel.wechat,
            external_id="wechat-user-0001",
        )
        assert conversation is not None
        conversations.post_message(session=session, settings=demo, conversation=conversation, text="您好")
    assert _counts(demo, conversation_id) == (0, 0)


def _community_id(session: Session) -> int:
    return int(session.scalars(select(Community.id).where(Community.code == "cuihu")).one())
