"""Background work on rq: queues with JSON serialisation, explicit retries and timeouts, the
worker, the sweeper that recovers work whose worker died, and the periodic scheduler.

Jobs are plain functions in a domain's ``tasks.py`` that take ids (JSON-serialisable keyword
arguments only) and open their own database session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Queue, Retry, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.types import FunctionReferenceType
from rq.worker import WorkerStatus
from sqlalchemy.orm import Session

from core.db import get_database
from core.processes import die_with_parent_now
from core.redis import get_redis
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

QUEUE_NAMES = ("high", "default", "low")  # a worker takes from them in this order
DEFAULT_RETRY = Retry(max=3, interval=[10, 30, 60])  # a failed job runs again after 10 s, 30 s, 60 s
STALE_AFTER_HEARTBEATS = 3  # an execution silent for 3 heartbeats belongs to a dead worker


def get_queue(name: str = "default", *, settings: Settings | None = None) -> Queue:
    settings = settings or get_settings()
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; queues are {QUEUE_NAMES}")
    return Queue(
        name,
        connection=get_redis(settings),
        serializer=JSONSerializer,
        default_timeout=settings.job_timeout_seconds,
    )


def enqueue(
    func: FunctionReferenceType,
    *,
    queue: str = "default",
    job_id: str | None = None,
    retry: Retry | None = DEFAULT_RETRY,
    job_timeout: int | None = None,
    settings: Settings | None = None,
    delay: timedelta | None = None,
    **kwargs: Any,
) -> Job:
    """Enqueue ``func(**kwargs)`` with an explicit retry policy and timeout. ``func`` is the job
    function or its dotted path ("escalation.tasks.check_sla"): a service names its jobs by path
    and never imports its own tasks module.

    ``job_id`` makes enqueueing idempotent: the same id is not queued twice while it is pending.
    """
    q = get_queue(queue, settings=settings)
    if job_id is not None:
        existing = q.fetch_job(job_id)
        if existing is not None and existing.get_status(refresh=False) in {
            "queued",
            "started",
            "scheduled",
            "deferred",
        }:
            return existing
    options: dict[str, Any] = {
        "kwargs": kwargs,
        "job_id": job_id,
        "retry": retry,
        "job_timeout": job_timeout or (settings or get_settings()).job_timeout_seconds,
        "failure_ttl": 7 * 24 * 3600,  # failed jobs stay a week for an operator to look at
    }
    if delay is not None:  # run by the worker's rq scheduler when the time comes
        return q.enqueue_in(delay, func, **options)
    return q.enqueue(func, **options)


@contextmanager
def job_session() -> Iterator[Session]:
    """The session a job opens for itself: commit on success, roll back on error."""
    with get_database(get_settings()).session() as session:
        yield session


STOP_POLL_SECONDS = 1  # an idle worker notices a stop request at the latest this long after it


class StopWithoutRaising(Worker):
    """Warm shutdown that never raises from the signal handler.

    For an idle worker rq raises StopRequested from its SIGTERM handler, i.e. at whatever bytecode
    the main thread is on. Inside an ``except Exception`` (logging's emit, redis-py's metrics
    recorder, a finaliser) it is swallowed, the handler has already been swapped for the cold-stop
    one and ``_stop_requested`` is not set, so the worker runs on until it is killed. Here the
    handler only sets the flag, and the idle dequeue blocks in slices short enough to notice it.
    """

    def execute_job(self, job: Job, queue: Queue) -> Any:
        self._worker_pid = os.getpid()  # read in the work-horse, after the fork
        return super().execute_job(job, queue)

    def setup_work_horse_signals(self) -> None:
        """The work-horse (the forked child running one job) dies with its worker: a SIGKILLed
        worker must not leave a job running unseen (an hour-long index build, say); the sweeper
        hands the job to another worker instead."""
        super().setup_work_horse_signals()
        die_with_parent_now(self._worker_pid)

    def _shutdown(self) -> None:
        self._stop_requested = True
        if self.get_state() == WorkerStatus.BUSY:
            super()._shutdown()  # records the request and stops the scheduler; the job finishes

    def unsubscribe(self) -> None:
        """Stop listening for rq's commands without waiting a minute.

        rq unsubscribes first and then stops redis-py's listener thread (``sleep_time=60``), whose
        ``stop()`` joins it with no timeout. When the unsubscribe confirmation wakes the listener
        before the stop flag is down, it loops into ``get_message``, finds nothing subscribed and
        waits up to 60 s for a subscription, and the stopping worker with it (seen under load: a
        worker still running 15 s after SIGTERM, stuck in this join). The flag goes down first
        here, so the confirmation ends the loop, and the join is bounded: the thread is a daemon.
        """
        thread = self.pubsub_thread
        if thread is None:
            return
        thread.stop(timeout=0)  # flag down, no wait
        with contextlib.suppress(redis.RedisError, OSError, AttributeError):  # (a connection closing)
            self.pubsub.unsubscribe()  # its confirmation wakes the listener, which now exits
        thread.join(timeout=2)
        if not thread.is_alive():  # it closed the pubsub itself; a daemon still waiting is left alone
            with contextlib.suppress(redis.RedisError, OSError):
                self.pubsub.close()
        self.pubsub_thread = None

    def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().heartbeat(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            # rq retries an unreachable Redis forever without looking at the stop flag (after
            # `anju up` was killed, Redis goes down with the worker): a stopping idle worker quits.
            if self._stop_requested and self.get_state() != WorkerStatus.BUSY:
                raise StopRequested() from None
            raise

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        if timeout is None or max_idle_time is not None:  # burst mode / an idle limit: rq's own loop
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            # With max_idle_time rq returns None after one empty BLPOP of this many seconds.
            result = super().dequeue_job_and_maintain_ttl(STOP_POLL_SECONDS, STOP_POLL_SECONDS)
            if result is not None:
                return result
        raise StopRequested()


def build_worker(
    settings: Settings, *, name: str | None = None, worker_class: type[Worker] = Worker
) -> Worker:
    """An rq worker over all queues, configured as anju runs it."""
    if worker_class is Worker:
        worker_class = StopWithoutRaising
    elif not issubclass(worker_class, StopWithoutRaising):
        worker_class = type(worker_class.__name__, (StopWithoutRaising, worker_class), {})
    worker = worker_class(
        [get_queue(n, settings=settings) for n in settings.worker_queues],
        connection=get_redis(settings),
        serializer=JSONSerializer,
        name=name,
        worker_ttl=settings.worker_heartbeat_seconds + 15,  # rq heartbeats an idle worker every ttl-15 s
        job_monitoring_interval=settings.worker_heartbeat_seconds,
        # rq hands scheduler duty (delayed jobs, retries with back-off) to a live worker only during
        # maintenance, every 10 minutes by default: too long after the worker holding it died.
        maintenance_interval=max(10, settings.worker_heartbeat_seconds * 3),
    )
    worker.log_result_lifespan = False  # one line less per job, saying nothing an operator needs
    return worker


PENDING_STATUSES = {"queued", "started", "scheduled", "deferred"}


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Run one rq worker over all queues, with rq's scheduler for retries and delayed jobs.

    rq gives up when Redis goes away under it (a restart): the worker then starts over once Redis
    answers again, and the job it was running is recovered by the sweepers."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one intra-op thread for any model a job loads
    while True:
        worker = build_worker(settings, name=name)
        try:
            return bool(
                worker.work(
                    burst=burst, with_scheduler=settings.worker_scheduler, logging_level=settings.rq_log_level
                )
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if worker._stop_requested:
                return False
            log.warning("worker lost Redis (%s); starting over when it is back", exc)
            _wait_for_redis(settings)


def _wait_for_redis(settings: Settings, *, every: float = 1.0) -> None:
    while True:
        try:
            get_redis(settings).ping()
            return
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            time.sleep(every)


@dataclass
class SweepReport:
    recovered: list[str]

    def __bool__(self) -> bool:
        return bool(self.recovered)


def sweep_abandoned_jobs(
    connection: redis.Redis, *, heartbeat_seconds: int, now: datetime | None = None
) -> SweepReport:
    """Hand work whose worker died back to rq's own retry path.

    rq notices an abandoned execution only a minute after its last heartbeat and cleans its
    registries every ten minutes. Here an execution silent for three heartbeats is marked
    expired in its StartedJobRegistry and rq's cleanup retries it (or fails it when no retries
    are left), so the job is neither lost nor left hanging.
    """
    now = now or datetime.now(UTC)
    stale_before = now - timedelta(seconds=heartbeat_seconds * STALE_AFTER_HEARTBEATS)
    recovered: list[str] = []
    for name in QUEUE_NAMES:
        registry = StartedJobRegistry(name, connection=connection, serializer=JSONSerializer)
        stale: list[str] = []
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            execution = Execution(id=execution_id, job_id=job_id, connection=connection)
            try:
                execution.refresh()
                silent = execution.last_heartbeat < stale_before
            except ValueError:  # the execution's record expired with its worker
                silent = True
            if silent:
                stale.append(f"{job_id}:{execution_id}")
        if stale:
            connection.zadd(registry.key, dict.fromkeys(stale, 0), xx=True)
            registry.cleanup(timestamp=1)  # only the entries just marked have a score this low
            recovered.extend(s.split(":", 1)[0] for s in stale)
            log.warning("recovered %d job(s) abandoned by dead workers on queue %s", len(stale), name)
    return SweepReport(recovered)


SCHEDULER_SILENT_SECONDS = 15  # an rq scheduler refreshes its locks every second
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def release_dead_scheduler_locks(connection: redis.Redis) -> list[str]:
    """Free the scheduler locks of rq schedulers that died with their worker.

    A worker's rq scheduler moves delayed jobs and retries (a job recovered from a dead worker
    runs again after a back-off) onto their queues. It refreshes its lock to a 61 s TTL every
    second; a dead one's lock lingers that long, and a live worker claims a free lock only at its
    next maintenance, so retries of every queue would wait over a minute. A lock not refreshed
    for SCHEDULER_SILENT_SECONDS is deleted (only if it still names the same owner); a live worker
    takes it within its maintenance interval. Returns the queues released.
    """
    from rq.scheduler import RQScheduler

    released = []
    for name in QUEUE_NAMES:
        key = RQScheduler.get_locking_key(name)
        owner, ttl = connection.get(key), connection.ttl(key)
        if not owner or ttl < 0 or ttl > DEFAULT_SCHEDULER_LOCK_TTL - SCHEDULER_SILENT_SECONDS:
            continue
        if connection.eval(_RELEASE_IF_OWNER, 1, key, owner):
            released.append(name)
    if released:
        log.warning("released the lock of a dead rq scheduler for queue(s) %s", ", ".join(released))
    return released


DEFAULT_SCHEDULER_LOCK_TTL = 61  # rq: the scheduler's interval (1 s) + 60


# Periodic jobs the scheduler enqueues: (dotted function path, interval seconds).
# Domains add theirs here (SLA timers, crawls, index builds) as they arrive.
def periodic_jobs(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("core.tasks.sweep", settings.sweep_interval_seconds),
        ("channels.tasks.sweep_inbound", settings.sweep_interval_seconds),
        ("escalation.tasks.sweep", settings.sweep_interval_seconds),
        ("crawlers.tasks.schedule_due", 60),  # sources' own intervals are minutes
        ("sentiment.tasks.sweep", 60),  # alert digests and internal complaint spikes
        ("knowledge.tasks.sweep", 60),  # stale search indexes rebuilt
    ]


def run_scheduler(settings: Settings, *, stop_after: float | None = None) -> None:
    """Enqueue each periodic job once per interval, cluster-wide.

    Several schedulers may run (one per machine); a Redis key per job and time slot makes sure
    only one of them enqueues each run.
    """
    connection = get_redis(settings)
    queue = get_queue("high", settings=settings)
    stopping = False

    def _stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    log.info("scheduler started with %s", periodic_jobs(settings))
    # rq's own scheduler (delayed jobs, retries with back-off), in this small process rather than as
    # a fork of a worker that holds the models. rq's per-queue locks keep it single cluster-wide: a
    # worker's scheduler, where one runs, and this one never both move the same queue's jobs.
    from rq.scheduler import RQScheduler

    delayed = RQScheduler(QUEUE_NAMES, connection=connection, serializer=JSONSerializer, interval=1)
    registered = False
    while not stopping:
        try:
            if not registered:
                delayed.register_birth()
                registered = True
            if delayed.should_reacquire_locks:
                delayed.acquire_locks()
            delayed.heartbeat()
            delayed.enqueue_scheduled_jobs()
            for func_path, interval in periodic_jobs(settings):
                slot = int(time.time() // interval)
                if connection.set(f"anju:periodic:{func_path}:{slot}", 1, nx=True, ex=interval * 2):
                    # One id per periodic job: a sweep still queued behind a backlog is not joined by
                    # another (they would pile up on the high queue).
                    job_id = "periodic-" + func_path.replace(".", "-")
                    earlier = queue.fetch_job(job_id)
                    if earlier is None or earlier.get_status(refresh=False) not in PENDING_STATUSES:
                        queue.enqueue(func_path, job_id=job_id, job_timeout=max(interval, 30),
                                      result_ttl=interval * 4)  # fmt: skip
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:  # Redis restarting
            log.warning("scheduler: Redis unavailable (%s); trying again", exc)
        if stop_after is not None and time.monotonic() - started > stop_after:
            break
        time.sleep(1)
    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError):
        delayed.stop()  # releases its locks at once: a worker's scheduler may take over
    log.info("scheduler stopped")
