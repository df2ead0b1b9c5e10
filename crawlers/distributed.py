"""Several crawler processes (on one machine or many, sharing one Redis) working on one crawl run.

scrapy-redis keeps the run's frontier in Redis: the request queue and the seen-request
fingerprints (``anju:crawl:run:<run id>:requests`` / ``:dupefilter``), so each page is fetched by
exactly one process. What scrapy-redis leaves to us:

- **Who starts.** Only the first process of a run (the one that sets ``:started``) sends the
  spider's start requests; the others take work from the shared queue.
- **When to stop.** A process with nothing to do stays open while a peer still has requests in
  flight (a peer's response may add requests to the queue), and while the run has not started.
  Each process keeps a heartbeat in ``:busy`` (its in-flight count), so a dead peer stops
  counting after ``PEER_SILENT_SECONDS``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import redis
from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy_redis.scheduler import Scheduler as RedisScheduler

PEER_SILENT_SECONDS = 30  # a peer that has not reported for this long is gone
START_WAIT_SECONDS = 60  # a joining process waits this long for the run to start before giving up
NUDGE_SECONDS = 0.5  # how soon an idle process takes up work a peer queued
KEY_TTL_SECONDS = 24 * 3600  # a run's keys outlive it by a day, then Redis drops them


def run_prefix(run_id: int) -> str:
    return f"anju:crawl:run:{run_id}"


def frontier_settings(*, run_id: int, redis_url: str) -> dict[str, Any]:
    """The scrapy settings that put a run's frontier in Redis."""
    prefix = run_prefix(run_id)
    return {
        "SCHEDULER": "crawlers.distributed.Scheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_QUEUE_KEY": f"{prefix}:requests",
        "SCHEDULER_DUPEFILTER_KEY": f"{prefix}:dupefilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_PERSIST": True,  # one process finishing must not empty the queue its peers work on
        "SCHEDULER_IDLE_BEFORE_CLOSE": 0,
        "REDIS_URL": redis_url,
        "ANJU_DISTRIBUTED_RUN": run_id,
        "EXTENSIONS": {"crawlers.distributed.SharedRun": 100},
        "SPIDER_MIDDLEWARES": {"crawlers.distributed.FirstProcessStarts": 10},
    }


class Scheduler(RedisScheduler):
    """scrapy-redis's scheduler, counting its stats the way Scrapy 2.13+ expects (no ``spider=``)."""

    def open(self, spider: Any) -> None:
        from scrapy.utils.misc import load_object

        self.spider = spider
        self.queue = load_object(self.queue_cls)(
            server=self.server, spider=spider, key=self.queue_key % {"spider": spider.name},
            serializer=self.serializer,
        )  # fmt: skip
        if not self.df:  # type: ignore[has-type]
            self.df = load_object(self.dupefilter_cls).from_spider(spider)
        if self.flush_on_start:
            self.flush()

    def enqueue_request(self, request: Request) -> bool:
        if not request.dont_filter and self.df.request_seen(request):  # type: ignore[has-type]
            self.df.log(request, self.spider)  # type: ignore[has-type]
            return False
        if self.stats:
            self.stats.inc_value("scheduler/enqueued/redis")
        self.queue.push(request)
        return True

    def next_request(self) -> Request | None:
        request: Request | None = self.queue.pop(self.idle_before_close)
        if request and self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return request


class SharedRun:
    """Extension: heartbeats of in-flight work, and staying open while peers work."""

    def __init__(self, crawler: Crawler, connection: redis.Redis, run_id: int) -> None:
        self.crawler = crawler
        self.redis = connection
        self.prefix = run_prefix(run_id)
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.in_flight = 0
        self.opened_at = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedRun:
        run_id = crawler.settings.getint("ANJU_DISTRIBUTED_RUN")
        url = crawler.settings.get("REDIS_URL")
        if not run_id or not url:
            raise NotConfigured
        extension = cls(crawler, redis.Redis.from_url(url), run_id)
        crawler.signals.connect(extension.request_started, signal=signals.request_reached_downloader)
        crawler.signals.connect(extension.request_done, signal=signals.response_received)
        crawler.signals.connect(extension.request_done, signal=signals.request_dropped)
        crawler.signals.connect(extension.idle, signal=signals.spider_idle)
        crawler.signals.connect(extension.opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.closed, signal=signals.spider_closed)
        return extension

    def opened(self, **_: Any) -> None:
        from twisted.internet import task

        self.poll = task.LoopingCall(self.nudge)
        self.poll.start(NUDGE_SECONDS, now=False)

    def nudge(self) -> None:
        """Scrapy looks at its scheduler every 5 s when it has nothing in flight; work a peer put in
        the shared queue meanwhile is taken up within ``NUDGE_SECONDS`` instead."""
        if self.in_flight:
            return
        queued = self.redis.zcard(f"{self.prefix}:requests")
        slot = getattr(self.crawler.engine, "_slot", None)  # Scrapy's own wake-up call
        if queued and slot is not None:
            slot.nextcall.schedule()

    def _report(self) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(f"{self.prefix}:busy", self.me, f"{self.in_flight}:{time.time():.0f}")
        pipe.expire(f"{self.prefix}:busy", KEY_TTL_SECONDS)
        pipe.execute()

    def request_started(self, **_: Any) -> None:
        self.in_flight += 1
        self._report()

    def request_done(self, **_: Any) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._report()

    def peers_working(self) -> bool:
        now = time.time()
        busy: dict[bytes, bytes] = self.redis.hgetall(f"{self.prefix}:busy")  # type: ignore[assignment]
        for who, value in busy.items():
            if who.decode() == self.me:
                continue
            count, _, at = value.decode().partition(":")
            if int(count) > 0 and now - float(at) < PEER_SILENT_SECONDS:
                return True
        return False

    def idle(self, **_: Any) -> None:
        self.in_flight = 0
        self._report()
        started = self.redis.exists(f"{self.prefix}:started")
        if not started and time.monotonic() - self.opened_at < START_WAIT_SECONDS:
            raise DontCloseSpider  # the first process has not sent the start requests yet
        if self.redis.zcard(f"{self.prefix}:requests"):  # scrapy-redis's PriorityQueue is a sorted set
            raise DontCloseSpider
        if self.peers_working():
            raise DontCloseSpider

    def closed(self, **_: Any) -> None:
        if getattr(self, "poll", None) is not None and self.poll.running:
            self.poll.stop()
        self.redis.hdel(f"{self.prefix}:busy", self.me)
        self.redis.expire(f"{self.prefix}:requests", KEY_TTL_SECONDS)
        self.redis.expire(f"{self.prefix}:dupefilter", KEY_TTL_SECONDS)


class FirstProcessStarts:
    """Spider middleware: only the first process of a run sends the start requests."""

    def __init__(self, crawler: Crawler, connection: redis.Redis, run_id: int) -> None:
        self.crawler = crawler
        self.redis = connection
        self.prefix = run_prefix(run_id)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FirstProcessStarts:
        run_id = crawler.settings.getint("ANJU_DISTRIBUTED_RUN")
        url = crawler.settings.get("REDIS_URL")
        if not run_id or not url:
            raise NotConfigured
        return cls(crawler, redis.Redis.from_url(url), run_id)

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        first = self.redis.set(f"{self.prefix}:started", 1, nx=True, ex=KEY_TTL_SECONDS)
        if first:  # busy until its start requests reach the shared queue, so no peer closes early
            me = f"{socket.gethostname()}:{os.getpid()}"
            self.redis.hset(f"{self.prefix}:busy", me, f"1:{time.time():.0f}")
        stats = self.crawler.stats
        if stats is not None:
            stats.set_value("anju/distributed/first", bool(first))
        async for item_or_request in start:
            if first or not isinstance(item_or_request, Request):
                yield item_or_request
