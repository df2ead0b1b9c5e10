"""Reference point for bench/rq_throughput.py: the anju worker's set-up, but with rq's
``SimpleWorker``, which runs each job in the worker process itself instead of forking a
work-horse per job. NOT how anju runs jobs (no isolation: a job that crashes or leaks takes
the worker with it); it only shows how much of the per-job cost is the fork.

    ANJU_DATA_DIR=... ANJU_REDIS_URL=... .venv/bin/python -m bench.simple_worker
"""

from __future__ import annotations

import os

from rq import SimpleWorker


def main() -> None:
    import anju.models  # noqa: F401  same imports as `anju worker`
    from core.logging import configure_logging
    from core.queue import build_worker
    from core.redis import ensure_embedded_redis
    from core.settings import get_settings

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = get_settings()
    configure_logging(level=settings.log_level, json_lines=settings.json_logs)
    ensure_embedded_redis(settings)
    worker = build_worker(settings, worker_class=SimpleWorker)  # type: ignore[arg-type]  # rq types it as Worker
    worker.work(with_scheduler=True, logging_level=settings.rq_log_level)


if __name__ == "__main__":
    main()
