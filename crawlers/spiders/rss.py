"""RSS 2.0 and Atom 1.0 feeds (news sites, a city's 民生 channel), read with feedparser: one
post per item, the item's own text (content, else summary), published time (else updated)."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response

from crawlers.spiders.base import SourceSpider, html_text
from sentiment.service import CrawledPost


class FeedSpider(SourceSpider):
    kind = "rss"

    async def start(self) -> Any:
        yield self.request(self.source.url, callback=self.parse)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[CrawledPost | scrapy.Request]:
        import feedparser

        feed = feedparser.parse(response.body)
        if not feed.entries:
            self.skip_malformed(response, f"no feed entries ({feed.get('bozo_exception')!r})")
            return
        host = urlsplit(feed.feed.get("link") or self.source.url).hostname or "feed"
        for entry in feed.entries:
            yield from self._post(entry, host)

    def _post(self, entry: Any, host: str) -> Iterator[CrawledPost]:
        body = ""
        if entry.get("content"):
            body = entry.content[0].get("value", "")
        body = body or entry.get("summary", "")
        text = html_text(body)
        title = html_text(entry.get("title"))
        if not (text or title):
            self.count("rss/skipped_empty")
            return
        parsed = entry.get("published_parsed") or entry.get("updated_parsed")
        published = datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None
        link = entry.get("link") or ""
        self.count("rss/items")
        yield CrawledPost(
            platform=f"rss:{host}"[:32],
            external_id=entry.get("id") or link,
            url=link or self.source.url,
            title=title or None,
            text=text or title,
            author=entry.get("author") or None,
            published_at=published,
        )
