"""How often the public chat may be used, and what is never refused.

Fixed one-minute windows in Redis (shared by every API process), per chat session and per client
address (the TCP peer, or the client a trusted proxy names: see ``Settings.trusted_proxies``).
Before any count is looked at, the message is read with the assistant's emergency rules: "煤气泄漏了"
is answered however many messages came from that address. After an emergency, the session's next
messages (where, which phone) are not held against the address's count either. A refusal tells the
resident whom to call instead.
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from redis.exceptions import RedisError

from assistant.routing import Action, route
from core.errors import TooManyRequests
from core.settings import Settings

log = logging.getLogger(__name__)

# Called when no duty phone, nor the company's service phone, is on record.
FALLBACK_CALL = "遇到火警请拨打 119，急救 120，报警 110"


def is_emergency(text: str) -> bool:
    """The emergency rules alone (regular expressions, well under a millisecond): cheap enough to
    run on every message, including the ones a flood sends."""
    return route(text[:2000]).action is Action.emergency


def _emergency_key(session_id: str) -> str:
    return f"anju:chat-emergency:{session_id}"


def _count(redis: Redis, key: str) -> int:
    window = f"anju:chat-rate:{key}:{int(time.time() // 60)}"
    count = int(redis.incr(window))
    if count == 1:
        redis.expire(window, 120)
    return count


def over_limit(redis: Redis, *, settings: Settings, session_id: str, address: str, text: str) -> bool:
    """Whether this message is refused (counted either way). Never for an emergency; never when
    Redis cannot be reached (an emergency must get through)."""
    if is_emergency(text):
        return False
    try:
        if _count(redis, f"session:{session_id}") > settings.chat_per_session_per_minute:
            return True
        if redis.exists(_emergency_key(session_id)):
            return False  # the resident is telling us where the fire is
        return _count(redis, f"address:{address}") > settings.chat_per_address_per_minute
    except RedisError:
        return False


def emergency_declared(redis: Redis, *, settings: Settings, session_id: str) -> None:
    """Remember that this session reported an emergency (its follow-ups pass the address limit)."""
    try:
        redis.set(_emergency_key(session_id), 1, ex=settings.chat_emergency_minutes * 60)
    except RedisError:
        log.warning("could not mark chat session as in an emergency (Redis unreachable)")


def refusal(*, duty_phone: str | None, service_phone: str | None) -> TooManyRequests:
    """The 429 a limited resident sees: whom to call is in the message itself and in the details."""
    if duty_phone:
        call = f"紧急情况请直接拨打小区 24 小时值班电话 {duty_phone}"
    elif service_phone:
        call = f"紧急情况请直接拨打物业服务热线 {service_phone}；{FALLBACK_CALL}"
    else:
        call = FALLBACK_CALL
    return TooManyRequests(
        f"发送太频繁了，请稍后再试。{call}。",
        details={"duty_phone": duty_phone or service_phone},
    )
