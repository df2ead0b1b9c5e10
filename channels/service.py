"""One intake for every channel: store each inbound message once, process it as a job, send the
reply back through the channel it came from.

Flow: a channel's endpoint checks the request, hands the normalised message to the intake writer
(channels.batching: committed once, a duplicate returns the stored row, ``process_inbound``
enqueued), and acknowledges. The database is the source of truth: when the enqueue fails or a
worker dies, ``sweep_inbound`` re-enqueues what was accepted and never processed. Processing is
idempotent (the assistant keys the turn by the channel's message id; one delivery per reply), so
running it twice stores one turn and sends one reply.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from channels.models import DeliveryStatus, InboundMessage, InboundStatus, OutboundDelivery
from conversations.models import Channel, Conversation
from conversations.service import IDENTITY_OF, resolve_resident
from conversations.signals import MessagePosted
from core.db import get_database, utcnow
from core.errors import AnjuError, InvalidInput, NotFound
from core.events import after_commit
from core.masking import mask_mobile, mask_text
from core.settings import AppChannel, Settings
from org.models import Community, Company, IdentityKind

if TYPE_CHECKING:
    from assistant.service import TurnResult

log = logging.getLogger(__name__)


class DeliveryError(AnjuError):
    status_code = 502
    code = "delivery_failed"
    default_message = "回复未能送达"


def masked_sender(channel: Channel, sender: str) -> str:
    """A channel's user id as logs may show it: a caller's number (mobile or landline) keeps its
    last four digits; a web chat's session id is the key to its conversation (whoever has it reads
    the chat), so only a fingerprint of it is shown, enough to follow one session through the log;
    ids that are not personal data as such (openids, app ids) go through mask_text like any text."""
    if channel is Channel.phone:
        return mask_mobile(sender)
    if channel is Channel.web:
        return "session#" + hashlib.sha256(sender.encode()).hexdigest()[:8]
    return mask_text(sender)


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
    return _process(settings, inbound_id)[1]


def answer_now(settings: Settings, inbound_id: int) -> TurnResult:
    """The web page waits for its answer: the worker's processing, run in the request. A message
    sent again gets the reply stored the first time."""
    result, _ = _process(settings, inbound_id, again=True)
    if result is None:
        raise InvalidInput("这条消息无法处理")
    return result


def _process(
    settings: Settings, inbound_id: int, *, again: bool = False
) -> tuple[TurnResult | None, int | None]:
    from channels.flows import message as message_flow

    database = get_database(settings)
    with database.session() as session:
        message = session.get(InboundMessage, inbound_id)
        if message is None:
            raise NotFound(f"inbound message {inbound_id} does not exist")
        if message.status is InboundStatus.done and not again:
            return None, session.scalar(
                select(OutboundDelivery.id).where(OutboundDelivery.inbound_id == inbound_id)
            )
        if message.channel is Channel.phone:
            session.rollback()
            process_call(settings, inbound_id)
            return None, None  # the call is over: its answer is a call-back task, not a message
        message.status = InboundStatus.processing
        message.claimed_at = utcnow()
        message.attempts += 1
        community_id, channel, sender = message.community_id, message.channel, message.sender
        text = _turn_text(message.text, message.attachments)
        external_id = message.external_id
    try:
        result = message_flow.take_turn(
            settings, community=community_id, session_id=sender, text=text, channel=channel,
            client_id=external_id,
        )  # fmt: skip
    except Exception as exc:
        if _gave_up(settings, inbound_id, exc):
            return None, None
        raise

    with database.session() as session:
        message = session.get(InboundMessage, inbound_id)
        assert message is not None
        community = session.get(Community, community_id)
        assert community is not None
        delivery = session.scalar(
            select(OutboundDelivery).where(OutboundDelivery.message_id == result.message_id)
        )
        # The web page reads its reply from the response (or the history after a reload).
        if delivery is None and result.message_id and channel is not Channel.web:
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
    return result, delivery_id


def _gave_up(settings: Settings, inbound_id: int, exc: Exception) -> bool:
    """Record a failed run; True when it was the last (the message is failed, for agents to see;
    the sweeper leaves it), False when rq or the sweeper should run it again."""
    with get_database(settings).session() as session:
        message = session.get(InboundMessage, inbound_id)
        if message is None:
            return True
        message.error = f"{type(exc).__name__}: {exc}"[:1000]
        if isinstance(exc, InvalidInput) or message.attempts >= MAX_PROCESS_ATTEMPTS:
            message.status = InboundStatus.failed
            log.error("inbound message %s failed for good: %s", inbound_id, message.error)
            return True
    return False


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
        company = session.get(Company, delivery.company_id)
        company_code = company.code if company is not None else None
        body = json.dumps({"delivery_id": delivery.id, **delivery.payload}, ensure_ascii=False).encode()
    error: str | None = None
    permanent = False
    try:
        error, permanent = _send(settings, channel, delivery_id, body, company_code=company_code)
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


def app_channel_for(settings: Settings, company_code: str | None) -> AppChannel | None:
    """The app channel whose webhook receives a company's replies: the company's own, else one
    that serves every company; never another company's."""
    channels = settings.app_channel_list()
    own = next((c for c in channels if c.company is not None and c.company == company_code), None)
    return own or next((c for c in channels if c.company is None), None)


def _send(
    settings: Settings, channel: Channel, delivery_id: int, body: bytes, *, company_code: str | None = None
) -> tuple[str | None, bool]:
    """(error, permanent) of one attempt through the channel's outbound adapter."""
    from channels.signing import signed_headers
    from core import outbound

    error: str | None = None
    permanent = False
    if channel is Channel.app:
        app = app_channel_for(settings, company_code)
        url = app.webhook_url if app else None
        secret = (app.webhook_secret or app.secret) if app else None
        if not url or not secret:
            error, permanent = (
                f"未配置本公司应用的回调地址（公司 {company_code}：ANJU_APP_CHANNELS 的 webhook_url，"
                "单公司部署为 ANJU_APP_WEBHOOK_URL）",
                True,
            )
        else:
            # Through the outbound check; what the app's backend answers is not kept, only its status.
            try:
                headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
                reply = outbound.send(outbound.outbound_policy(settings), "POST", url, content=body,
                                      headers=headers, timeout=10)  # fmt: skip
                if reply.status // 100 != 2:
                    error = f"应用回调地址返回 HTTP {reply.status}"
            except outbound.OutboundRefused as exc:
                error, permanent = f"应用回调地址：{exc.message}", True  # retrying cannot help
            except outbound.OutboundFailed as exc:
                error = f"应用回调地址：{exc.message}"
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


SWEEP_LIMIT = 500  # rows per kind and sweep: a backlog is worked off over several sweeps


def _without_job(settings: Settings, inbound_ids: list[int]) -> list[int]:
    """Messages claimed by a job that no longer exists (Redis restarted empty under it): they
    need not wait for the job timeout to be processed again."""
    from core.redis import get_redis

    if not inbound_ids:
        return []
    try:
        with get_redis(settings).pipeline(transaction=False) as pipe:
            for inbound_id in inbound_ids:
                pipe.exists(f"rq:job:inbound-{inbound_id}")
            exists = pipe.execute()
    except (RedisError, OSError):
        return []
    return [i for i, found in zip(inbound_ids, exists, strict=True) if not found]


def sweep_inbound(settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue messages accepted but never processed (no worker took them, Redis lost the
    job, the worker died) and deliveries still pending with no job behind them."""
    now = now or utcnow()
    fresh = now - timedelta(seconds=settings.inbound_stale_seconds)
    hung = now - timedelta(seconds=settings.job_timeout_seconds)
    with get_database(settings).session(readonly=True) as session:
        inbound = list(
            session.scalars(
                select(InboundMessage.id)
                .where(
                    or_(
                        (InboundMessage.status == InboundStatus.accepted)
                        & (InboundMessage.received_at < fresh),
                        (InboundMessage.status == InboundStatus.processing)
                        & (InboundMessage.claimed_at < hung),
                    )
                )
                .order_by(InboundMessage.id)
                .limit(SWEEP_LIMIT)
            )
        )
        claimed = list(
            session.scalars(
                select(InboundMessage.id)
                .where(
                    InboundMessage.status == InboundStatus.processing,
                    InboundMessage.claimed_at < fresh,
                    InboundMessage.claimed_at >= hung,
                )
                .order_by(InboundMessage.id)
                .limit(SWEEP_LIMIT)
            )
        )
        deliveries = list(
            session.scalars(
                select(OutboundDelivery.id)
                .where(OutboundDelivery.status == DeliveryStatus.pending, OutboundDelivery.created_at < fresh)
                .order_by(OutboundDelivery.id)
                .limit(SWEEP_LIMIT)
            )
        )
        stuck = list(
            session.scalars(
                select(OutboundDelivery.id).where(
                    OutboundDelivery.status == DeliveryStatus.sending, OutboundDelivery.attempted_at < hung
                )
            )
        )
    inbound += _without_job(settings, claimed)
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


# --- who is writing: one resident across channels ----------------------------------------------


def link_by_mobile(
    session: Session, community_id: int, channel: Channel, sender: str, mobile: str
) -> int | None:
    """A channel that vouches for the resident's mobile (the app verified it at sign-up) links its
    user id to the directory entry with that number, so its messages join that resident's history.
    An id already linked to someone else is left alone."""
    from org.service import find_resident, set_identity

    kind = IDENTITY_OF.get(channel)
    if kind is None or kind is IdentityKind.mobile:
        return resolve_resident(session, community_id, channel, sender)
    known = resolve_resident(session, community_id, channel, sender)
    if known is not None:
        return known
    try:
        resident = find_resident(
            session=session, community_id=community_id, kind=IdentityKind.mobile, value=mobile
        )
    except InvalidInput:
        return None
    if resident is None or resident.identity(kind) is not None:
        return None  # not in the directory, or already known under another id of this channel
    set_identity(session=session, resident=resident, kind=kind, value=sender)
    log.info("%s user %s linked to resident %s by mobile", channel.value, mask_text(sender), resident.id)
    return resident.id


# --- phone calls -------------------------------------------------------------------------------


def process_call(settings: Settings, inbound_id: int) -> int:
    """One finished call: its conversation (every utterance), the work orders and cases it
    raises, and a call-back task when the resident must be called again. Returns the
    conversation's id. Safe to run again: the call's conversation is written once."""
    from assistant.service import review_call

    database = get_database(settings)
    with database.session() as session:
        message = session.get(InboundMessage, inbound_id)
        if message is None:
            raise NotFound(f"inbound message {inbound_id} does not exist")
        if message.status is InboundStatus.done and message.conversation_id:
            return message.conversation_id
        message.status, message.claimed_at = InboundStatus.processing, utcnow()
        message.attempts += 1
        community_id = message.community_id
        call = next((a for a in message.attachments if a.get("type") == "call"), {})
        lines = [(u["speaker"], u["text"]) for u in call.get("utterances", [])]
        started = message.sent_at or message.received_at
    try:
        review = review_call(settings, community_id, lines)
        from channels.flows.call import store_call

        return store_call(settings, inbound_id, review, call, lines, started)
    except Exception as exc:
        if _gave_up(settings, inbound_id, exc):
            return 0
        raise


# --- what went wrong, for agents ---------------------------------------------------------------

PROBLEMS_LIMIT = 200


def failed_inbound(session: Session, community_id: int) -> list[InboundMessage]:
    """Messages processing gave up on (newest first): agents answer these themselves or retry."""
    return list(
        session.scalars(
            select(InboundMessage)
            .where(InboundMessage.community_id == community_id, InboundMessage.status == InboundStatus.failed)
            .order_by(InboundMessage.id.desc())
            .limit(PROBLEMS_LIMIT)
        )
    )


def failed_deliveries(session: Session, community_id: int) -> list[tuple[OutboundDelivery, Conversation]]:
    """Replies that never reached the resident (newest first), with their conversation."""
    rows = session.execute(
        select(OutboundDelivery, Conversation)
        .join(Conversation, Conversation.id == OutboundDelivery.conversation_id)
        .where(Conversation.community_id == community_id, OutboundDelivery.status == DeliveryStatus.failed)
        .order_by(OutboundDelivery.id.desc())
        .limit(PROBLEMS_LIMIT)
    ).all()
    return [(d, c) for d, c in rows]


def retry_inbound(session: Session, settings: Settings, inbound_id: int) -> InboundMessage:
    """An agent asks for a failed message to be processed again (once the cause is fixed)."""
    message = session.get(InboundMessage, inbound_id)
    if message is None:
        raise NotFound("消息不存在")
    if message.status is not InboundStatus.failed:
        raise InvalidInput("只有处理失败的消息可以重试")
    message.status, message.attempts, message.error = InboundStatus.accepted, 0, None
    session.commit()
    request_processing(settings, message.id)
    return message


def retry_delivery(session: Session, settings: Settings, delivery_id: int) -> OutboundDelivery:
    """An agent sends a failed reply again (the app's webhook is back, the resident wrote again)."""
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None:
        raise NotFound("回复记录不存在")
    if delivery.status is not DeliveryStatus.failed:
        raise InvalidInput("只有发送失败的回复可以重发")
    delivery.status, delivery.attempts, delivery.last_error = DeliveryStatus.pending, 0, None
    delivery.created_at = utcnow()  # a fresh 48-hour check and sweep clock
    session.commit()
    request_delivery(settings, delivery.id)
    return delivery


# --- a person's replies ------------------------------------------------------------------------


def deliver_posted(session: Session, settings: Settings, event: MessagePosted) -> None:
    """Receives conversations' ``message_posted``: a person's message leaves on the resident's
    channel. Stored as an outbound delivery in the same transaction and sent by a job once it
    commits: WeChat as a customer-service message (inside the 48-hour window), the app through its
    signed webhook. The web page needs no delivery: its live stream was told."""
    if event.channel in (Channel.web, Channel.phone):
        return
    latest = session.scalar(
        select(InboundMessage)
        .where(InboundMessage.conversation_id == event.conversation_id)
        .order_by(InboundMessage.id.desc())
        .limit(1)
    )
    community = session.get(Community, event.community_id)
    delivery = OutboundDelivery(
        company_id=event.company_id,
        channel=event.channel,
        conversation_id=event.conversation_id,
        message_id=event.message_id,
        inbound_id=latest.id if latest is not None else None,  # WeChat's 48-hour window runs from it
        recipient=event.external_id,
        payload={
            "account": latest.account if latest is not None else None,
            "reply_to": None,
            "community": community.code if community else None,
            "user_id": event.external_id,
            "reply": event.text,
            "action": event.action or event.sender.value,
            "citations": [],
            "case_id": event.case_id,
        },
    )
    session.add(delivery)
    session.flush()
    delivery_id = delivery.id
    after_commit(session, lambda: request_delivery(settings, delivery_id))
