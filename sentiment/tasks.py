"""rq jobs of opinion monitoring: alert delivery and escalation, digests of held-back alerts, and
the internal early-warning check. Each takes ids and opens its own session."""

from __future__ import annotations

import logging

from sqlalchemy import select

from core.queue import job_session
from core.settings import get_settings

log = logging.getLogger(__name__)


def deliver_alert(*, alert_id: int) -> int:
    """Send one alert to its routes; a failed route makes the job fail and rq retries it (routes
    already reached are not sent again). Returns how many routes have it."""
    from sentiment import alerts
    from sentiment.models import Alert

    settings = get_settings()
    with job_session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            return 0
        errors = alerts.deliver(session=session, settings=settings, alert=alert)
        delivered = len(alert.delivered or [])
    if errors:
        raise RuntimeError("; ".join(errors))
    return delivered


def escalate_alert(*, alert_id: int) -> str:
    from sentiment import alerts
    from sentiment.models import Alert

    settings = get_settings()
    with job_session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            return "gone"
        errors = alerts.escalate(session=session, settings=settings, alert=alert)
    if errors is None:
        return "acknowledged"
    if errors:
        raise RuntimeError("; ".join(errors))
    return "escalated"


def sweep() -> dict[str, int]:
    """Periodic: digests of held-back alerts, and internal complaint spikes for every company."""
    from core.db import utcnow
    from org.models import Company
    from sentiment import alerts
    from sentiment.events import check_internal_spikes
    from sentiment.risk import RiskPolicy

    settings = get_settings()
    policy = RiskPolicy.from_text(settings.risk_thresholds)
    folded = raised = 0
    with job_session() as session:
        company_ids = list(session.scalars(select(Company.id)))
    for company_id in company_ids:
        with job_session() as session:
            folded += alerts.send_digest(session=session, settings=settings, company_id=company_id)
        with job_session() as session:
            fresh = []
            now = utcnow()
            spikes = check_internal_spikes(session=session, company_id=company_id, now=now, policy=policy)
            for change in spikes:
                alert = alerts.raise_alert(session=session, event=change.event)
                if alert is not None:
                    fresh.append((alert.id, alert.grade))
        for alert_id, grade in fresh:
            alerts.queue_delivery(settings=settings, alert_id=alert_id, grade=grade)
        raised += len(fresh)
    return {"digested": folded, "internal_alerts": raised}
