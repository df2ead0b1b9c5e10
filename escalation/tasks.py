"""rq jobs of the escalation domain: SLA timers, emergency paging, notices to supervisors, and
the periodic sweep (lost timers, idle cases, unanswered surveys). Each takes ids and opens its
own session."""

from __future__ import annotations

import logging

from core.queue import enqueue, job_session
from core.settings import get_settings
from escalation import paging, queue, surveys, timers

log = logging.getLogger(__name__)


def check_sla(*, case_id: int, version: int, kind: str) -> str:
    settings = get_settings()
    with job_session() as session:
        return timers.check_sla(
            session=session, settings=settings, case_id=case_id, version=version, kind=kind
        ).outcome


def notify_supervisors(*, case_id: int, kind: str) -> int:
    """A breach (or an emergency nobody took) to the supervisors' robots; returns how many got it.
    A robot that fails makes the job fail, and rq retries it (for that robot only: the ones that
    took it are remembered on the job)."""
    from rq import get_current_job

    from core.notify import RobotKind, RobotTarget, send_robot
    from core.outbound import outbound_policy

    settings = get_settings()
    with job_session() as session:
        notice = paging.supervisor_notice(session=session, settings=settings, case_id=case_id, kind=kind)
    if notice is None or not settings.supervisor_robots:
        return 0
    job = get_current_job()
    done: list[int] = list(job.meta.get("sent", [])) if job is not None else []
    errors = []
    for index, robot in enumerate(settings.supervisor_robots):
        if index in done:
            continue
        try:
            send_robot(
                RobotTarget(RobotKind(robot.kind), robot.url, robot.secret),
                policy=outbound_policy(settings),
                title=notice[0],
                markdown=notice[1],
            )
            done.append(index)
        except Exception as exc:
            errors.append(f"{robot.kind}: {exc}")
    if job is not None:
        job.meta["sent"] = done
        job.save_meta()
    if errors:
        raise RuntimeError("; ".join(errors))
    return len(done)


def page_duty(*, case_id: int, level: int) -> str:
    """Page one level of the community's duty chain, and check back for the acknowledgement when
    its time is up (the next job pages the next level unless someone acknowledged)."""
    from core.notify import RobotKind, RobotTarget, notify, sms_gateway
    from core.outbound import outbound_policy

    settings = get_settings()
    with job_session() as session:
        page = paging.page_step(session=session, settings=settings, case_id=case_id, level=level)
        contact = None
        if page is not None and page.contact is not None:
            c = page.contact
            contact = (c.name, c.phone, c.robot_kind, c.robot_url, c.robot_secret)
    if page is None:
        return "stopped"
    if page.next_check is not None:
        enqueue(
            page_duty,
            queue="high",
            job_id=f"page-{case_id}-{level + 1}",
            settings=settings,
            delay=page.next_check,
            retry=None,
            case_id=case_id,
            level=level + 1,
        )
    if contact is None:
        enqueue(
            notify_supervisors,
            job_id=f"unacknowledged-{case_id}",
            settings=settings,
            case_id=case_id,
            kind="unacknowledged",
        )
        return "supervisors"
    _name, phone, kind, url, secret = contact
    failures = notify(
        targets=[RobotTarget(RobotKind(kind), url, secret)] if url and kind else [],
        policy=outbound_policy(settings),  # a robot saved earlier may resolve inside by now: refused
        sms=sms_gateway(settings.sms_gateway),
        phones=[phone] if phone else [],
        title=page.title,
        markdown=page.text,
    )
    if failures:
        with job_session() as session:
            paging.note_page_failure(
                session=session, settings=settings, case_id=case_id, level=level, errors=failures
            )
    return "paged" if not failures else "page_failed"


def sweep() -> dict[str, list[int]]:
    """Periodic: breaches whose timers were lost, idle cases back to the queue, unanswered
    surveys closed."""
    settings = get_settings()
    with job_session() as session:
        breached = timers.sweep_sla(session=session, settings=settings)
    with job_session() as session:
        released = queue.release_idle(session=session, settings=settings)
    with job_session() as session:
        closed = surveys.close_unanswered(session=session, settings=settings)
    return {"breached": breached, "released": released, "closed": closed}
