"""Any news site or forum with a list page and detail pages, read with CSS selectors from the
source's configuration (no code per site). A Discuz! forum is configured the same way.

    start_urls: ["/news/index.html"]           # relative to the source URL
    list:
      item: "ul.news-list > li.news-item"      # one row per article / thread
      link: "a.news-title::attr(href)"
      date: "span.news-date::text"             # optional; rows older than max_age_days are skipped
      next: "div.pager a.next::attr(href)"     # optional; followed up to max_pages
      replies: "td.num a.xi2::text"            # optional counts read from the row
      views: "td.num em::text"
    detail:
      title: "h1.article-title::text"
      published: "div.article-meta span.pub-time::text"   # several selectors: "a::text | b::attr(title)"
      author: "div.article-meta span.author::text"
      content: "div.article-content p::text"  # every match, joined as paragraphs
      required: [title, published, content]    # a page missing one of them is malformed: skipped
    max_pages: 3
    max_age_days: 30

Pages are decoded as scrapy does (BOM, then the HTTP charset, then ``<meta>``; ``gbk``/``gb2312``
read as GB18030). A cut-off or empty page is skipped and counted (``anju/generic/skipped_malformed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import scrapy
from parsel import Selector
from scrapy.http import Response, TextResponse

from crawlers.spiders.base import SourceSpider, count_of, parse_time
from sentiment.service import CrawledPost

DEFAULT_REQUIRED = ("title", "content")


def pick(selector: Selector | TextResponse, query: str | None, *, every: bool = False) -> str | None:
    """The first non-empty match of ``a | b | c`` (alternatives tried in order), or all of one.
    Alternatives are CSS selectors, or XPath after ``xpath:``."""
    if not query:
        return None
    for alternative in (q.strip() for q in query.split(" | ")):
        found = _select(selector, alternative)
        if every:
            parts = [p.strip() for p in found.getall() if p.strip()]
            if parts:
                return "\n".join(parts)
            continue
        for value in found.getall():
            if value and value.strip():
                return value.replace("\xa0", " ").strip()
    return None


def _select(selector: Selector | TextResponse, query: str) -> Any:
    """CSS by default; ``xpath:`` for what CSS cannot say (the first floor of a thread)."""
    if query.startswith("xpath:"):
        return selector.xpath(query.removeprefix("xpath:"))
    return selector.css(query)


class GenericSpider(SourceSpider):
    kind = "generic"

    async def start(self) -> Any:
        for path in self.config.get("start_urls") or [self.source.url]:
            yield self.request(self.absolute(path), callback=self.parse, cb_kwargs={"page": 1})

    def parse(self, response: Response, page: int = 1, **kwargs: Any) -> Iterator[scrapy.Request]:
        if not isinstance(response, TextResponse) or not response.text.strip():
            self.skip_malformed(response, "empty list page")
            return
        rules = self.config.get("list") or {}
        rows = _select(response, rules.get("item", "body"))
        max_age = timedelta(days=int(self.config.get("max_age_days", 30)))
        for row in rows:
            link = pick(row, rules.get("link"))
            if not link:
                continue
            listed = parse_time(pick(row, rules.get("date")))
            if listed is not None and datetime.now(UTC) - listed > max_age:
                self.count("generic/too_old")
                continue
            counts = {"comments": count_of(pick(row, rules.get("replies"))),
                      "views": count_of(pick(row, rules.get("views")))}  # fmt: skip
            yield self.request(response.urljoin(link), detail=True, callback=self.parse_detail,
                               cb_kwargs={"listed": counts})  # fmt: skip
        next_link = pick(response, rules.get("next"))
        if next_link and page < self.max_pages:
            yield self.request(response.urljoin(next_link), callback=self.parse, cb_kwargs={"page": page + 1})

    def parse_detail(
        self, response: Response, listed: dict[str, int] | None = None, **kwargs: Any
    ) -> Iterator[CrawledPost]:
        if not isinstance(response, TextResponse) or not response.body.strip():
            self.skip_malformed(response, "empty page")
            return
        rules = self.config.get("detail") or {}
        found = {
            "title": pick(response, rules.get("title", "h1::text | title::text")),
            "published": pick(response, rules.get("published")),
            "author": pick(response, rules.get("author")),
            "content": pick(response, rules.get("content", "p::text"), every=True),
        }
        published = parse_time(found["published"])
        if found["published"] and published is None:
            found["published"] = None  # a date we cannot read is as good as none
        missing = [k for k in rules.get("required", DEFAULT_REQUIRED) if not found.get(k)]
        if missing:
            self.skip_malformed(response, f"missing {', '.join(missing)}")
            return
        self.count("generic/items")
        host = urlsplit(self.source.url).hostname or "web"
        author = found["author"]
        if author:
            author = author.removeprefix("来源：").removeprefix("作者：").strip()
        yield CrawledPost(
            platform=(self.config.get("platform") or f"web:{host}")[:32],
            external_id=response.url,
            url=response.url,
            title=found["title"],
            text=found["content"] or found["title"] or "",
            author=author,
            published_at=published,
            comments=(listed or {}).get("comments", 0),
            views=(listed or {}).get("views", 0),
        )
