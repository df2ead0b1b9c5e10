"""rq jobs of the knowledge base."""

from __future__ import annotations

from rq import get_current_job

from knowledge.service import index_build_started, queue_stale_index_builds, rebuild_index


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
    """Periodic: queue a build for each company whose index is stale and that has none pending
    (a change whose build could not be queued, an upgrade's new dictionary, another model)."""
    from core.settings import get_settings

    return queue_stale_index_builds(get_settings())
