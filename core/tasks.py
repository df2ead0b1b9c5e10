"""rq jobs of the core: the sweeper and a ping used by readiness checks and benchmarks."""

from __future__ import annotations

from core.queue import release_dead_scheduler_locks, sweep_abandoned_jobs
from core.redis import get_redis
from core.settings import get_settings


def sweep() -> list[str]:
    """Periodic: recover jobs abandoned by dead workers, and free their schedulers' locks so a
    live worker runs the retries on time. Returns the recovered job ids."""
    settings = get_settings()
    connection = get_redis(settings)
    release_dead_scheduler_locks(connection)
    return sweep_abandoned_jobs(connection, heartbeat_seconds=settings.worker_heartbeat_seconds).recovered


def ping(*, token: str = "") -> str:
    """A job that does nothing but answer: proves a worker is taking jobs."""
    return f"pong:{token}"
