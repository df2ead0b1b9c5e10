"""rq jobs of the organisation domain."""

from __future__ import annotations

import logging

from core.db import get_database
from core.settings import get_settings
from org import service
from org.models import ImportStatus

log = logging.getLogger(__name__)


def import_residents(*, import_id: int) -> dict[str, int]:
    """Run a stored residents import. Retried by rq if the worker dies; resumes where it stopped."""
    database = get_database(get_settings())
    try:
        record = service.run_import(database=database, import_id=import_id)
    except Exception as exc:
        with database.session() as session:
            record = service.get_import(session=session, import_id=import_id)
            record.status = ImportStatus.failed  # back to running if rq retries it
            record.report = {**(record.report or {}), "error": str(exc)[:500]}
        log.exception("residents import %s failed", import_id)
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
