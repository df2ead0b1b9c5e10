"""One intake for every channel: store each inbound message once, process it as a job, send the
reply back through the channel it came from.

Flow: a channel's endpoint checks the request, ``accept`` commits the normalised message (a
duplicate returns the stored one), the endpoint acknowledges, and ``request_processing``
enqueues ``process_inbound``. The database is the source of truth: when the enqueue fails or a
worker dies, ``sweep_inbound`` re-enqueues what was accepted and never processed. Processing is
idempotent (the assistant keys the turn by the channel's message id; one delivery per reply), so
running it twice stores one turn and sends one reply.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from channels.models import Channel, DeliveryStatus, InboundMessage, InboundStatus, OutboundDelivery
from core.db import get_database, utcnow
from core.errors import AnjuError, InvalidInput, NotFound
from core.masking import mask_text
from core.settings import Settings
from org.models import Community

log = logging.getLogger(__name__)


class DeliveryError(AnjuError):
    status_code = 502
    code = "delivery_failed"
    default_message = "回复未能送达"


def accept(
    session: Session,
    *,
    community: Community,
    channel: Channel,
    external_id: str,
    sender: str,
    text: str,
    attachments: list[dict[str, Any]] | None = None,
    sent_at: datetime | None = None,
    account: str | None = None,
    status: InboundStatus = InboundStatus.accepted,
) -> tuple[InboundMessage, bool]:
    """Store the message once (True: it was stored before). Commit before acknowledging."""
    key = (InboundMessage.company_id == community.company_id, InboundMessage.channel == channel,
           InboundMessage.external_id == external_id)  # fmt: skip
    existing = session.scalar(select(InboundMessage).where(*key))
    if existing is not None:
        return existing, True
    message = InboundMessage(
        company_id=community.company_id,
        community_id=community.id,
        channel=channel,
        external_id=external_id,
        sender=sender,
        account=account,
        text=text.strip(),
        attachments=attachments or [],
        sent_at=sent_at,
        status=status,
    )
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:  # the same message arriving at the same moment on another connection
        stored = session.scalar(select(InboundMessage).where(*key))
        assert stored is not None
        return stored, True
    log.info("%s message %s accepted from %s: %r", channel.value, external_id, mask_text(sender),
             mask_text(text)[:60])  # fmt: skip
    return message, False


def request_processing(settings: Settings, inbound_id: int) -> None:
    """Enqueue the processing job; without Redis the sweeper will, once Redis is back."""
    from channels import tasks
    from core.queue import enqueue

    try:
        enqueue(
            tasks.process_inbound, job_id=f"inbound-{inbound_id}", settings=settings, inbound_id=inbound_id
        )
    except (RedisError, OSError) as exc:
        log.warning("inbound message %s stored but not enqueued (%s): the sweeper will", inbound_id, exc)


def request_delivery(settings: Settings, delivery_id: int, *, delay: timedelta | None = None) -> None:
    from channels import tasks
    from core.queue import enqueue

    backoff = list(settings.delivery_backoff_seconds)
    retries = settings.delivery_max_attempts - 1
    retry = Retry(max=retries, interval=backoff) if backoff and retries >= 1 else None
    try:
        enqueue(tasks.deliver, job_id=f"delivery-{delivery_id}", retry=retry, settings=settings, delay=delay,
                delivery_id=delivery_id)  # fmt: skip
    except (RedisError, OSError) as exc:
        log.warning("delivery %s not enqueued (%s): the sweeper will", delivery_id, exc)


def process_inbound(settings: Settings, inbound_id: int) -> int | None:
    """The assistant's turn for one inbound message and its reply's delivery (its id; None when
    there is nothing to send). Safe to run again for the same message."""
    from assistant.service import Assistant

    database = get_database(settings)
    with database.session() as session:
        message = session.get(InboundMessage, inbound_id)
        if message is None:
            raise NotFound(f"inbound message {inbound_id} does not exist")
        if message.status is InboundStatus.done:
            return session.scalar(
                select(OutboundDelivery.id).where(OutboundDelivery.inbound_id == inbound_id)
            )
        message.status = InboundStatus.processing
        message.claimed_at = utcnow()
        message.attempts += 1
        community_id, channel, sender = message.community_id, message.channel, message.sender
        text = _turn_text(message.text, message.attachments)
        external_id = message.external_id
    try:
        result = Assistant(settings).turn(
            community=community_id, session_id=sender, text=text, channel=channel, client_id=external_id
        )
    except Exception as exc:
        permanent = isinstance(exc, InvalidInput)
        with database.session() as session:
            message = session.get(InboundMessage, inbound_id)
            assert message is not None
            message.error = f"{type(exc).__name__}: {exc}"[:1000]
            if permanent or message.attempts >= MAX_PROCESS_ATTEMPTS:
                message.status = InboundStatus.failed  # for agents to see; the sweeper leaves it
                log.error("inbound message %s failed for good: %s", inbound_id, message.error)
                return None
        raise

    with database.session() as session:
        message = session.get(InboundMessage, inbound_id)
        assert message is not None
        community = session.get(Community, community_id)
        assert community is not None
        delivery = session.scalar(
            select(OutboundDelivery).where(OutboundDelivery.message_id == result.message_id)
        )
        if delivery is None and result.message_id:
            delivery = OutboundDelivery(
                company_id=message.company_id,
                channel=channel,
                conversation_id=result.conversation_id,
                message_id=result.message_id,
                inbound_id=message.id,
                recipient=sender,
                payload={
                    "account": message.account,
                    "reply_to": external_id,
                    "community": community.code,
                    "user_id": sender,
                    "reply": result.reply,
                    "action": result.action.value,
                    "citations": [c.as_dict() for c in result.citations],
                    "case_id": result.case_id,
                    "work_order_id": result.work_order_id,
                    "emergency": result.emergency,
                    "duty_phone": result.duty_phone,
                    "suggestions": result.suggestions,
                },
            )
            try:
                with session.begin_nested():
                    session.add(delivery)
            except IntegrityError:  # another run of this job got there first
                delivery = session.scalar(
                    select(OutboundDelivery).where(OutboundDelivery.message_id == result.message_id)
                )
        message.status = InboundStatus.done
        message.processed_at = utcnow()
        message.conversation_id = result.conversation_id or None
        message.reply_message_id = result.message_id or None
        message.error = None
        delivery_id = delivery.id if delivery is not None else None
        pending = delivery is not None and delivery.status is DeliveryStatus.pending
        passive_until = message.received_at + timedelta(seconds=PASSIVE_WINDOW_SECONDS)
    if delivery_id is not None and pending:
        # WeChat: the request may still take the answer as its passive reply; the API sends it
        # only after WeChat has stopped waiting.
        wait = passive_until - utcnow() if channel is Channel.wechat else None
        request_delivery(settings, delivery_id, delay=wait if wait and wait.total_seconds() > 0 else None)
    return delivery_id


PASSIVE_WINDOW_SECONDS = 5  # WeChat waits this long for the answer to its request
MAX_PROCESS_ATTEMPTS = 5  # runs of process_inbound (rq retries and sweeps) before a message is failed


def claim_passive(settings: Settings, inbound_id: int, received_at: datetime) -> str | None:
    """The reply text, if this request may carry it: the delivery is still pending and WeChat is
    still waiting. Claimed atomically, so the API never sends it too. Looks first in a read-only
    session: a SQLite writer would hold the worker's write up while the request waits."""
    from sqlalchemy import update

    if utcnow() - received_at > timedelta(seconds=PASSIVE_WINDOW_SECONDS - 0.5):
        return None  # the API's turn: its job starts once WeChat has stopped waiting
    database = get_database(settings)
    with database.session(readonly=True) as session:
        found = session.execute(
            select(OutboundDelivery.id, OutboundDelivery.payload).where(
                OutboundDelivery.inbound_id == inbound_id, OutboundDelivery.status == DeliveryStatus.pending
            )
        ).first()
    if found is None:
        return None
    with database.session() as session:
        claimed = session.execute(
            update(OutboundDelivery)
            .where(OutboundDelivery.id == found.id, OutboundDelivery.status == DeliveryStatus.pending)
            .values(
                status=DeliveryStatus.sent,
                sent_at=utcnow(),
                attempts=OutboundDelivery.attempts + 1,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        )
        won = claimed.rowcount == 1  # type: ignore[attr-defined]
        if won and utcnow() - received_at > timedelta(seconds=PASSIVE_WINDOW_SECONDS - 0.5):
            session.rollback()  # too late after all (waited for the lock): the API job sends it
            return None
    return str(found.payload.get("reply", "")) if won else None


def _turn_text(text: str, attachments: list[dict[str, Any]]) -> str:
    """What the assistant reads: the text, or what an attachment says (a voice transcript, a
    place); a picture alone is described so the assistant asks what the resident needs."""
    from assistant.service import MAX_TEXT_CHARS

    if not text:
        spoken = [
            a.get("text") for a in attachments if a.get("type") in ("voice", "location") and a.get("text")
        ]
        text = " ".join(str(s) for s in spoken)
    return text[:MAX_TEXT_CHARS]  # a longer message is answered on its beginning, not refused


def deliver(settings: Settings, delivery_id: int) -> DeliveryStatus:
    """Send one reply through its channel. A failure raises (rq retries with backoff) until the
    last attempt, which marks the delivery failed for agents to see."""
    from sqlalchemy import update

    database = get_database(settings)
    with database.session() as session:
        delivery = session.get(OutboundDelivery, delivery_id)
        if delivery is None:
            raise NotFound(f"delivery {delivery_id} does not exist")
        # Take it: a passive WeChat reply (claim_passive) or another run of this job cannot send it too.
        taken = session.execute(
            update(OutboundDelivery)
            .where(OutboundDelivery.id == delivery_id, OutboundDelivery.status == DeliveryStatus.pending)
            .values(status=DeliveryStatus.sending, attempted_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            session.refresh(delivery)
            return delivery.status
        channel = delivery.channel
        body = json.dumps({"delivery_id": delivery.id, **delivery.payload}, ensure_ascii=False).encode()
    error: str | None = None
    permanent = False
    try:
        error, permanent = _send(settings, channel, delivery_id, body)
    except Exception as exc:  # any failure is an attempt, so the last one marks the delivery failed
        error = f"{type(exc).__name__}: {exc}"
    with database.session() as session:
        delivery = session.get(OutboundDelivery, delivery_id)
        assert delivery is not None
        delivery.attempts += 1
        if error is None:
            delivery.status, delivery.sent_at, delivery.last_error = DeliveryStatus.sent, utcnow(), None
            return DeliveryStatus.sent
        delivery.last_error = error
        if permanent or delivery.attempts >= settings.delivery_max_attempts:
            delivery.status = DeliveryStatus.failed
            log.error(
                "delivery %s failed for good after %d attempts: %s", delivery_id, delivery.attempts, error
            )
            return DeliveryStatus.failed
        delivery.status = DeliveryStatus.pending  # for the next retry
    log.warning("delivery %s attempt failed: %s", delivery_id, error)
    raise DeliveryError(error)


def _send(settings: Settings, channel: Channel, delivery_id: int, body: bytes) -> tuple[str | None, bool]:
    """(error, permanent) of one attempt through the channel's outbound adapter."""
    import httpx

    from channels.signing import signed_headers

    error: str | None = None
    permanent = False
    if channel is Channel.app:
        url, secret = settings.app_webhook_url, settings.app_webhook_secret or settings.app_channel_secret
        if not url or not secret:
            error = "未配置应用回调地址 (ANJU_APP_WEBHOOK_URL) 或密钥"
        else:
            try:
                headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
                response = httpx.post(url, content=body, headers=headers, timeout=10)
                if response.status_code // 100 != 2:
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
    elif channel is Channel.wechat:
        error, permanent = _send_wechat(settings, delivery_id)
    else:
        error = f"渠道 {channel.value} 还没有发送适配器"
    return error, permanent


def _send_wechat(settings: Settings, delivery_id: int) -> tuple[str | None, bool]:
    """(error, permanent) of sending one reply as a customer-service message."""
    from channels import wechat
    from core.redis import get_redis

    with get_database(settings).session(readonly=True) as session:
        delivery = session.get(OutboundDelivery, delivery_id)
        assert delivery is not None
        inbound = session.get(InboundMessage, delivery.inbound_id) if delivery.inbound_id else None
        account = wechat.account_for(settings, delivery.payload.get("account"))
        openid, text = delivery.recipient, str(delivery.payload.get("reply", ""))
        received = inbound.received_at if inbound is not None else delivery.created_at
    if account is None:
        return "找不到该公众号的配置", True
    if (utcnow() - received).total_seconds() > wechat.WINDOW_SECONDS:
        return "超过 48 小时客服消息窗口，只能等居民再次留言后回复", True
    try:
        wechat.send_text(settings, get_redis(settings), account, openid, text)
    except wechat.SendFailed as exc:
        return str(exc), exc.permanent
    return None, False


def sweep_inbound(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue messages accepted but never processed (no worker took them, Redis lost the
    job, the worker died) and deliveries still pending with no job behind them."""
    now = now or utcnow()
    fresh = now - timedelta(seconds=settings.inbound_stale_seconds)
    hung = now - timedelta(seconds=settings.job_timeout_seconds)
    with get_database(settings).session(readonly=True) as session:
        inbound = list(
            session.scalars(
                select(InboundMessage.id).where(
                    or_(
                        (InboundMessage.status == InboundStatus.accepted)
                        & (InboundMessage.received_at < fresh),
                        (InboundMessage.status == InboundStatus.processing)
                        & (InboundMessage.claimed_at < hung),
                    )
                )
            )
        )
        deliveries = list(
            session.scalars(
                select(OutboundDelivery.id).where(
                    OutboundDelivery.status == DeliveryStatus.pending, OutboundDelivery.created_at < fresh
                )
            )
        )
        stuck = list(
            session.scalars(
                select(OutboundDelivery.id).where(
                    OutboundDelivery.status == DeliveryStatus.sending, OutboundDelivery.attempted_at < hung
                )
            )
        )
    if stuck:  # the worker died mid-send: whether it arrived is unknown, so it is tried again
        from sqlalchemy import update

        with get_database(settings).session() as session:
            session.execute(
                update(OutboundDelivery)
                .where(OutboundDelivery.id.in_(stuck), OutboundDelivery.status == DeliveryStatus.sending)
                .values(status=DeliveryStatus.pending)
                .execution_options(synchronize_session=False)
            )
        deliveries += stuck
    for inbound_id in inbound:
        request_processing(settings, inbound_id)
    for delivery_id in deliveries:
        request_delivery(
            settings, delivery_id
        )  # the same job id: a retry already scheduled stays the only one
    if inbound or deliveries:
        log.warning(
            "sweeper re-enqueued %d inbound message(s) and %d delivery(ies)", len(inbound), len(deliveries)
        )
    return {"inbound": len(inbound), "deliveries": len(deliveries)}
