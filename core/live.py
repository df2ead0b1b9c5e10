"""Live updates for open pages (the agent console, the resident's chat page) over Redis pub/sub
and server-sent events.

An event says only *what* changed ({"type": "case", "case_id": 7, ...}); a page fetches the
current state through the API. Pub/sub keeps nothing: a page that was disconnected refetches
everything when its EventSource reconnects, so a missed event costs nothing but a second.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from core.redis import get_async_redis, get_redis
from core.settings import Settings

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing an idle stream


def company_topic(company_id: int) -> str:
    return f"anju:live:company:{company_id}"


def conversation_topic(conversation_id: int) -> str:
    return f"anju:live:conversation:{conversation_id}"


def channel(settings: Settings, topic: str) -> str:
    """The pub/sub channel of a topic. Channels are shared by all databases of a Redis server, so
    the database number is part of the name: two installations (or two test processes) on one
    server with different databases never see each other's events."""
    db = get_redis(settings).connection_pool.connection_kwargs.get("db", 0)
    return f"{topic}@{db}"


def publish(settings: Settings, topic: str, event: dict[str, Any]) -> None:
    try:
        get_redis(settings).publish(channel(settings, topic), json.dumps(event, ensure_ascii=False))
    except Exception as exc:  # a page misses one update; it refetches when it reconnects
        log.warning("live update to %s not published: %s", topic, exc)


async def stream(
    settings: Settings, topics: list[str], *, keep: Callable[[dict[str, Any]], bool] = lambda _e: True
) -> AsyncIterator[str]:
    """Server-sent events from these topics (``keep`` filters what this reader may see). Ends
    when Redis goes away; the browser's EventSource reconnects by itself."""
    pubsub = get_async_redis(settings).pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(*(channel(settings, t) for t in topics))
        yield "retry: 1000\nevent: ready\ndata: {}\n\n"
        while True:
            message = await pubsub.get_message(timeout=KEEPALIVE_SECONDS)
            if message is None:
                yield ": keepalive\n\n"
                continue
            try:
                event = json.loads(message["data"])
            except (TypeError, ValueError):
                continue
            if keep(event):
                data = json.dumps(event, ensure_ascii=False)
                yield f"event: {event.get('type', 'update')}\ndata: {data}\n\n"
    except Exception as exc:
        log.info("live stream ended: %s", exc)
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
