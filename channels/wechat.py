"""WeChat official account (公众号) adapter: verify, decrypt, read, reply.

- Every request carries ``signature = sha1(sort(token, timestamp, nonce))``; it is compared in
  constant time and the timestamp must be within the window.
- Safe mode (``encrypt_type=aes``): the body's ``<Encrypt>`` is checked against ``msg_signature``
  and decrypted with the current EncodingAESKey, then the previous one (key rotation).
- XML with a DOCTYPE or entities is refused before any parser expands them (billion laughs).
- Replies: passive (the XML answer to WeChat's request, encrypted in safe mode) when the answer is
  ready in time, otherwise ``success`` and the customer-service message API later
  (``send_text``), with the access token cached in Redis and refreshed before it expires.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from core import outbound
from core.settings import Settings, WechatAccount

log = logging.getLogger(__name__)

TOKEN_INVALID = {40001, 40014, 42001}  # invalid / expired access token: fetch a new one and retry
OUT_OF_WINDOW = 45015  # the user has not written for 48 hours: customer-service messages refused
WINDOW_SECONDS = 48 * 3600


class WechatRejected(Exception):
    """A request that is not from WeChat or not readable; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def account_for(settings: Settings, key: str | None) -> WechatAccount | None:
    accounts = settings.wechat_accounts
    if not accounts:
        return None
    if key is None:
        return accounts[0]
    return next((a for a in accounts if a.key == key), None)


def _sha1(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(account: WechatAccount, params: dict[str, str], *, window_seconds: int) -> None:
    signature, timestamp, nonce = (
        params.get("signature", ""),
        params.get("timestamp", ""),
        params.get("nonce", ""),
    )
    if not signature or not (timestamp.isascii() and timestamp.isdecimal()) or not nonce:
        raise WechatRejected(403, "missing signature, timestamp or nonce")
    if abs(time.time() - int(timestamp)) > window_seconds:
        raise WechatRejected(403, f"timestamp {timestamp} outside the {window_seconds} s window")
    if not hmac.compare_digest(_sha1(account.token, timestamp, nonce), signature.lower()):
        raise WechatRejected(403, "signature does not match")


def safe_xml(body: bytes) -> str:
    """The body as text, refusing DOCTYPE and entity declarations before any XML parser sees them."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        text = body.decode("utf-8")
        fromstring(text, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise WechatRejected(400, f"XML with DTD or entities refused: {type(exc).__name__}") from None
    except (UnicodeDecodeError, SyntaxError) as exc:  # ParseError is a SyntaxError
        raise WechatRejected(400, f"malformed XML: {exc}") from None
    return text


def decrypt(account: WechatAccount, xml: str, params: dict[str, str]) -> str:
    """The plaintext message XML of a safe-mode request (current key, then the previous one)."""
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.exceptions import InvalidSignatureException

    keys = [k for k in (account.aes_key, account.previous_aes_key) if k]
    if not keys:
        raise WechatRejected(400, "encrypted message but no EncodingAESKey configured")
    msg_signature = params.get("msg_signature", "")
    last: Exception | None = None
    for key in keys:
        try:
            plain = WeChatCrypto(account.token, key, account.app_id).decrypt_message(
                xml, msg_signature, params.get("timestamp", ""), params.get("nonce", "")
            )
            return safe_xml(plain.encode() if isinstance(plain, str) else plain)
        except InvalidSignatureException:
            raise WechatRejected(403, "msg_signature does not match") from None
        except WechatRejected:
            raise
        except Exception as exc:  # wrong key: bad padding, struct errors, another app id…
            last = exc  # another key may open it
    raise WechatRejected(400, f"cannot decrypt with the configured keys: {type(last).__name__}")


def encrypt_reply(account: WechatAccount, xml: str, params: dict[str, str]) -> str:
    from wechatpy.crypto import WeChatCrypto

    assert account.aes_key
    return str(WeChatCrypto(account.token, account.aes_key, account.app_id).encrypt_message(
        xml, params.get("nonce", ""), params.get("timestamp") or str(int(time.time()))
    ))  # fmt: skip


@dataclass
class Incoming:
    """What a WeChat message means for the intake."""

    external_id: str
    sender: str  # the resident's openid
    account_id: str = ""  # ToUserName: the official account's gh_ id, the From of our replies
    text: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    store: bool = True  # False: an event answered here without the assistant (subscribe…)
    immediate: str | None = None  # a fixed reply (welcome, unreadable voice); None: the assistant's


WELCOME = (
    "欢迎关注！我是物业智能客服，可以回答缴费、报修、停车、装修等问题，也可以帮您登记报修或转人工。"
    "遇到火灾、燃气泄漏、有人被困等紧急情况请直接拨打小区值班电话。"
)
VOICE_UNHEARD = "抱歉，这条语音没有识别出文字，请再说一遍或直接打字告诉我。"
IMAGE_ONLY = "收到您的图片。请再用文字说一下需要什么帮助（报修请说明楼栋、单元和房号）。"
MENU_UNKNOWN = "这个菜单暂时不可用，请直接发文字告诉我您需要什么帮助，比如：物业费怎么交、我要报修。"


MAX_OPENID = 64  # openids are 28 characters; a longer FromUserName is not WeChat's
MAX_MSG_ID = 2**64  # MsgId is a 64-bit number


def read_message(xml: str, menu: dict[str, str] | None = None) -> Incoming:
    """What the message means. A message that is not WeChat's at all (no type, no sender) is
    refused (400); a signed one whose fields are out of shape is never a 500 (see ``_fields``)."""
    from wechatpy import parse_message

    try:
        message = parse_message(xml)
    except Exception as exc:  # wechatpy raises plain errors for missing fields
        raise WechatRejected(400, f"not a WeChat message: {type(exc).__name__}") from None
    sender = str(getattr(message, "source", "") or "")
    if not sender:
        raise WechatRejected(400, "message without FromUserName")
    if len(sender) > MAX_OPENID:
        raise WechatRejected(400, f"FromUserName of {len(sender)} characters")
    try:
        incoming = _read(message, sender, menu or {}, digest=hashlib.sha256(xml.encode()).hexdigest()[:32])
    except (ValueError, TypeError, OverflowError) as exc:  # a field wechatpy cannot convert
        # Signed, so from WeChat (or someone with the token): "success" and ignore, logged. An
        # error would only make WeChat send it three more times and then show the resident
        # "该公众号暂时无法提供服务".
        log.warning("wechat message from %s ignored, a field is unreadable: %s", sender, type(exc).__name__)
        return Incoming(f"{sender}:unreadable", sender, store=False)
    incoming.account_id = str(getattr(message, "target", "") or "")[:MAX_OPENID]
    return incoming


def _number(message: Any, field: str, limit: int) -> int | None:
    """A numeric field as WeChat sends it (ASCII digits, 0 < n < limit), else None: missing,
    not a number, or 5,000 digits (int() would refuse it, and it is no id of WeChat's)."""
    raw = str(message._data.get(field) or "").strip()  # the raw text: wechatpy's int() would raise
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        return None
    value = int(raw)
    return value if 0 < value < limit else None


def _read(message: Any, sender: str, menu: dict[str, str], *, digest: str) -> Incoming:
    """``digest`` (of the whole message XML) stands in for a MsgId or CreateTime that is missing
    or out of shape: the dedup key must tell two different messages apart (WeChat's own retries
    of one message are byte for byte the same), or the second — "着火了" — would be dropped."""
    kind = message.type
    if kind == "event":
        event = str(getattr(message, "event", "")).lower()
        created = _number(message, "CreateTime", 2**32)
        if created is None:
            log.warning(
                "wechat %s event from %s without a valid CreateTime: keyed by its content", event[:32], sender
            )
        event_key = str(getattr(message, "key", "") or "")
        # Events have no MsgId: sender + CreateTime (+ the event, its key).
        key = f"{sender}:{created or 'x' + digest}:{event}:{event_key}"[:128]
        if event == "subscribe":
            return Incoming(key, sender, store=False, immediate=WELCOME)
        if event == "click":  # a menu button: its configured question, never the raw key
            if event_key in menu:
                return Incoming(key, sender, text=menu[event_key])
            log.warning("wechat menu key %r is not configured (WechatAccount.menu)", event_key[:64])
            return Incoming(key, sender, store=False, immediate=MENU_UNKNOWN)
        return Incoming(key, sender, store=False)  # unsubscribe, view…: nothing to answer
    msg_id = _number(message, "MsgId", MAX_MSG_ID)
    if msg_id is None:
        log.info("wechat %s message from %s without a valid MsgId: keyed by its content", kind, sender)
    external_id = f"{sender}:{msg_id}" if msg_id is not None else f"{sender}:x{digest}"
    if kind == "text":
        return Incoming(external_id, sender, text=str(message.content or ""))
    if kind == "voice":
        recognition = str(getattr(message, "recognition", "") or "").strip()
        voice = {"type": "voice", "text": recognition or None, "url": f"media:{message.media_id}"}
        if not recognition:
            return Incoming(external_id, sender, attachments=[voice], immediate=VOICE_UNHEARD)
        return Incoming(external_id, sender, text=recognition, attachments=[voice])
    if kind == "image":
        image = {"type": "image", "url": str(getattr(message, "image", "") or "")}
        return Incoming(external_id, sender, attachments=[image], immediate=IMAGE_ONLY)
    if kind == "location":
        label = str(getattr(message, "label", "") or "")
        place = {"type": "location", "text": label or None,
                 "url": f"geo:{message.location_x},{message.location_y}"}  # fmt: skip
        return Incoming(external_id, sender, text=f"我在{label}" if label else "", attachments=[place])
    return Incoming(external_id, sender, immediate="暂时只能处理文字和语音消息，请打字告诉我需要什么帮助。")


def reply_xml(incoming: Incoming, text: str) -> str:
    """A passive text reply: From is the account's own id (the request's ToUserName), To the resident."""
    from wechatpy.replies import TextReply

    return str(TextReply(source=incoming.account_id, target=incoming.sender, content=text).render())


# --- customer-service messages ---------------------------------------------------------------


class SendFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def access_token(settings: Settings, redis: Redis, account: WechatAccount, *, fresh: bool = False) -> str:
    """The account's access token, from Redis while it has more than 5 minutes left."""
    cache_key = f"anju:wechat-token:{account.app_id}"
    if not fresh:
        try:
            cached = redis.get(cache_key)
            if cached:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
        except RedisError:
            pass
    # Through the outbound check like every request the server makes; errors carry WeChat's code only.
    try:
        reply = outbound.send(
            outbound.outbound_policy(settings),
            "GET",
            f"{settings.wechat_api_base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": account.app_id, "secret": account.app_secret},
            timeout=10,
        )
    except outbound.OutboundRefused as exc:
        raise SendFailed(f"微信接口地址：{exc.message}", permanent=True) from None
    except outbound.OutboundFailed as exc:
        raise SendFailed(f"微信接口：{exc.message}") from None
    data = _answer(reply)
    if "access_token" not in data:
        raise SendFailed(f"access token refused: errcode {_code(data.get('errcode'))}")
    token, expires = str(data["access_token"]), int(data.get("expires_in", 7200))
    with contextlib.suppress(RedisError):
        redis.set(cache_key, token, ex=max(expires - 300, 60))
    return token


def send_text(settings: Settings, redis: Redis, account: WechatAccount, openid: str, text: str) -> None:
    """One customer-service text message; a stale token is refreshed once."""
    payload = {"touser": openid, "msgtype": "text", "text": {"content": text}}
    for attempt in range(2):
        token = access_token(settings, redis, account, fresh=attempt > 0)
        try:
            reply = outbound.send(
                outbound.outbound_policy(settings),
                "POST",
                f"{settings.wechat_api_base}/cgi-bin/message/custom/send",
                params={"access_token": token},
                content=_json(payload),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
        except outbound.OutboundRefused as exc:
            raise SendFailed(f"微信接口地址：{exc.message}", permanent=True) from None
        except outbound.OutboundFailed as exc:
            raise SendFailed(f"微信接口：{exc.message}") from None
        data = _answer(reply)
        code = _code(data.get("errcode", 0))
        if code == 0:
            return
        if code in TOKEN_INVALID and attempt == 0:
            continue
        if code == OUT_OF_WINDOW:
            raise SendFailed("超过 48 小时客服消息窗口，只能等居民再次留言后回复", permanent=True)
        raise SendFailed(f"errcode {code}")
    raise SendFailed("access token refused twice")


def _answer(reply: outbound.Reply) -> dict[str, Any]:
    """WeChat's JSON answer (its text is never passed on: only the status and the errcode)."""
    try:
        data = reply.json()
    except ValueError:
        raise SendFailed(f"微信接口返回 HTTP {reply.status}，不是 JSON") from None
    if not isinstance(data, dict):
        raise SendFailed(f"微信接口返回 HTTP {reply.status}，格式不对")
    return data


def _code(value: Any) -> int:
    """WeChat's errcode as a number (-2 when it is missing or not a number)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return -2


def _json(payload: dict[str, Any]) -> bytes:
    import json

    return json.dumps(payload, ensure_ascii=False).encode()
