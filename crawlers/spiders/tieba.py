"""Baidu Tieba forums (HTML): the thread list of a forum (吧), then each thread's first floor.

Format (see tests/data/crawl/README.md, section 2):

- ``GET /f?kw={吧名}&ie=utf-8&pn={0,50,100,…}``: 50 threads a page. The list is not in the page body
  but inside an HTML comment in ``<code id="pagelet_html_frs-list/pagelet/thread_list">`` after
  ``</html>`` (bigpipe); that comment is parsed as HTML. Rows are ``li.j_thread_list[data-field]``
  (``data-field`` is JSON: ``id``, ``author_name``, ``reply_num``, ``is_top``); pinned threads sit
  in ``ul#thread_top_list`` and are read too. List dates are relative (``M-D``, ``HH:mm``,
  ``YYYY-MM``). The next page exists while ``#frs_list_pager a.next`` does; it is built from
  ``kw`` and ``pn + 50`` on the configured base URL (the page's own link is protocol-relative).
- ``GET /p/{tid}``: title ``h3.core_title_txt@title`` (``h1`` on older pages); floors
  ``div.p_postlist > div.l_post[data-field]`` without ads; the first floor's
  ``div.j_d_post_content`` is the thread's text and its last ``span.tail-info`` the full time
  (``YYYY-MM-DD HH:MM``, China time). When a thread page cannot be read (404, a changed layout),
  the list row (title and abstract) is the post.
- Anti-bot: a 302 to ``wappass.baidu.com/static/captcha/...`` or an HTTP 403 page titled
  ``百度安全验证``. It is counted (``anju/tieba/security_verification``), logged, never parsed as
  an empty forum or stored; the forum's paging stops there.

Configuration (``SourceSpec.config``):

    forums: ["翠湖花园", "锦江苑"]   # forum names (kw), one list per forum
    max_pages: 3                      # list pages per forum (50 threads each)
    user_agent: "..."                 # optional; a desktop browser's by default
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import scrapy
from parsel import Selector
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawlers.spiders.base import BEIJING, SourceSpider, count_of, html_text, parse_time
from sentiment.service import CrawledPost

DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
PAGE_SIZE = 50
THREAD_LIST = "pagelet_html_frs-list/pagelet/thread_list"
SECURITY_TITLE = "百度安全验证"
_YEAR_MONTH = re.compile(r"(\d{4})-(\d{1,2})$")
_FULL_TIME = re.compile(r"\d{4}-\d{1,2}-\d{1,2}\s+\d{1,2}:\d{2}")


@dataclass(frozen=True)
class ListedThread:
    """A row of the forum list: enough for a post when the thread page cannot be read."""

    tid: str
    title: str
    author: str | None
    replies: int
    created: str  # as listed: "11-20", "08:12", "2025-10"
    abstract: str
    pinned: bool = False

    def post(self, *, now: datetime | None = None) -> CrawledPost:
        return CrawledPost(
            platform="tieba",
            external_id=self.tid,
            url=thread_url(self.tid),
            title=self.title or None,
            text=self.abstract or self.title,
            author=self.author,
            published_at=list_time(self.created, now=now),
            comments=self.replies,
        )


# -- pure parsing ------------------------------------------------------------------------------
def thread_url(tid: str) -> str:
    return f"https://tieba.baidu.com/p/{tid}"


def forum_path(forum: str, pn: int = 0) -> str:
    return "/f?" + urlencode({"kw": forum, "ie": "utf-8", "pn": pn})


def is_security_page(response: Response) -> bool:
    """Baidu's captcha wall: a redirect to wappass, or a page titled 百度安全验证."""
    parts = urlsplit(response.url)
    if (parts.hostname or "").startswith("wappass.") or "/static/captcha/" in parts.path:
        return True
    if not isinstance(response, TextResponse):
        return False
    title = response.xpath("//title/text()").get() or ""
    return SECURITY_TITLE in title


def list_time(text: str, *, now: datetime | None = None) -> datetime | None:
    """A list date: ``HH:mm`` today, ``M-D`` this year, ``YYYY-MM`` for older threads."""
    text = (text or "").strip()
    if m := _YEAR_MONTH.fullmatch(text):
        try:
            return datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=BEIJING).astimezone(UTC)
        except ValueError:
            return None
    return parse_time(text, now=now)


def thread_list(page: str) -> Selector | None:
    """The thread list of a forum page: the HTML inside the bigpipe comment (or the page itself
    when the list is rendered inline). None when the page has no list at all."""
    selector = Selector(text=page)
    comment = selector.xpath(f'//code[@id="{THREAD_LIST}"]/comment()').get()
    if comment:
        inner = comment.removeprefix("<!--").removesuffix("-->")
        return Selector(text=inner)
    if selector.css("li.j_thread_list[data-field]"):
        return selector
    return None


def parse_forum(page: str) -> tuple[list[ListedThread], bool] | None:
    """(threads, has a next page), or None when the page is not a forum list."""
    listing = thread_list(page)
    if listing is None:
        return None
    threads: list[ListedThread] = []
    for row in listing.css("li.j_thread_list[data-field]"):
        try:
            field = json.loads(row.attrib.get("data-field") or "{}")
        except ValueError:
            field = {}
        tid = str(field.get("id") or row.attrib.get("data-tid") or "").strip()
        if not tid.isdigit():
            continue
        link = row.css("a.j_th_tit")
        title = (link.attrib.get("title") if link else None) or " ".join(link.css("::text").getall())
        author = field.get("author_name")
        if not author:
            label = row.css("span.tb_icon_author::attr(title)").get() or ""
            author = label.split(":", 1)[-1].strip() or None
        replies = field.get("reply_num")
        if replies is None:
            replies = row.css("span.threadlist_rep_num::text").get()
        threads.append(
            ListedThread(
                tid=tid,
                title=title.strip(),
                author=author,
                replies=count_of(replies),
                created=(row.css("span.is_show_create_time::text").get() or "").strip(),
                abstract=" ".join(t.strip() for t in row.css("div.threadlist_abs ::text").getall()).strip(),
                pinned=bool(field.get("is_top")),
            )
        )
    has_next = bool(listing.css("#frs_list_pager a.next"))
    return threads, has_next


def parse_thread(page: str, listed: ListedThread | None = None) -> CrawledPost | None:
    """A thread page's title and first floor as a post, or None when the page has neither."""
    selector = Selector(text=page)
    title = (
        selector.css("h3.core_title_txt::attr(title), h1.core_title_txt::attr(title)").get()
        or " ".join(selector.css("h3.core_title_txt ::text, h1.core_title_txt ::text").getall()).strip()
    )
    floors = [
        f for f in selector.css("div.p_postlist > div.l_post[data-field]") if not f.css(".ad_bottom_view")
    ]
    if not floors:
        return None
    first = floors[0]
    field: dict[str, Any] = {}
    for floor in floors:
        try:
            candidate = json.loads(floor.attrib.get("data-field") or "{}")
        except ValueError:
            continue
        if (candidate.get("content") or {}).get("post_no") == 1:
            first, field = floor, candidate
            break
    if not field:
        try:
            field = json.loads(first.attrib.get("data-field") or "{}")
        except ValueError:
            field = {}
    body = first.css("div.j_d_post_content").get()
    text = html_text(body)
    if not (text or title):
        return None
    content = field.get("content") or {}
    tid = str(content.get("thread_id") or (listed.tid if listed else "")).strip()
    if not tid:
        return None
    published = None
    for tail in reversed(first.css("div.post-tail-wrap span.tail-info::text").getall()):
        if _FULL_TIME.search(tail):
            published = parse_time(tail)
            break
    if published is None and content.get("date"):  # old (2015–2018) pages
        published = parse_time(str(content["date"]))
    if published is None and listed is not None:
        published = list_time(listed.created)
    author = (field.get("author") or {}).get("user_name") or (listed.author if listed else None)
    return CrawledPost(
        platform="tieba",
        external_id=tid,
        url=thread_url(tid),
        title=title or (listed.title if listed else None) or None,
        text=text or title,
        author=author,
        published_at=published,
        comments=listed.replies if listed else max(0, len(floors) - 1),
    )


# -- the spider --------------------------------------------------------------------------------
class TiebaSpider(SourceSpider):
    kind = "tieba"

    @property
    def forums(self) -> list[str]:
        value = self.config.get("forums") or []
        return [value] if isinstance(value, str) else [str(f) for f in value if str(f).strip()]

    @property
    def headers(self) -> dict[str, str]:
        return {"User-Agent": str(self.config.get("user_agent") or DESKTOP_UA)}

    async def start(self) -> Any:
        if not self.forums:
            self.logger.warning("tieba source %s has no forums configured", self.source.key)
            return
        for forum in self.forums:
            yield self.forum_page(forum, 0)

    def forum_page(self, forum: str, pn: int) -> scrapy.Request:
        return self.request(
            self.absolute(forum_path(forum, pn)),
            callback=self.parse_forum,
            headers=self.headers,
            meta={"handle_httpstatus_list": [403]},
            cb_kwargs={"forum": forum, "pn": pn},
        )

    def parse_forum(
        self, response: Response, forum: str = "", pn: int = 0, **kwargs: Any
    ) -> Iterator[scrapy.Request]:
        if is_security_page(response):
            self.security_wall(response)
            return
        if response.status == 403 or not isinstance(response, TextResponse):
            self.skip_malformed(response, f"forum page answered HTTP {response.status}")
            return
        parsed = parse_forum(response.text)
        if parsed is None:
            self.skip_malformed(response, "no thread list in the forum page")
            return
        threads, has_next = parsed
        self.count("tieba/pages")
        for thread in threads:
            yield self.request(
                self.absolute(f"/p/{thread.tid}"),
                detail=True,
                callback=self.parse_thread,
                errback=self.thread_failed,
                headers=self.headers,
                meta={"handle_httpstatus_list": [403]},
                cb_kwargs={"listed": thread},
            )
        if threads and has_next and pn // PAGE_SIZE + 1 < self.max_pages:
            yield self.forum_page(forum, pn + PAGE_SIZE)

    def parse_thread(
        self, response: Response, listed: ListedThread | None = None, **kwargs: Any
    ) -> Iterator[CrawledPost]:
        assert listed is not None
        if is_security_page(response):
            self.security_wall(response)
            yield from self.fallback(listed)
            return
        post = parse_thread(response.text, listed) if isinstance(response, TextResponse) else None
        if post is None or response.status != 200:
            self.skip_malformed(response, "thread page without a first floor")
            yield from self.fallback(listed)
            return
        self.count("tieba/items")
        yield post

    def thread_failed(self, failure: Failure) -> Iterator[CrawledPost]:
        if failure.check(IgnoreRequest) and not failure.check(HttpError):
            return  # read in an earlier run (SeenPages); HttpError is an IgnoreRequest too
        listed = failure.request.cb_kwargs.get("listed")  # type: ignore[attr-defined]
        self.count("tieba/detail_failed")
        self.logger.info("thread page failed (%s); using the list row", failure.getErrorMessage())
        if listed is not None:
            yield from self.fallback(listed)

    def fallback(self, listed: ListedThread) -> Iterator[CrawledPost]:
        self.count("tieba/items")
        self.count("tieba/from_list")
        yield listed.post()

    def security_wall(self, response: Response) -> None:
        self.count("tieba/security_verification")
        self.logger.warning(
            "tieba answered its security verification (百度安全验证) for %s: crawling is blocked "
            "for a while; nothing stored from that page",
            response.url,
        )
