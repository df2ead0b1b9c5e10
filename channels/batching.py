"""Group commit for the intake: one writer thread per API process stores the messages of many
concurrent requests in one transaction and enqueues their jobs in one Redis round trip.

A request hands its normalised message over and waits for it to be committed (the channel is
acknowledged only after that), so nothing changes for the sender; what changes is the cost. A
transaction and a job enqueue per message capped one process at ~100 messages/s (SQLite's write
lock, a connection per session, several Redis round trips per job); a batch pays them once. The
writer takes whatever has queued up while it was writing the previous batch: no timer, so a
single message on a quiet system is written at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import and_, or_, select

from channels.models import InboundMessage, InboundStatus
from channels.service import masked_sender
from conversations.models import Channel
from core.db import utcnow
from core.masking import mask_text
from core.settings import Settings

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass
class Pending:
    company_id: int
    community_id: int
    channel: Channel
    external_id: str
    sender: str
    text: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sent_at: datetime | None = None
    account: str | None = None
    status: InboundStatus = InboundStatus.accepted
    queue_job: bool = True  # False: the request answers it itself (the web page); the sweeper is the fallback
    future: Future[Stored] = field(default_factory=Future)

    @property
    def key(self) -> tuple[int, Channel, str]:
        return (self.company_id, self.channel, self.external_id)


@dataclass(frozen=True)
class Stored:
    id: int
    status: InboundStatus
    received_at: datetime
    duplicate: bool  # stored before (a retry, a resend): nothing new to process


class IntakeWriter:
    def __init__(self, settings: Settings) -> None:
        from sqlalchemy.dialects import postgresql, sqlite
        from sqlalchemy.orm import sessionmaker

        from core.db import make_engine

        self.settings = settings
        # Its own connection, kept open: a connection per batch cost a tenth of the process.
        timeout = settings.sqlite_busy_timeout_ms
        self.engine = make_engine(settings.sqlalchemy_url, sqlite_busy_timeout_ms=timeout, sqlite_pooled=True)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        if self.engine.dialect.name == "sqlite":
            _checkpoint_elsewhere(self.engine)
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        self._insert = (
            dialect.insert(InboundMessage.__table__)
            .on_conflict_do_nothing(index_elements=["company_id", "channel", "external_id"])
            .returning(
                InboundMessage.id,
                InboundMessage.company_id,
                InboundMessage.channel,
                InboundMessage.external_id,
                InboundMessage.status,
                InboundMessage.received_at,
            )
        )
        self.inbox: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self.thread.start()

    def submit(self, pending: Pending) -> Future[Stored]:
        self.inbox.put(pending)
        return pending.future

    def _run(self) -> None:
        while True:
            batch = [self.inbox.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception:
                if len(batch) == 1:
                    self._fail(batch)
                    continue
                # One bad row (a value the database refuses) must not fail its neighbours: each is
                # written on its own, and only what fails again is reported to its sender.
                log.warning("intake batch of %d message(s) failed; writing them one by one", len(batch))
                for pending in batch:
                    if pending.future.done():
                        continue
                    try:
                        self._write([pending])
                    except Exception:
                        self._fail([pending])

    def _fail(self, batch: list[Pending]) -> None:
        """The database is down, locked too long or refuses the row: the request says so (5xx) and
        the channel sends it again."""
        import sys

        exc = sys.exc_info()[1] or RuntimeError("intake write failed")
        log.exception("%d intake message(s) not stored", len(batch))
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(exc)

    def _write(self, batch: list[Pending]) -> None:
        first: dict[tuple[int, Channel, str], Pending] = {}
        for pending in batch:
            first.setdefault(pending.key, pending)
        now = utcnow()
        rows = [
            {
                "company_id": p.company_id,
                "community_id": p.community_id,
                "channel": p.channel,
                "external_id": p.external_id,
                "sender": p.sender,
                "account": p.account,
                "text": p.text.strip(),
                "attachments": p.attachments,
                "sent_at": p.sent_at,
                "received_at": now,
                "status": p.status,
                "attempts": 0,
            }
            for p in first.values()
        ]
        stored: dict[tuple[int, Channel, str], Stored] = {}
        with self.sessionmaker() as session, session.begin():
            # One statement for every batch (executemany; SQLAlchemy sends the rows as one
            # multi-row INSERT): compiling a new statement for each batch size cost a tenth of an
            # API process under load.
            for row in session.connection().execute(self._insert, rows):
                stored[(row.company_id, row.channel, row.external_id)] = Stored(
                    row.id, row.status, row.received_at, duplicate=False
                )
            earlier = [key for key in first if key not in stored]
            if earlier:  # stored by an earlier request (WeChat's retry, the app's resend)
                found = session.execute(
                    select(
                        InboundMessage.id, InboundMessage.company_id, InboundMessage.channel,
                        InboundMessage.external_id, InboundMessage.status, InboundMessage.received_at,
                    ).where(or_(*(
                        and_(InboundMessage.company_id == c, InboundMessage.channel == ch,
                             InboundMessage.external_id == e)
                        for c, ch, e in earlier
                    )))
                )  # fmt: skip
                for row in found:
                    stored[(row.company_id, row.channel, row.external_id)] = Stored(
                        row.id, row.status, row.received_at, duplicate=True
                    )
        # Committed: the senders may hear "accepted" now. The jobs follow (the database is the
        # truth; a job that does not make it to Redis is enqueued by the sweeper).
        for pending in batch:
            result = stored[pending.key]
            if pending is not first[pending.key]:  # the same message twice in one batch
                result = Stored(result.id, result.status, result.received_at, duplicate=True)
            pending.future.set_result(result)
        self._enqueue([
            stored[p.key].id for p in first.values()
            if p.queue_job and not stored[p.key].duplicate and stored[p.key].status is InboundStatus.accepted
        ])  # fmt: skip
        if log.isEnabledFor(logging.INFO):
            for p in first.values():
                if not stored[p.key].duplicate:
                    log.info("%s message %s accepted from %s: %r", p.channel.value, p.external_id,
                             masked_sender(p.channel, p.sender), mask_text(p.text)[:60])  # fmt: skip

    def _enqueue(self, inbound_ids: list[int]) -> None:
        """The processing jobs of the new messages, in one pipeline. Without Redis the messages
        stay accepted in the database and the sweeper enqueues them once Redis is back."""
        if not inbound_ids:
            return
        from channels import tasks
        from core.queue import DEFAULT_RETRY, get_queue

        try:
            q = get_queue("default", settings=self.settings)
            jobs = [
                q.prepare_data(
                    tasks.process_inbound,
                    kwargs={"inbound_id": i},
                    job_id=f"inbound-{i}",
                    timeout=self.settings.job_timeout_seconds,
                    failure_ttl=7 * 24 * 3600,
                    retry=DEFAULT_RETRY,
                )
                for i in inbound_ids
            ]
            with q.connection.pipeline() as pipe:
                q.enqueue_many(jobs, pipeline=pipe)
                pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("%d inbound message(s) stored but not enqueued (%s): the sweeper will",
                        len(inbound_ids), exc)  # fmt: skip


CHECKPOINT_SECONDS = 1.0


def _checkpoint_elsewhere(engine: Any) -> None:
    """SQLite folds its write-ahead log back into the database (with an fsync) in whichever
    commit crosses 1,000 pages: every so often a batch, and the requests waiting on it, stalled
    behind one. The writer's connection leaves that to a thread of its own, which checkpoints
    every second without blocking anyone (PASSIVE)."""
    import sqlite3
    import time

    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    path = engine.url.database

    def run() -> None:
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        while True:
            time.sleep(CHECKPOINT_SECONDS)
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)

    threading.Thread(target=run, name="intake-checkpoint", daemon=True).start()


_writers: dict[tuple[str, str | None], IntakeWriter] = {}  # per database and Redis
_writers_lock = threading.Lock()


def writer_for(settings: Settings) -> IntakeWriter:
    key = (settings.database_url or str(settings.data_dir), settings.redis_url)
    with _writers_lock:
        if key not in _writers:
            _writers[key] = IntakeWriter(settings)
        return _writers[key]


def submit(settings: Settings, pending: Pending) -> Future[Stored]:
    return writer_for(settings).submit(pending)


async def accept(settings: Settings, pending: Pending) -> Stored:
    """Store the message (once) and enqueue its processing; returns when it is committed."""
    return await asyncio.wrap_future(submit(settings, pending))
