"""A small news feed and forum served by the service itself in demo mode (``/demo-site/``), so the
demo's sources have something real to crawl without the internet. The pages are our own invented
content; times in them are written relative to now (``{{ago:3h}}``, ``{{time:2h}}``, ``{{day:1}}``)
so the demo always shows fresh posts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.resources import files
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from core.errors import NotFound
from crawlers.schemas import BEIJING

router = APIRouter(include_in_schema=False)

_MARK = re.compile(r"\{\{(ago|time|day):(\d+)(h?)\}\}")
_PAGE = re.compile(r"^(feed\.xml|news/(index|\d{4})\.html)$")


def render(text: str, *, now: datetime | None = None) -> str:
    local = (now or datetime.now(UTC)).astimezone(BEIJING)

    def fill(match: re.Match[str]) -> str:
        kind, amount = match.group(1), int(match.group(2))
        moment = local - (timedelta(hours=amount) if match.group(3) else timedelta(days=amount))
        if kind == "ago":
            return format_datetime(moment)
        if kind == "time":
            return moment.strftime("%Y-%m-%d %H:%M")
        return moment.strftime("%Y-%m-%d")

    return _MARK.sub(fill, text)


@router.get("/demo-site/{path:path}")
def demo_page(path: str) -> Response:
    if not _PAGE.match(path):
        raise NotFound("演示站点没有这个页面")
    resource = files("crawlers").joinpath(f"demo/{path}")
    if not resource.is_file():
        raise NotFound("演示站点没有这个页面")
    kind = "application/rss+xml; charset=utf-8" if path.endswith(".xml") else "text/html; charset=utf-8"
    return Response(render(resource.read_text(encoding="utf-8")), media_type=kind)


DEMO_SOURCES: tuple[tuple[str, str, str, str, str, dict[str, Any]], ...] = (
    # key, name, kind, path, authority, config
    ("demo-news", "城市社区快讯（演示）", "rss", "/demo-site/feed.xml", "media", {}),
    (
        "demo-forum",
        "邻里论坛物业板块（演示）",
        "generic",
        "/demo-site/news/index.html",
        "forum",
        {
            "platform": "forum:邻里论坛",
            "list": {
                "item": "li.thread",
                "link": "a.title::attr(href)",
                "date": "span.date::text",
                "replies": "span.replies::text",
            },
            "detail": {
                "title": "h1.subject::text",
                "published": "span.time::text",
                "author": "span.author::text",
                "content": "div.content p::text",
                "required": ["title", "content"],
            },
        },
    ),
)
