"""Database engine, sessions and the declarative base.

SQLite (the embedded default) runs in WAL mode with a busy timeout. A session that may write
starts its transaction with ``BEGIN IMMEDIATE``: it takes the write lock when the transaction
opens and waits for it (up to the busy timeout) instead of failing with "database is locked"
when it later tries to upgrade a read lock. Read-only sessions (``Database.session(readonly=True)``,
used for GET requests) start a deferred transaction and, in WAL mode, never wait for a writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool

from core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


BEGIN_OPTION = "anju_sqlite_begin"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use core.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# An API process keeps its SQLite connections open in a pool (``sqlite_pooled``): opening one
# costs a file open and four PRAGMAs (journal_mode=WAL takes the file's lock), a tenth of the
# API's time under load when every session opened its own (bench/console_load.py). Processes that
# fork (rq workers, crawls) do not: SQLite state must never cross a fork, and a child of a process
# holding pooled connections lost a committed row in our tests (a crawl child's post).
SQLITE_POOL_SIZE = 10  # the API's sync views run on ANJU_API_THREADS (8) threads
SQLITE_POOL_OVERFLOW = 30  # plus web chat turns on their own threads when an LLM is configured


def make_engine(
    url: str, *, sqlite_busy_timeout_ms: int = 30_000, sqlite_pooled: bool = False, **kwargs: Any
) -> Engine:
    if url.startswith("sqlite"):
        pool: dict[str, Any] = (
            {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_OVERFLOW}
            if sqlite_pooled
            else {"poolclass": NullPool}
        )
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": sqlite_busy_timeout_ms / 1000,
                "factory": _SqliteConnection,
            },
            **pool,
            **kwargs,
        )
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        _engines.add(engine)
        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)
    _engines.add(engine)
    return engine


# Connections must not cross a fork (rq's work-horse, the crawl child): the child forgets the
# parent's pooled connections without closing them (they are the parent's) and opens its own.
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _close_idle_connections_before_fork() -> None:
    """SQLite's own rule: no connection open across a fork. The idle ones are closed here (a
    forking rq worker opens them again when it next needs one); one in a transaction in another
    thread cannot be, and the child never touches it (see below)."""
    for engine in list(_engines):
        if engine.dialect.name == "sqlite":
            engine.dispose()


def _forget_connections_after_fork() -> None:
    for engine in list(_engines):
        engine.dispose(close=False)
    # The parent's gates: a lock another thread held at the fork would never be released here,
    # and the lock file's descriptor is the parent's (unlocking it would free the parent's lock).
    for gate in list(_gates.values()):
        gate.forget()
    _gates.clear()


os.register_at_fork(before=_close_idle_connections_before_fork, after_in_child=_forget_connections_after_fork)


class _WriterGate:
    """Where the writers of one SQLite file queue, in this process and across processes.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps (its busy
    handler, up to 100 ms between tries): under load a writer could wait seconds while newcomers
    got in first (the agent console's load run: BEGIN IMMEDIATE p99 4.3 s, max 9.9 s in the API
    process). Here the threads of a process queue on a lock, and one writer per process at a time
    takes an flock on ``<database>-writer`` (tried every few milliseconds), so the next writer
    goes in as soon as the last one commits. Writers that do not use anju's engines (an operator's
    sqlite3 shell) still meet SQLite's own busy handler."""

    POLL_SECONDS = (0.0005, 0.001, 0.002, 0.005)  # then every 5 ms

    def __init__(self, database: str) -> None:
        self.lock = threading.Lock()
        self.path = None if database in ("", ":memory:") else f"{database}-writer"
        self.fd: int | None = None

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked (this process's writers are queued)")
        try:
            self._lock_file(deadline)
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        try:
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()

    def _lock_file(self, deadline: float) -> None:
        if self.path is None:
            return
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        tries = 0
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        "database is locked (another process is writing)"
                    ) from None
                time.sleep(self.POLL_SECONDS[min(tries, len(self.POLL_SECONDS) - 1)])
                tries += 1

    def forget(self) -> None:
        """In a forked child: close our copy of the parent's descriptor without unlocking it."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


_gates: dict[str, _WriterGate] = {}
_gates_guard = threading.Lock()


def _gate(database: str) -> _WriterGate:
    key = database if database in ("", ":memory:") else os.path.abspath(database)
    with _gates_guard:
        if key not in _gates:
            _gates[key] = _WriterGate(key)
        return _gates[key]


class _SqliteConnection(sqlite3.Connection):
    """A SQLite connection that holds its database's writer gate from BEGIN IMMEDIATE to the end
    of the transaction (see _WriterGate)."""

    _gate: _WriterGate | None = None
    _holding = False

    def begin_writing(self, timeout: float) -> None:
        if self._gate is None or self._holding:
            return
        self._gate.acquire(timeout)
        self._holding = True

    def done_writing(self) -> None:
        if self._holding and self._gate is not None:
            self._holding = False
            self._gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.done_writing()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.done_writing()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.done_writing()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    path = engine.url.database or ":memory:"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()
        if isinstance(dbapi_connection, _SqliteConnection):
            dbapi_connection._gate = _gate(path)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
        dbapi_connection = conn.connection.dbapi_connection
        writing = mode == "IMMEDIATE" and isinstance(dbapi_connection, _SqliteConnection)
        if writing:
            dbapi_connection.begin_writing(busy_timeout_ms / 1000)
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            if writing:
                dbapi_connection.done_writing()
            raise


class Database:
    """The engine and session factory of one process, built from settings on first use."""

    def __init__(self, settings: Settings) -> None:
        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(
            settings.sqlalchemy_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            sqlite_pooled=settings.sqlite_pool,
        )
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = sessionmaker(
            self.engine.execution_options(**{BEGIN_OPTION: "DEFERRED"}), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on error.

        ``readonly`` sessions must not write: on SQLite they do not queue for the write lock.
        """
        factory = self.read_sessionmaker if readonly else self.sessionmaker
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}


def get_database(settings: Settings) -> Database:
    """The process's Database for these settings (one engine per URL)."""
    url = settings.sqlalchemy_url
    if url not in _databases:
        _databases[url] = Database(settings)
    return _databases[url]
