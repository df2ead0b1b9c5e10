"""rq jobs of the organisation domain."""

from __future__ import annotations

import logging

from rq import get_current_job

from core.db import get_database
from core.errors import AnjuError
from core.settings import get_settings
from org import service
from org.models import ImportStatus

log = logging.getLogger(__name__)


def import_residents(*, import_id: int) -> dict[str, int]:
    """Run a stored residents import. Retried by rq if the worker dies; resumes where it stopped.

    A file that cannot be read (broken, a bomb, no header, a runaway CSV field, over its CPU
    budget) fails once with its reason in the report; the job ends normally so rq does not retry
    it."""
    settings = get_settings()
    database = get_database(settings)
    try:
        record = service.run_import(
            database=database, import_id=import_id, parse_seconds=settings.upload_parse_timeout_seconds
        )
    except AnjuError as exc:
        service.fail_import(database=database, import_id=import_id, reason=exc.message)
        log.warning("residents import %s failed: %s", import_id, exc.message)
        return {"created": 0, "updated": 0}
    except Exception as exc:
        job = get_current_job()
        retrying = bool(job and job.retries_left)
        with database.session() as session:
            record = service.get_import(session=session, import_id=import_id)
            # While rq will try again the import stays pending: the page keeps waiting for it.
            record.status = ImportStatus.pending if retrying else ImportStatus.failed
            # The staff-facing report says what kind of failure, never the database's own text
            # (which can quote a resident's mobile number).
            record.report = {
                **(record.report or {}),
                "error": f"导入中断（{type(exc).__name__}），请联系管理员",
            }
        log.exception("residents import %s failed (%s)", import_id, "will retry" if retrying else "giving up")
        raise
    report = record.report or {}
    log.info(
        "residents import %s done: %s created, %s updated, %s errors",
        import_id,
        report.get("created"),
        report.get("updated"),
        len(report.get("errors", [])),
    )
    return {"created": report.get("created", 0), "updated": report.get("updated", 0)}
