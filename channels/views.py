"""Channel endpoints: thin. Check the request, store the message, acknowledge, enqueue."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from redis import Redis
from redis.exceptions import RedisError

from accounts.views import client_address
from channels import service
from channels.models import Channel, InboundStatus
from channels.schemas import Accepted, AppMessageIn
from channels.signing import BadSignature, check
from core.db import utcnow
from core.deps import RedisDep, SessionDep, SettingsDep
from core.errors import AnjuError, Forbidden, NotFound
from core.settings import Settings, WechatAccount
from org.service import get_community_by_code

log = logging.getLogger(__name__)
router = APIRouter(prefix="/channels", tags=["channels"])


class BadRequest(AnjuError):
    status_code = 400
    code = "bad_request"
    default_message = "请求格式不对"


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature covers these bytes."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


@router.post("/app/messages", status_code=202, response_model=Accepted)
def app_message(
    request: Request, body: RawBody, session: SessionDep, settings: SettingsDep, redis: RedisDep
) -> JSONResponse:
    """A resident's message from the app's backend, signed (see channels.signing). 202 once it is
    stored; the reply arrives later at the configured webhook. Resending the same message_id
    stores and answers nothing new (``duplicate: true``)."""
    if not settings.app_channel_secret:
        raise NotFound("未启用应用渠道")
    try:
        nonce = check(settings.app_channel_secret, request.headers, body,
                      window_seconds=settings.channel_signature_window_seconds)  # fmt: skip
    except BadSignature as exc:
        log.warning("app channel: refused request from %s: %s", client_address(request), exc)
        raise Forbidden("签名无效") from None
    try:
        if not redis.set(
            f"anju:app-nonce:{nonce}", 1, nx=True, ex=settings.channel_signature_window_seconds * 2
        ):
            log.warning("app channel: replayed nonce from %s", client_address(request))
            raise Forbidden("重复的请求（nonce 已使用）")
    except RedisError:
        pass  # without Redis the time window and the idempotency key still hold
    try:
        message = AppMessageIn.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise BadRequest(f"请求体不是有效的消息 JSON：{_reason(exc)}") from None
    community = get_community_by_code(session=session, code=message.community)
    inbound, duplicate = service.accept(
        session,
        community=community,
        channel=Channel.app,
        external_id=message.message_id,
        sender=message.user_id,
        text=message.text,
        attachments=[a.model_dump(exclude_none=True) for a in message.attachments],
        sent_at=message.sent_at,
    )
    session.commit()  # stored before the channel hears "accepted"
    if not duplicate:
        service.request_processing(settings, inbound.id)
    accepted = Accepted(id=inbound.id, status=inbound.status.value, duplicate=duplicate)
    return JSONResponse(accepted.model_dump(), status_code=200 if duplicate else 202)


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
def wechat_message(
    request: Request,
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    key: str | None = None,
) -> Response:
    """A message or event pushed by WeChat. Stored once (WeChat retries three times when no reply
    comes within 5 s); answered passively when the answer is ready in time, otherwise ``success``
    now and a customer-service message later."""
    import time

    from channels import wechat

    started = time.monotonic()
    account = _wechat_account(settings, key)
    params = dict(request.query_params)
    try:
        wechat.check_signature(account, params, window_seconds=settings.channel_signature_window_seconds)
        xml = wechat.safe_xml(body)
        if params.get("encrypt_type") == "aes":
            xml = wechat.decrypt(account, xml, params)
        elif account.aes_key:  # safe mode configured: a plaintext body is not from WeChat
            raise wechat.WechatRejected(403, "plaintext message to an account in safe mode")
        else:
            _check_nonce(redis, account.key, params, body)
        incoming = wechat.read_message(xml)
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
    community = get_community_by_code(session=session, code=account.community)
    inbound, duplicate = service.accept(
        session,
        community=community,
        channel=Channel.wechat,
        external_id=incoming.external_id,
        sender=incoming.sender,
        text=incoming.text,
        attachments=incoming.attachments,
        account=account.key,
        status=InboundStatus.done if incoming.immediate else InboundStatus.accepted,
    )
    session.commit()
    if incoming.immediate:  # an unreadable voice, a picture: a fixed reply, no assistant turn
        return answer(None if duplicate else incoming.immediate)
    inbound_id, received_at = inbound.id, inbound.received_at
    session.close()  # nothing more to write here; the worker writes the answer
    if not duplicate:
        service.request_processing(settings, inbound_id)
    window = min(settings.wechat_passive_reply_seconds, service.PASSIVE_WINDOW_SECONDS - 0.5)
    while time.monotonic() - started < window and utcnow() - received_at < timedelta(seconds=window):
        reply = service.claim_passive(settings, inbound_id, received_at)
        if reply is not None:
            return answer(reply)
        time.sleep(0.05)
    return answer(None)


def _check_nonce(redis: Redis, account: str, params: dict[str, str], body: bytes) -> None:
    """Plaintext mode signs token, timestamp and nonce but not the body: a signature seen before
    may only come back with the same body (WeChat's own retries), never with another one."""
    import hashlib

    from channels import wechat

    digest = hashlib.sha256(body).hexdigest()
    key = f"anju:wechat-nonce:{account}:{params.get('timestamp')}:{params.get('nonce')}"
    try:
        if not redis.set(key, digest, nx=True, ex=WECHAT_NONCE_SECONDS):
            seen = redis.get(key)
            seen = seen.decode() if isinstance(seen, bytes) else seen
            if seen != digest:
                raise wechat.WechatRejected(403, "signature reused with another body")
    except RedisError:
        pass  # without Redis the time window still limits a replay


WECHAT_NONCE_SECONDS = 600


def _wechat_account(settings: Settings, key: str | None) -> WechatAccount:
    from channels import wechat

    account = wechat.account_for(settings, key)
    if account is None:
        raise NotFound("找不到该公众号")
    return account
