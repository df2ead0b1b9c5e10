"""Downloader middleware: incremental crawling. A page that holds one post (``meta["anju_detail"]``)
and was read in an earlier run is not fetched again; the pipeline marks pages read once their
post is judged. The marks live in Redis per source (``anju:crawl:seen:<source id>``), so every
crawler process sharing that Redis skips them."""

from __future__ import annotations

import hashlib

import redis
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured

SEEN_TTL_SECONDS = 90 * 24 * 3600  # a page untouched for 90 days may be read again


def seen_key(source_id: int) -> str:
    return f"anju:crawl:seen:{source_id}"


def url_mark(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:20]


class SeenPages:
    def __init__(self, connection: redis.Redis, crawler: Crawler) -> None:
        self.redis = connection
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SeenPages:
        url = crawler.settings.get("ANJU_REDIS_URL")
        if not url or crawler.settings.getbool("ANJU_FORGET_SEEN"):
            raise NotConfigured
        return cls(redis.Redis.from_url(url), crawler)

    def process_request(self, request: Request) -> None:
        spider = self.crawler.spider
        source_id = getattr(getattr(spider, "source", None), "id", None)
        if not request.meta.get("anju_detail") or source_id is None:
            return None
        if self.redis.sismember(seen_key(source_id), url_mark(request.url)):
            self.crawler.stats.inc_value("anju/seen_skipped")
            raise IgnoreRequest(f"read in an earlier run: {request.url}")
        return None


def mark_seen(connection: redis.Redis, source_id: int, urls: list[str]) -> None:
    if not urls:
        return
    key = seen_key(source_id)
    pipe = connection.pipeline()
    pipe.sadd(key, *[url_mark(u) for u in urls])
    pipe.expire(key, SEEN_TTL_SECONDS)
    pipe.execute()
