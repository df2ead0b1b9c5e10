"""Running one crawl: scrapy settings for a source, and a Twisted reactor in this process (once per
process, which is what rq's work-horse fork and ``anju crawl`` give) or in a forked child.

``crawl(...)`` returns the crawl's stats and, when ``collect`` is set, the items themselves
instead of storing them (the spiders' tests read what a spider found without a database).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings
from crawlers.spiders.base import SourceSpec

log = logging.getLogger(__name__)


@dataclass
class CrawlResult:
    stats: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def stat(self, name: str, default: int = 0) -> Any:
        return self.stats.get(name, default)


def scrapy_settings(
    *,
    settings: Settings | None = None,
    redis_url: str | None = None,
    run_id: int | None = None,
    collect: bool = False,
    polite: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of one crawl, on top of crawlers/settings.py."""
    from crawlers import settings as base

    values: dict[str, Any] = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    # Our settings travel inside scrapy's (the process is forked, so nothing is pickled).
    values["ANJU_SETTINGS"] = settings
    values["ANJU_REDIS_URL"] = redis_url or (settings.effective_redis_url if settings else None)
    values["ANJU_RUN_ID"] = run_id
    if settings is not None:  # else crawlers.outbound reads the process's settings
        from core.outbound import outbound_policy

        values["ANJU_OUTBOUND_POLICY"] = outbound_policy(settings)
    values["LOG_ENABLED"] = True
    values["ITEM_PIPELINES"] = (
        {"crawlers.pipelines.Collect": 100} if collect else {"crawlers.pipelines.Store": 300}
    )
    if not polite:  # benchmarks against our own fixture server only
        values.update(
            AUTOTHROTTLE_ENABLED=False,
            DOWNLOAD_DELAY=0,
            DOWNLOAD_DELAY_JITTER=0,
            CONCURRENT_REQUESTS=32,
            CONCURRENT_REQUESTS_PER_DOMAIN=32,
        )
    if settings is not None and settings.crawl_distributed and run_id is not None and not collect:
        from crawlers.distributed import frontier_settings

        values.update(frontier_settings(run_id=run_id, redis_url=settings.effective_redis_url))
    values.update(overrides or {})
    return values


def anju_settings(values: Any) -> Settings:
    """The anju Settings a crawl was started with (``scrapy_settings(settings=...)``)."""
    found = values.get("ANJU_SETTINGS")
    if not isinstance(found, Settings):
        from core.settings import get_settings

        return get_settings()
    return found


def crawl(spec: SourceSpec, values: dict[str, Any]) -> CrawlResult:
    """Run one spider to the end in this process (the reactor cannot start twice in a process)."""
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess
    from scrapy.settings import Settings as ScrapySettings

    from crawlers.spiders import spider_class

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the pipeline runs the sentiment model
    items: list[dict[str, Any]] = []
    process = CrawlerProcess(ScrapySettings({"LOG_INSTALL_ROOT_HANDLER": False} | values))
    crawler = process.create_crawler(spider_class(spec.kind))

    def _collected(item: Any, **_: Any) -> None:
        if values["ITEM_PIPELINES"].get("crawlers.pipelines.Collect"):
            from itemadapter import ItemAdapter

            items.append(ItemAdapter(item).asdict())

    crawler.signals.connect(_collected, signal=signals.item_scraped)
    failures: list[str] = []
    done = process.crawl(crawler, source=spec.as_dict())
    done.addErrback(lambda failure: failures.append(failure.getTraceback()))
    process.start(stop_after_crawl=True, install_signal_handlers=False)
    stats = dict(crawler.stats.get_stats()) if crawler.stats else {}
    return CrawlResult(stats=_plain(stats), items=items, error=failures[0] if failures else None)


def _plain(stats: dict[str, Any]) -> dict[str, Any]:
    """Stats as JSON (datetimes as ISO strings)."""
    out: dict[str, Any] = {}
    for key, value in stats.items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def _child(spec: dict[str, Any], values: dict[str, Any], conn: Any) -> None:
    try:
        result = crawl(SourceSpec(**spec), values)
        conn.send(result)
    except BaseException:
        conn.send(CrawlResult(stats={}, error=traceback.format_exc()))
    finally:
        conn.close()


def crawl_in_child(spec: SourceSpec, values: dict[str, Any], *, timeout: float = 300) -> CrawlResult:
    """``crawl`` in a forked child process, so a caller (a test, the CLI) can crawl many times."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec.as_dict(), values, child), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout):
            process.kill()
            raise TimeoutError(f"crawl of {spec.key} took more than {timeout} s")
        result: CrawlResult = parent.recv()
    finally:
        process.join(10)
    if result.error:
        raise RuntimeError(f"crawl of {spec.key} failed:\n{result.error}")
    return result
