"""rq jobs of the knowledge base."""

from __future__ import annotations

import logging

import redis
from rq import get_current_job

from knowledge.service import (
    index_build_started,
    parse_pending,
    queue_pending_parses,
    queue_stale_index_builds,
    rebuild_index,
    request_index_build,
)

log = logging.getLogger(__name__)


def parse_source(*, source_id: int, sha256: str) -> dict[str, object]:
    """Parse an uploaded file (never in the API process): its passages or FAQ entries become the
    source's next version and a re-index is queued, or the source is marked failed with the
    reason and keeps its current version. A bad file ends the job normally: it is not retried."""
    from core.settings import get_settings

    settings = get_settings()
    outcome = parse_pending(settings, source_id=source_id, sha256=sha256)
    if outcome.applied:
        try:
            request_index_build(settings, company_id=outcome.company_id)
        except redis.RedisError:  # the periodic sweep finds the index stale and queues it
            log.exception("could not queue the knowledge index build of company %s", outcome.company_id)
    return {"source_id": source_id, "status": outcome.status.value if outcome.status else None}


def build_index(*, company_id: int, force: bool = False) -> dict[str, object]:
    """Re-index the company's knowledge base and make the new index current (a no-op when the
    current index already covers every source)."""
    from core.settings import get_settings

    settings = get_settings()
    job = get_current_job()
    index_build_started(settings, company_id=company_id, job_id=job.id if job else None)
    result = rebuild_index(settings, company_id=company_id, force=force)
    return {"index_id": result.index.id, "built": result.built, "passages": result.index.passages}


def sweep() -> list[int]:
    """Periodic: queue the parse of uploads that have no job (stored while Redis was down), and a
    build for each company whose index is stale and that has none pending (a change whose build
    could not be queued, an upgrade's new dictionary, another model)."""
    from core.settings import get_settings

    settings = get_settings()
    queue_pending_parses(settings)
    return queue_stale_index_builds(settings)
