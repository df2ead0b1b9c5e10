"""Item pipelines: ``Collect`` keeps what the spider found (tests, ``anju crawl --dry-run``);
``Store`` judges each post against the company's watchlist, scores it, stores it once, groups it
into an event and grades it, and queues the alerts (sentiment.service.take)."""

from __future__ import annotations

from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem


class Collect:
    """Items pass through unchanged; crawlers.runner records them from ``item_scraped``."""

    def process_item(self, item: Any) -> Any:
        return item


class Store:
    """Judge, score, store, group and grade each post, in batches (one transaction per batch of up
    to ``BATCH`` items or every ``FLUSH_SECONDS``), then queue the alerts that batch raised.

    Stats: ``anju/stored``, ``anju/duplicate``, ``anju/same_text``, ``anju/irrelevant``,
    ``anju/empty``, ``anju/alerts``.
    """

    BATCH = 50  # posts per transaction: enough to keep SQLite's commits off the critical path
    FLUSH_SECONDS = 1.0  # and never hold a post longer than this (crawl → alert latency)

    def __init__(self, crawler: Crawler) -> None:
        from crawlers.runner import anju_settings

        self.crawler = crawler
        self.settings = anju_settings(crawler.settings)
        self.pending: list[Any] = []
        self.loop: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Store:
        return cls(crawler)

    def open_spider(self) -> None:
        from twisted.internet import task

        from core.db import get_database
        from sentiment.relevance import build_watchlist
        from sentiment.risk import RiskPolicy

        spider = self.crawler.spider
        self.source = getattr(spider, "source")  # noqa: B009  (our SourceSpider's)
        self.database = get_database(self.settings)
        with self.database.session() as session:
            self.watchlist = build_watchlist(session=session, company_id=self.source.company_id)
        self.policy = RiskPolicy.from_text(self.settings.risk_thresholds)
        self.loop = task.LoopingCall(self.flush)
        self.loop.start(self.FLUSH_SECONDS, now=False)

    def process_item(self, item: Any) -> Any:
        from sentiment.service import CrawledPost

        if not isinstance(item, CrawledPost):
            raise DropItem(f"not a post: {type(item).__name__}")
        self.pending.append(item)
        if len(self.pending) >= self.BATCH:
            self.flush()
        return item

    def close_spider(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        from core.redis import get_redis
        from crawlers.middlewares import mark_seen
        from crawlers.service import source_authorities
        from sentiment import alerts
        from sentiment.service import SourceScope, take

        batch, self.pending = self.pending, []
        stats = self.crawler.stats
        raised: list[tuple[int, int]] = []
        with self.database.session() as session:
            scope = SourceScope(
                company_id=self.source.company_id,
                source_authorities=source_authorities(session=session, company_id=self.source.company_id),
                source_id=self.source.id,
                authority=self.source.authority,
                community_id=self.source.community_id,
                city=self.source.city,
            )
            for crawled in batch:
                taken = take(session=session, scope=scope, crawled=crawled, watchlist=self.watchlist,
                             policy=self.policy)  # fmt: skip
                stats.inc_value(f"anju/{taken.outcome.why}")
                if taken.change is not None:
                    alert = alerts.raise_alert(session=session, event=taken.change.event)
                    if alert is not None:
                        raised.append((alert.id, alert.grade))
        # Committed: the posts are ours now. Mark their pages read, and send the alerts.
        if self.source.id is not None:
            mark_seen(get_redis(self.settings), self.source.id, [c.url for c in batch])
        for alert_id, grade in raised:
            alerts.queue_delivery(settings=self.settings, alert_id=alert_id, grade=grade)
        stats.inc_value("anju/alerts", len(raised))
