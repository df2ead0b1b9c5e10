"""Channel endpoints: thin. Check the request, store the message, acknowledge, enqueue."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import AwareDatetime, ValidationError
from redis.exceptions import RedisError

from accounts.deps import roles
from accounts.models import Role, StaffUser
from accounts.service import accessible_community_ids, require_community
from accounts.views import client_address
from channels import batching, service
from channels.models import InboundMessage, InboundStatus, OutboundDelivery
from channels.schemas import (
    Accepted,
    AppMessageIn,
    CallTranscriptIn,
    FailedDelivery,
    FailedMessage,
    HistoryItem,
    IntakeProblems,
)
from channels.signing import BadSignature, check
from conversations import service as conversations
from conversations.models import Channel, Conversation, Message, Sender
from core.db import get_database, utcnow
from core.deps import SessionDep, SettingsDep
from core.errors import AnjuError, Forbidden, InvalidInput, NotFound
from core.exports import csv_text
from core.masking import mask_mobile, mask_text
from core.redis import get_async_redis
from core.routing import CommittingRoute
from core.settings import Settings, WechatAccount
from core.types import PathId
from org.service import get_community_by_code, get_resident, normalise_mobile

log = logging.getLogger(__name__)
router = APIRouter(prefix="/channels", tags=["channels"], route_class=CommittingRoute)


class BadRequest(AnjuError):
    status_code = 400
    code = "bad_request"
    default_message = "请求格式不对"


@router.post("/app/messages", status_code=202, response_model=Accepted)
@router.post("/app/{key}/messages", status_code=202, response_model=Accepted)
async def app_message(request: Request, key: str = "default") -> JSONResponse:
    """A resident's message from an app's backend, signed with its channel's secret (see
    channels.signing). 202 once it is stored; the reply arrives later at the company's webhook.
    Resending the same message_id stores and answers nothing new (``duplicate: true``). A
    channel bound to a company posts into that company's communities only."""
    settings: Settings = request.app.state.settings
    channel = next((c for c in settings.app_channel_list() if c.key == key), None)
    if channel is None:
        raise NotFound("未启用应用渠道")
    body = await request.body()
    await _check_signed(request, body, settings, f"app:{channel.key}", channel.secret)
    try:
        message = AppMessageIn.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(f"请求体不是有效的消息 JSON：{_reason(exc)}") from None
    place = await _community(settings, message.community, company=channel.company)
    stored = await batching.accept(
        settings,
        batching.Pending(
            company_id=place.company_id, community_id=place.id, channel=Channel.app,
            external_id=message.message_id, sender=message.user_id, text=message.text,
            attachments=[a.model_dump(exclude_none=True) for a in message.attachments],
            sent_at=message.sent_at,
        ),
    )  # fmt: skip
    if message.mobile and not stored.duplicate:
        await run_in_threadpool(_link_by_mobile, settings, place.id, message.user_id, message.mobile)
    accepted = Accepted(id=stored.id, status=stored.status.value, duplicate=stored.duplicate)
    return JSONResponse(accepted.model_dump(), status_code=200 if stored.duplicate else 202)


def _link_by_mobile(settings: Settings, community_id: int, user_id: str, mobile: str) -> None:
    with get_database(settings).session() as session:
        service.link_by_mobile(session, community_id, Channel.app, user_id, mobile)


@dataclass(frozen=True)
class _Place:
    id: int
    company_id: int
    company_code: str


_places: dict[tuple[str, str], tuple[float, _Place]] = {}
PLACE_CACHE_SECONDS = 60.0


async def _community(settings: Settings, code: str, *, company: str | None = None) -> _Place:
    """The community behind a code, cached for a minute per process (every message names one).
    ``company``: the code of the only company the channel serves; another company's community is
    answered exactly as one that does not exist (a channel learns nothing of other tenants)."""
    import time

    key = (settings.database_url or str(settings.data_dir), code)
    cached = _places.get(key)
    if cached is not None and time.monotonic() - cached[0] < PLACE_CACHE_SECONDS:
        place = cached[1]
    else:

        def look_up() -> _Place:
            with get_database(settings).session(readonly=True) as session:
                community = get_community_by_code(session=session, code=code)
                return _Place(community.id, community.company_id, community.company.code)

        place = await run_in_threadpool(look_up)
        _places[key] = (time.monotonic(), place)
    if company is not None and place.company_code != company:
        raise NotFound(f"小区 {code} 不存在")
    return place


def _signed_nonce(request: Request, body: bytes, settings: Settings, channel: str, secret: str) -> str:
    """The nonce of a server-to-server request signed with the channel's secret inside the time
    window (403 otherwise, and a log line)."""
    try:
        return check(secret, request.headers, body, window_seconds=settings.channel_signature_window_seconds)
    except BadSignature as exc:
        log.warning("%s channel: refused request from %s: %s", channel, client_address(request), exc)
        raise Forbidden("签名无效") from None


def _replayed(request: Request, channel: str) -> Forbidden:
    log.warning("%s channel: replayed nonce from %s", channel, client_address(request))
    return Forbidden("重复的请求（nonce 已使用）")


async def _check_signed(request: Request, body: bytes, settings: Settings, channel: str, secret: str) -> None:
    """Signed, in the window, and a nonce never seen before (the round trip does not block the
    event loop). Without Redis the time window and the idempotency key still hold."""
    nonce = _signed_nonce(request, body, settings, channel, secret)
    try:
        fresh = await get_async_redis(settings).set(
            f"anju:{channel}-nonce:{nonce}", 1, nx=True, ex=settings.channel_signature_window_seconds * 2
        )
    except (RedisError, OSError):
        return
    if not fresh:
        raise _replayed(request, channel)


@router.post("/phone/transcripts", status_code=202, response_model=Accepted)
@router.post("/phone/{key}/transcripts", status_code=202, response_model=Accepted)
async def phone_transcript(request: Request, key: str = "default") -> JSONResponse:
    """A finished call's transcript from a call centre, signed like the app channel. The call
    becomes one conversation; what it asks for (a repair, a complaint, an emergency, a call-back)
    is registered by a worker. Posting the same call_id again stores nothing new. A channel
    bound to a company posts into that company's communities only."""
    from channels import phone

    settings: Settings = request.app.state.settings
    channel = next((c for c in settings.phone_channel_list() if c.key == key), None)
    if channel is None:
        raise NotFound("未启用电话渠道")
    body = await request.body()
    await _check_signed(request, body, settings, f"phone:{channel.key}", channel.secret)
    try:
        call = CallTranscriptIn.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise BadRequest(f"请求体不是有效的通话转写 JSON：{_reason(exc)}") from None
    utterances = phone.utterances(call)
    place = await _community(settings, call.community, company=channel.company)
    try:
        caller = normalise_mobile(call.caller)
    except InvalidInput:
        caller = call.caller.strip()  # a landline or a withheld number: kept as the switch gave it
    said = " ".join(u.text for u in utterances if u.speaker == "customer")
    record = {
        "type": "call",
        "agent": call.agent,
        "started_at": call.started_at.isoformat(),
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "utterances": [u.model_dump() for u in utterances],
    }
    stored = await batching.accept(
        settings,
        batching.Pending(
            company_id=place.company_id, community_id=place.id, channel=Channel.phone,
            external_id=call.call_id, sender=caller, text=said[:4000], attachments=[record],
            sent_at=call.started_at,
        ),
    )  # fmt: skip
    accepted = Accepted(id=stored.id, status=stored.status.value, duplicate=stored.duplicate)
    return JSONResponse(accepted.model_dump(), status_code=200 if stored.duplicate else 202)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)[:200]


# --- WeChat official account -------------------------------------------------------------------


@router.get("/wechat", response_class=PlainTextResponse)
@router.get("/wechat/{key}", response_class=PlainTextResponse)
def wechat_verify(request: Request, settings: SettingsDep, key: str | None = None) -> PlainTextResponse:
    """WeChat's URL verification (公众号 → 基本配置 → 服务器地址): echo ``echostr`` if signed."""
    from channels import wechat

    account = _wechat_account(settings, key)
    params = dict(request.query_params)
    try:
        wechat.check_signature(account, params, window_seconds=settings.channel_signature_window_seconds)
    except wechat.WechatRejected as exc:
        log.warning("wechat %s: refused verification from %s: %s", account.key, client_address(request), exc)
        raise Forbidden("签名无效") from None
    return PlainTextResponse(params.get("echostr", ""))


@router.post("/wechat")
@router.post("/wechat/{key}")
async def wechat_message(request: Request, key: str | None = None) -> Response:
    """A message or event pushed by WeChat. Stored once (WeChat retries three times when no reply
    comes within 5 s); answered passively when the answer is ready in time, otherwise ``success``
    now and a customer-service message later."""
    import time

    from channels import wechat

    started = time.monotonic()
    settings: Settings = request.app.state.settings
    account = _wechat_account(settings, key)
    params = dict(request.query_params)
    body = await request.body()
    try:
        wechat.check_signature(account, params, window_seconds=settings.channel_signature_window_seconds)
        xml = wechat.safe_xml(body)
        if params.get("encrypt_type") == "aes":
            xml = wechat.decrypt(account, xml, params)
        elif account.aes_key:  # safe mode configured: a plaintext body is not from WeChat
            raise wechat.WechatRejected(403, "plaintext message to an account in safe mode")
        else:
            await _check_nonce(settings, account.key, params, body)
        incoming = wechat.read_message(xml, account.menu)
    except wechat.WechatRejected as exc:
        log.warning(
            "wechat %s: refused message from %s: %s", account.key, client_address(request), exc.reason
        )
        if exc.status == 403:
            raise Forbidden("签名无效") from None
        raise BadRequest("无法读取的微信消息") from None

    def answer(text: str | None) -> Response:
        if not text:
            return PlainTextResponse("success")
        reply = wechat.reply_xml(incoming, text)
        if params.get("encrypt_type") == "aes":
            reply = wechat.encrypt_reply(account, reply, params)
        return Response(reply, media_type="application/xml")

    if not incoming.store:
        return answer(incoming.immediate)
    place = await _community(settings, account.community)
    stored = await batching.accept(
        settings,
        batching.Pending(
            company_id=place.company_id, community_id=place.id, channel=Channel.wechat,
            external_id=incoming.external_id, sender=incoming.sender, text=incoming.text,
            attachments=incoming.attachments, account=account.key,
            status=InboundStatus.done if incoming.immediate else InboundStatus.accepted,
        ),
    )  # fmt: skip
    if incoming.immediate:  # an unreadable voice, a picture: a fixed reply, no assistant turn
        return answer(None if stored.duplicate else incoming.immediate)
    window = min(settings.wechat_passive_reply_seconds, service.PASSIVE_WINDOW_SECONDS - 0.5)
    if window <= 0 or await _backlogged(settings):
        return answer(None)  # the answer cannot be ready in time: "success" now, the API sends it
    while time.monotonic() - started < window and utcnow() - stored.received_at < timedelta(seconds=window):
        await asyncio.sleep(0.05)
        reply = await run_in_threadpool(service.claim_passive, settings, stored.id, stored.received_at)
        if reply is not None:
            return answer(reply)
    return answer(None)


BACKLOG_JOBS = 1  # more jobs than this waiting: no answer comes within the passive window
BACKLOG_CHECK_SECONDS = 0.1  # the queue's length is asked at most this often per process
_backlog: dict[str, tuple[float, bool]] = {}  # Redis URL -> (asked at, backlogged)


async def _backlogged(settings: Settings) -> bool:
    """Jobs are waiting ahead of this message (workers busy): waiting for a passive reply would
    only hold the callback up. Under load every callback asked Redis (7% of the API's CPU); the
    answer now serves the callbacks of the next 100 ms."""
    import time

    now = time.monotonic()
    key = settings.effective_redis_url
    asked, backlogged = _backlog.get(key, (float("-inf"), True))
    if now - asked < BACKLOG_CHECK_SECONDS:
        return backlogged
    _backlog[key] = (now, backlogged)  # callbacks meanwhile take the last answer
    try:
        backlogged = int(await get_async_redis(settings).llen("rq:queue:default")) > BACKLOG_JOBS
    except (RedisError, OSError):
        backlogged = True
    _backlog[key] = (now, backlogged)
    return backlogged


async def _check_nonce(settings: Settings, account: str, params: dict[str, str], body: bytes) -> None:
    """Plaintext mode signs token, timestamp and nonce but not the body: a signature seen before
    may only come back with the same body (WeChat's own retries), never with another one."""
    import hashlib

    from channels import wechat

    digest = hashlib.sha256(body).hexdigest()
    key = f"anju:wechat-nonce:{account}:{params.get('timestamp')}:{params.get('nonce')}"
    redis = get_async_redis(settings)
    try:
        if not await redis.set(key, digest, nx=True, ex=WECHAT_NONCE_SECONDS):
            seen = await redis.get(key)
            seen = seen.decode() if isinstance(seen, bytes) else seen
            if seen != digest:
                raise wechat.WechatRejected(403, "signature reused with another body")
    except (RedisError, OSError):
        pass  # without Redis the time window still limits a replay


WECHAT_NONCE_SECONDS = 600


def _wechat_account(settings: Settings, key: str | None) -> WechatAccount:
    from channels import wechat

    account = wechat.account_for(settings, key)
    if account is None:
        raise NotFound("找不到该公众号")
    return account


# --- what staff read: one history per resident, masked exports ---------------------------------

api = APIRouter(prefix="/api", tags=["conversations"], route_class=CommittingRoute)
# Conversations are for the people who serve residents, not for the PR desk.
ServiceUser = Annotated[StaffUser, Depends(roles(Role.agent, Role.supervisor, Role.admin))]


def _history_item(message: Message, conversation: Conversation) -> HistoryItem:
    return HistoryItem(
        conversation_id=conversation.id,
        channel=conversation.channel.value,
        sender=message.sender.value,
        text=mask_text(message.text),
        action=message.action,
        case_id=message.case_id,
        work_order_id=message.work_order_id,
        created_at=message.created_at,
    )


@api.get("/residents/{resident_id}/history", response_model=list[HistoryItem])
def resident_history(
    resident_id: PathId, user: ServiceUser, session: SessionDep, limit: int = Query(200, ge=1, le=1000)
) -> list[HistoryItem]:
    """Everything this resident said and was told, on every channel (web, WeChat, app, phone) and
    under every directory entry with the same mobile number, oldest first."""
    resident = get_resident(session=session, resident_id=resident_id)
    require_community(session=session, user=user, community_id=resident.community_id)
    allowed = accessible_community_ids(session=session, user=user)
    return [
        _history_item(m, c)
        for m, c in conversations.resident_history(session, resident_id, limit=limit)
        if c.community_id in allowed
    ]


@api.get("/communities/{community_id}/conversations/export", response_class=StreamingResponse)
def export_conversations(
    community_id: PathId,
    user: ServiceUser,
    session: SessionDep,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> StreamingResponse:
    """A CSV of the community's messages (UTF-8 with BOM, opens in Excel), personal data masked:
    mobile and ID numbers, plates and e-mail addresses in the text, the channel's user ids. A cell
    a spreadsheet would run as a formula (a resident typed =HYPERLINK…) is kept as text."""
    require_community(session=session, user=user, community_id=community_id)
    rows = conversations.export_rows(session, community_id, since=since, until=until)
    text = csv_text(EXPORT_COLUMNS, (
        [
            message.created_at.isoformat(), CHANNEL_NAMES[conversation.channel], conversation.id,
            conversation.resident_id or "", mask_mobile(conversation.external_id),
            SENDER_NAMES[message.sender], mask_text(message.text), message.action or "",
            message.case_id or "", message.work_order_id or "",
        ]
        for message, conversation in rows
    ))  # fmt: skip
    filename = f"conversations-{community_id}.csv"
    return StreamingResponse(
        iter([text.encode()]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


CHANNEL_NAMES = {Channel.web: "网页", Channel.wechat: "微信", Channel.app: "App", Channel.phone: "电话"}
SENDER_NAMES = {
    Sender.resident: "住户", Sender.assistant: "助手", Sender.agent: "客服", Sender.system: "系统"
}  # fmt: skip
EXPORT_COLUMNS = ["时间", "渠道", "会话", "住户编号", "渠道用户", "发送方", "内容", "动作", "案件", "工单"]


def _failed_message(m: InboundMessage) -> FailedMessage:
    return FailedMessage(
        id=m.id,
        channel=m.channel.value,
        sender=service.masked_sender(m.channel, m.sender),
        text=mask_text(m.text),
        error=m.error,
        attempts=m.attempts,
        received_at=m.received_at,
    )


def _failed_delivery(d: OutboundDelivery, c: Conversation) -> FailedDelivery:
    return FailedDelivery(
        id=d.id,
        channel=d.channel.value,
        conversation_id=c.id,
        recipient=service.masked_sender(d.channel, d.recipient),
        reply=mask_text(str(d.payload.get("reply", ""))),
        error=d.last_error,
        attempts=d.attempts,
        created_at=d.created_at,
    )


@api.get("/communities/{community_id}/intake/problems", response_model=IntakeProblems)
def intake_problems(community_id: PathId, user: ServiceUser, session: SessionDep) -> IntakeProblems:
    """Messages the intake gave up on and replies that never arrived, newest first."""
    require_community(session=session, user=user, community_id=community_id)
    return IntakeProblems(
        failed_messages=[_failed_message(m) for m in service.failed_inbound(session, community_id)],
        failed_deliveries=[
            _failed_delivery(d, c) for d, c in service.failed_deliveries(session, community_id)
        ],
    )


@api.post("/intake/messages/{inbound_id}/retry", response_model=Accepted)
def retry_message(
    inbound_id: PathId, user: ServiceUser, session: SessionDep, settings: SettingsDep
) -> Accepted:
    message = session.get(InboundMessage, inbound_id)
    if message is None:
        raise NotFound("消息不存在")
    require_community(session=session, user=user, community_id=message.community_id)
    message = service.retry_inbound(session, settings, inbound_id)
    return Accepted(id=message.id, status=message.status.value, duplicate=False)


@api.post("/intake/deliveries/{delivery_id}/retry", response_model=Accepted)
def retry_delivery(
    delivery_id: PathId, user: ServiceUser, session: SessionDep, settings: SettingsDep
) -> Accepted:
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None:
        raise NotFound("回复记录不存在")
    conversation = session.get(Conversation, delivery.conversation_id)
    assert conversation is not None
    require_community(session=session, user=user, community_id=conversation.community_id)
    delivery = service.retry_delivery(session, settings, delivery_id)
    return Accepted(id=delivery.id, status=delivery.status.value, duplicate=False)
