"""rq jobs of the crawlers: one crawl of one source, and the periodic check that queues the
sources that are due. Each takes ids and opens its own session."""

from __future__ import annotations

from core.queue import enqueue, job_session
from core.settings import Settings, get_settings
from crawlers import service

CRAWL_TIMEOUT_SECONDS = 30 * 60  # a platform with a slow politeness delay may take long; not forever


def crawl_source(*, source_id: int, processes: int = 1) -> dict[str, int | str]:
    """Crawl one source (the crawl itself runs in a forked child of this job's process)."""
    run = service.run_source(settings=get_settings(), source_id=source_id, processes=processes)
    assert not isinstance(run, list)
    return {"run_id": run.id, "status": run.status.value, **service.run_summary(run)}


def queue_crawl(*, source_id: int, settings: Settings | None = None) -> str:
    """One pending crawl per source: asking again while it waits or runs does not add another."""
    job = enqueue(crawl_source, queue="low", job_id=f"crawl-{source_id}", job_timeout=CRAWL_TIMEOUT_SECONDS,
                  retry=None, settings=settings, source_id=source_id)  # fmt: skip
    return str(job.id)


def join_crawl(*, source_id: int, run_id: int) -> int:
    """Work on a distributed crawl run from the shared frontier (crawlers.distributed)."""
    stats = service.join_run(settings=get_settings(), source_id=source_id, run_id=run_id)
    return int(stats.get("response_received_count", 0))


def queue_join(*, source_id: int, run_id: int, settings: Settings | None = None) -> str:
    job = enqueue(join_crawl, queue="low", job_timeout=CRAWL_TIMEOUT_SECONDS, retry=None, settings=settings,
                  source_id=source_id, run_id=run_id)  # fmt: skip
    return str(job.id)


def schedule_due() -> list[int]:
    """Periodic: queue every enabled source whose interval has passed."""
    with job_session() as session:
        due = service.due_sources(session=session)
    for source_id in due:
        queue_crawl(source_id=source_id)
    return due
