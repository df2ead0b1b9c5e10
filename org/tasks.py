"""rq jobs of the organisation domain."""

from __future__ import annotations

import logging

from rq import get_current_job

from core.queue import job_session
from org import service
from org.models import ImportStatus

log = logging.getLogger(__name__)


def import_residents(*, import_id: int) -> dict[str, int]:
    """Run a stored residents import. Retried by rq if the worker dies; applied once."""
    job = get_current_job()
    with job_session() as session:
        record = service.get_import(session=session, import_id=import_id)
        if record.status is ImportStatus.done:
            return {"created": 0, "updated": 0}
        record.status = ImportStatus.running
        record.attempts += 1
    try:
        with job_session() as session:
            record = service.run_import(session=session, import_id=import_id, job_id=job.id if job else None)
            report = record.report or {}
    except Exception as exc:
        with job_session() as session:
            record = service.get_import(session=session, import_id=import_id)
            record.status = ImportStatus.failed
            record.report = {"error": str(exc)[:500]}
        log.exception("residents import %s failed", import_id)
        raise
    log.info(
        "residents import %s done: %s created, %s updated, %s errors",
        import_id,
        report.get("created"),
        report.get("updated"),
        len(report.get("errors", [])),
    )
    return {"created": report.get("created", 0), "updated": report.get("updated", 0)}
