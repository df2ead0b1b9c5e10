"""Weibo keyword search through the mobile site's JSON API (m.weibo.cn).

Format (see tests/data/crawl/README.md, section 1):

- ``GET /api/container/getIndex?containerid=100103type={t}&q={keyword}&page_type=searchall&page=N``
  answers ``{"ok": 1, "data": {"cards": [...]}}``. A post is a ``card_type 9`` card with the post in
  ``card.mblog``; some answers wrap posts in ``card_type 11`` cards (``card_group``). Other cards
  (user cards, ``card_type 10``) and cards without ``mblog`` are skipped.
- Past the last page: ``{"ok": 0, "msg": "这里还没有内容", "data": {"cards": []}}``.
- Search needs a logged-in session. Without one the API answers HTTP 200 ``{"ok": -100, "url":
  "https://passport.weibo.cn/signin/..."}``, HTTP 432, or a redirect to the Sina Visitor System;
  that is counted (``anju/weibo/login_required``), logged, and nothing is stored. HTTP 418 means
  throttled (``anju/weibo/throttled``).
- ``mblog.text`` is HTML: topics, ``@`` mentions, emoticons (``<img alt=[怒]>``, kept as their alt
  text), a location link, ``<br />``. Long posts (``isLongText``) are cut off with a ``全文`` link;
  their full text comes from ``GET /statuses/extend?id={id}`` (``data.longTextContent``). When that
  fails, the cut-off text is used.
- A repost carries the original in ``retweeted_status``; its text is appended to the post's text,
  so a repost of a notice reads as being about the notice.

Configuration (``SourceSpec.config``):

    keywords: ["安居物业", "翠湖花园 物业"]   # one search per keyword
    search_type: 1          # 1 综合 (default), 61 实时 (newest first)
    max_pages: 5            # result pages per keyword
    cookies: "SUB=...; SUBP=...; XSRF-TOKEN=..."   # a logged-in m.weibo.cn session (needed live)
    user_agent: "..."       # optional; a mobile browser's by default
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from crawlers.spiders.base import SourceSpider, count_of, html_text, json_body, parse_time, session_cookies
from sentiment.service import CrawledPost

MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
POST_CARD = 9
GROUP_CARD = 11
NOT_LOGGED_IN = -100
CREATED_AT = "%a %b %d %H:%M:%S %z %Y"  # Sat Nov 21 08:30:02 +0800 2026

# <img alt=[怒] src=...> (alt unquoted on Weibo), also alt="..." / alt='...'
_EMOTICON = re.compile(r"""<img\b[^>]*?\balt=(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>""", re.I)
# the "...全文" link that ends a cut-off long text
_FULL_TEXT = re.compile(r"""<a\b[^>]*href=["'][^"']*/status/\w+["'][^>]*>\s*全文\s*</a>\s*$""", re.I)


# -- pure parsing ------------------------------------------------------------------------------
def search_url(base: str, keyword: str, *, search_type: int = 1, page: int = 1) -> str:
    query = urlencode(
        {"containerid": container_id(keyword, search_type), "page_type": "searchall", "page": page}
    )
    return f"{base.rstrip('/')}/api/container/getIndex?{query}"


def container_id(keyword: str, search_type: int = 1) -> str:
    return f"100103type={search_type}&q={keyword}"


def needs_login(data: Any) -> bool:
    """The not-logged-in answer: ``ok == -100`` or an ``ok != 1`` answer pointing at a login page."""
    if not isinstance(data, dict):
        return False
    if data.get("ok") == NOT_LOGGED_IN:
        return True
    if data.get("ok") != 1:
        hint = f"{data.get('url') or ''} {data.get('msg') or ''}"
        return "passport.weibo" in hint or "signin" in hint or "登录" in hint
    return False


def redirected_to_login(url: str) -> bool:
    """A redirect to passport.weibo.cn or the Sina Visitor System (passport.weibo.com/visitor)."""
    parts = urlsplit(url)
    return (parts.hostname or "").startswith("passport.") or "/visitor/" in parts.path


def post_cards(data: Any) -> list[dict[str, Any]]:
    """The ``mblog`` of every post card: top-level ``card_type 9`` and those inside ``card_group``."""
    cards = ((data or {}).get("data") or {}).get("cards") or []
    found: list[dict[str, Any]] = []
    for card in cards:
        if not isinstance(card, dict):
            continue
        group = (card.get("card_group") or []) if card.get("card_type") == GROUP_CARD else []
        for inner in [card, *group]:
            if isinstance(inner, dict) and inner.get("card_type") == POST_CARD:
                mblog = inner.get("mblog")
                if isinstance(mblog, dict) and mblog.get("id"):
                    found.append(mblog)
    return found


def has_cards(data: Any) -> bool:
    return bool(((data or {}).get("data") or {}).get("cards"))


def weibo_text(fragment: str | None) -> str:
    """Weibo's HTML as text: emoticons as their alt text (``[怒]``), no ``全文`` link."""
    if not fragment:
        return ""
    fragment = _FULL_TEXT.sub("", fragment)
    fragment = _EMOTICON.sub(lambda m: html.escape(m.group(1) or m.group(2) or m.group(3) or ""), fragment)
    return html_text(fragment)


def created_at(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), CREATED_AT).astimezone(UTC)
    except ValueError:
        return parse_time(str(value))  # "刚刚", "5分钟前", "昨天 09:13" on some endpoints


def parse_mblog(
    mblog: dict[str, Any], *, long_text: str | None = None, counts: dict[str, Any] | None = None
) -> CrawledPost:
    """One post. ``long_text`` (from statuses/extend) replaces the cut-off text; ``counts`` are the
    fresher engagement numbers that came with it."""
    user = mblog.get("user") or {}
    text = weibo_text(long_text if long_text else mblog.get("text"))
    original = mblog.get("retweeted_status")
    if isinstance(original, dict):
        shared = weibo_text(original.get("text"))
        name = (original.get("user") or {}).get("screen_name")
        if shared:
            text = f"{text}\n\n转发 @{name}：{shared}" if name else f"{text}\n\n转发：{shared}"
    numbers = {**mblog, **(counts or {})}
    bid = mblog.get("bid")
    post_id = str(mblog["id"])
    url = f"https://m.weibo.cn/status/{bid}" if bid else f"https://m.weibo.cn/detail/{post_id}"
    followers = user.get("followers_count")
    return CrawledPost(
        platform="weibo",
        external_id=post_id,
        url=url,
        title=None,
        text=text,
        author=user.get("screen_name"),
        author_followers=count_of(followers) if followers is not None else None,
        author_verified=bool(user.get("verified")),
        published_at=created_at(mblog.get("created_at")),
        likes=count_of(numbers.get("attitudes_count")),
        comments=count_of(numbers.get("comments_count")),
        reposts=count_of(numbers.get("reposts_count")),
    )


def parse_search(data: Any) -> list[CrawledPost]:
    """Every post of a search page, long ones with their cut-off text."""
    return [parse_mblog(mblog) for mblog in post_cards(data)]


def parse_extend(data: Any) -> tuple[str, dict[str, Any]] | None:
    """statuses/extend → (the full HTML text, the counts), or None when it has none."""
    inner = (data or {}).get("data") if isinstance(data, dict) else None
    if not isinstance(inner, dict) or not inner.get("longTextContent"):
        return None
    if inner.get("ok", 1) != 1:
        return None
    counts = {k: inner[k] for k in ("reposts_count", "comments_count", "attitudes_count") if k in inner}
    return str(inner["longTextContent"]), counts


# -- the spider --------------------------------------------------------------------------------
class WeiboSpider(SourceSpider):
    kind = "weibo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reported: set[str] = set()  # post ids already yielded (a post found by two keywords)
        self.login_warned = False

    @property
    def keywords(self) -> list[str]:
        value = self.config.get("keywords") or []
        return [value] if isinstance(value, str) else [str(k) for k in value if str(k).strip()]

    @property
    def search_type(self) -> int:
        return int(self.config.get("search_type", 1))

    def headers(self, keyword: str) -> dict[str, str]:
        referer = self.absolute(
            "/search?" + urlencode({"containerid": container_id(keyword, self.search_type)})
        )
        headers = {
            "User-Agent": str(self.config.get("user_agent") or MOBILE_UA),
            "Accept": "application/json, text/plain, */*",
            "Referer": referer,
            "X-Requested-With": "XMLHttpRequest",
        }
        cookies = session_cookies(self.config.get("cookies"))
        if cookies:
            headers["MWeibo-Pwa"] = "1"
            if cookies.get("XSRF-TOKEN"):
                headers["X-XSRF-TOKEN"] = cookies["XSRF-TOKEN"]
        return headers

    async def start(self) -> Any:
        if not self.keywords:
            self.logger.warning("weibo source %s has no keywords configured", self.source.key)
            return
        for keyword in self.keywords:
            yield self.search(keyword, 1)

    def search(self, keyword: str, page: int) -> scrapy.Request:
        return self.request(
            search_url(self.source.url, keyword, search_type=self.search_type, page=page),
            callback=self.parse_page,
            headers=self.headers(keyword),
            meta={"handle_httpstatus_list": [418, 432]},
            cb_kwargs={"keyword": keyword, "page": page},
        )

    def parse_page(
        self, response: Response, keyword: str = "", page: int = 1, **kwargs: Any
    ) -> Iterator[CrawledPost | scrapy.Request]:
        if response.status == 418:
            self.count("weibo/throttled")
            self.logger.warning(
                "weibo throttled (HTTP 418) on %r page %d: back off for minutes", keyword, page
            )
            return
        data = json_body(response)
        if response.status == 432 or redirected_to_login(response.url) or needs_login(data):
            self.login_required(keyword)
            return
        if not isinstance(data, dict):
            self.skip_malformed(response, "search answer is not JSON")
            return
        if data.get("ok") != 1 or not has_cards(data):
            self.logger.info(
                "weibo search %r ends at page %d (%s)", keyword, page, data.get("msg") or "no cards"
            )
            return
        self.count("weibo/pages")
        for mblog in post_cards(data):
            post_id = str(mblog.get("id"))
            if post_id in self.reported:
                continue
            self.reported.add(post_id)
            if mblog.get("isLongText"):
                yield self.request(
                    self.absolute("/statuses/extend?" + urlencode({"id": post_id})),
                    callback=self.parse_extend,
                    errback=self.extend_failed,
                    headers=self.headers(keyword),
                    cb_kwargs={"mblog": mblog},
                )
                continue
            yield from self.post(response, mblog)
        if page < self.max_pages:
            yield self.search(keyword, page + 1)

    def parse_extend(
        self, response: Response, mblog: dict[str, Any] | None = None, **kwargs: Any
    ) -> Iterator[CrawledPost]:
        assert mblog is not None
        extended = parse_extend(json_body(response))
        if extended is None:
            self.count("weibo/long_text_failed")
            self.logger.warning("no long text for weibo %s; using the cut-off text", mblog.get("id"))
            yield from self.post(response, mblog)
            return
        long_text, counts = extended
        self.count("weibo/long_text")
        yield from self.post(response, mblog, long_text=long_text, counts=counts)

    def extend_failed(self, failure: Failure) -> Iterator[CrawledPost]:
        mblog = failure.request.cb_kwargs.get("mblog") or {}  # type: ignore[attr-defined]
        self.count("weibo/long_text_failed")
        self.logger.warning("long text of weibo %s failed (%s); using the cut-off text",
                            mblog.get("id"), failure.getErrorMessage())  # fmt: skip
        try:
            yield parse_mblog(mblog)
            self.count("weibo/items")
        except (KeyError, TypeError, ValueError) as exc:
            self.logger.warning("unreadable weibo post: %r", exc)

    def post(self, response: Response, mblog: dict[str, Any], **extra: Any) -> Iterator[CrawledPost]:
        try:
            post = parse_mblog(mblog, **extra)
        except (KeyError, TypeError, ValueError) as exc:
            self.skip_malformed(response, f"unreadable post {mblog.get('id')!r}: {exc!r}")
            return
        self.count("weibo/items")
        yield post

    def login_required(self, keyword: str) -> None:
        self.count("weibo/login_required")
        if not self.login_warned:
            self.login_warned = True
            self.logger.warning(
                "weibo search for %r needs a logged-in m.weibo.cn session: set the source's "
                "'cookies' (SUB=...); nothing was stored",
                keyword,
            )
