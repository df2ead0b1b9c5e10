"""The intake's group commit: many concurrent messages in one transaction, each stored once,
duplicates (in the batch or stored before) flagged, one job per new message, errors reported to
every waiting request."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from channels import batching
from channels.models import InboundMessage, InboundStatus
from conversations.models import Channel
from core.db import get_database
from core.redis import get_redis
from core.settings import Settings
from tests.conftest import wait_for


def pending(external_id: str, status: InboundStatus = InboundStatus.accepted) -> batching.Pending:
    return batching.Pending(company_id=1, community_id=1, channel=Channel.app, external_id=external_id,
                            sender="app-user-1", text=f" 消息 {external_id} ", status=status)  # fmt: skip


def test_a_burst_is_stored_once_per_message_with_one_job_each(demo: Settings) -> None:
    first = batching.submit(demo, pending("before")).result(timeout=10)
    assert not first.duplicate and first.status is InboundStatus.accepted
    burst = [pending(f"m-{i}") for i in range(60)]
    burst += [pending("m-7") for _ in range(5)]  # resent while the first is still in flight
    burst += [pending("before"), pending("shown", InboundStatus.done)]
    with ThreadPoolExecutor(16) as pool:
        futures = list(pool.map(lambda p: batching.submit(demo, p), burst))
    results = [f.result(timeout=10) for f in futures]
    assert len({r.id for r in results}) == 62  # m-0…m-59, shown; "before" is the earlier row
    assert sum(not r.duplicate for r in results) == 61
    assert {r.id for r in results if r.duplicate} >= {first.id}
    sevens = [r for p, r in zip(burst, results, strict=True) if p.external_id == "m-7"]
    assert len({r.id for r in sevens}) == 1 and sum(not r.duplicate for r in sevens) == 1
    with get_database(demo).session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 62
        assert (
            session.scalar(select(InboundMessage.text).where(InboundMessage.external_id == "m-3"))
            == "消息 m-3"
        )
    # One job per new message. The writer acknowledges after its commit and enqueues right after
    # (ack before enqueue), so the jobs appear a moment after the answers: wait for them.
    connection = get_redis(demo)

    def enqueued() -> set[str]:
        return {key.decode().removeprefix("rq:job:") for key in connection.scan_iter("rq:job:inbound-*")}

    jobs = wait_for(lambda: len(enqueued()) >= 61 and enqueued(), timeout=10, message="61 jobs")
    time.sleep(0.3)  # and no more than that
    jobs = enqueued()
    assert len(jobs) == 61  # "before" and m-0…m-59; nothing for "shown", which needs no answer
    assert f"inbound-{first.id}" in jobs
    shown = next(r for p, r in zip(burst, results, strict=True) if p.external_id == "shown")
    assert f"inbound-{shown.id}" not in jobs


def test_a_database_that_cannot_be_reached_fails_every_waiting_request(demo: Settings) -> None:
    unreachable = demo.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    futures = [batching.submit(unreachable, pending(f"x-{i}")) for i in range(3)]
    for future in futures:
        with pytest.raises(Exception, match=r"(?i)connect"):
            future.result(timeout=30)


def test_one_row_the_database_refuses_does_not_fail_its_batch(demo: Settings) -> None:
    bad = pending("orphan")
    bad.community_id = 99_999  # a community deleted while its code was still cached
    burst = [pending(f"ok-{i}") for i in range(20)]
    burst.insert(10, bad)
    with ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(lambda p: batching.submit(demo, p), burst))
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        futures[10].result(timeout=30)
    assert all(not f.result(timeout=30).duplicate for i, f in enumerate(futures) if i != 10)
    with get_database(demo).session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 20
