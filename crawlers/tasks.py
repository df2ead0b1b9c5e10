"""rq jobs of the crawlers: one crawl of one source, and the periodic check that queues the
sources that are due. Each takes ids and opens its own session."""

from __future__ import annotations

from typing import Any

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


PREVIEW_TIMEOUT_SECONDS = 5 * 60  # a polite crawl of a few pages; an admin is waiting for it


def preview_job_id(source_id: int) -> str:
    return f"crawl-preview-{source_id}"


def preview_source(*, source_id: int) -> dict[str, Any]:
    """试采集 of one source: the posts it would find now and what we would make of them."""
    return service.preview_source(settings=get_settings(), source_id=source_id)


def queue_preview(*, source_id: int, settings: Settings | None = None) -> str:
    """On the default queue, not behind the scheduled crawls; one at a time per source."""
    job = enqueue(preview_source, queue="default", job_id=preview_job_id(source_id),
                  job_timeout=PREVIEW_TIMEOUT_SECONDS, retry=None, settings=settings,
                  source_id=source_id)  # fmt: skip
    return str(job.id)


def preview_state(*, source_id: int, settings: Settings | None = None) -> dict[str, Any]:
    """The latest 试采集 of a source: ``status`` none / queued / started / finished / failed, and
    when finished its posts (or the crawl's error)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from core.queue import get_queue

    queue = get_queue("default", settings=settings)
    try:
        job = Job.fetch(preview_job_id(source_id), connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return {"status": "none", "posts": [], "error": None}
    status = job.get_status(refresh=False)
    state: dict[str, Any] = {"status": str(status.value if status else "none"), "posts": [], "error": None}
    if state["status"] == "finished":
        state.update(job.return_value() or {})
    elif state["status"] == "failed":
        state["error"] = "试采集未完成（超时或出错），请查看采集记录或稍后重试"
    elif state["status"] not in ("queued", "started"):
        state["status"] = "queued"  # scheduled / deferred: waiting like a queued one
    return state


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
