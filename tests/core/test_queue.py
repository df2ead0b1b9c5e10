"""The queue with real Redis servers and real worker processes."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select

from core.db import get_database
from core.queue import enqueue, get_queue, sweep_abandoned_jobs
from core.redis import get_redis, spawn_embedded_redis
from core.settings import Settings
from core.tasks import ping
from org.models import ImportStatus, Resident, ResidentImport
from tests.conftest import ROOT, LiveServer, settings_env, wait_for


def test_a_worker_process_runs_a_real_job(settings: Settings, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(settings)
    job = enqueue(ping, queue="high", settings=settings, token="t1")
    assert wait_for(lambda: job.get_status(refresh=True) == "finished", message="the ping job")
    assert job.return_value() == "pong:t1"
    assert job.retries_left == 3  # enqueued with the default retry policy
    assert job.timeout == settings.job_timeout_seconds


def test_the_same_job_id_is_not_queued_twice(settings: Settings) -> None:
    first = enqueue(ping, job_id="ping-once", settings=settings)
    second = enqueue(ping, job_id="ping-once", settings=settings)
    assert first.id == second.id
    assert get_queue("default", settings=settings).count == 1


def test_embedded_redis_serves_the_queue(tmp_path: Path, sqlite_settings: Settings, start_worker) -> None:  # type: ignore[no-untyped-def]
    embedded = Settings(**{**sqlite_settings.model_dump(), "redis_url": None})
    assert embedded.embedded_redis
    proc = spawn_embedded_redis(embedded)
    try:
        assert embedded.redis_socket.exists()
        start_worker(embedded)
        job = enqueue(ping, settings=embedded, token="embedded")
        wait_for(lambda: job.get_status(refresh=True) == "finished", message="the job on embedded Redis")
        assert job.return_value() == "pong:embedded"
        # The embedded server persists its data under the data folder.
        assert (embedded.redis_socket.parent / "appendonly.aof").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _big_csv(rows: int) -> bytes:
    lines = ["姓名,手机号,楼栋,单元,房号"]
    for i in range(rows):
        lines.append(f"住户{i},137{i:08d},{i % 20 + 1}栋,{i % 3 + 1}单元,{i // 60 + 1:02d}{i % 4 + 1:02d}")
    return "\n".join(lines).encode()


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_applied_once(
    server: LiveServer,
    start_worker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    settings = server.settings
    rows = 4000
    first = start_worker(settings)
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "anju.cli", "scheduler"],
        env=settings_env(settings),
        cwd=ROOT,
        stdout=(tmp_path / "scheduler.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        with server.login("admin") as admin:
            r = admin.post(
                "/api/communities/1/residents/imports", files={"file": ("big.csv", _big_csv(rows))}
            )
            import_id = r.json()["id"]
            wait_for(
                lambda: admin.get(f"/api/resident-imports/{import_id}").json()["processed_rows"] > 0,
                interval=0.02,
                message="the import to be part-way",
            )
            first.kill()  # mid-job: its open batch never commits
            assert admin.get(f"/api/resident-imports/{import_id}").json()["status"] == "running"
            start_worker(settings)
            done = wait_for(
                lambda: (
                    (j := admin.get(f"/api/resident-imports/{import_id}").json())["status"] == "done" and j
                ),
                timeout=120,
                message="another worker to finish the import",
            )
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=10)
    assert done["attempts"] == 2
    assert done["report"]["created"] == rows
    assert done["processed_rows"] == done["total_rows"] == rows
    with get_database(settings).session() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Resident)
            .where(Resident.community_id == 1, Resident.name.like("住户%"))
        )
        assert count == rows  # nothing lost, nothing twice
        assert session.get(ResidentImport, import_id).status is ImportStatus.done


def test_sweeper_leaves_live_work_alone(settings: Settings, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(settings)
    job = enqueue(ping, settings=settings)
    wait_for(lambda: job.get_status(refresh=True) == "finished", message="ping")
    report = sweep_abandoned_jobs(get_redis(settings), heartbeat_seconds=settings.worker_heartbeat_seconds)
    assert report.recovered == []


def test_readiness_fails_when_redis_is_down_and_recovers(
    sqlite_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tests.services import RedisServer

    own = RedisServer(tmp_path / "redis").start()
    request.addfinalizer(own.stop)
    settings = Settings(**{**sqlite_settings.model_dump(), "redis_url": own.url})
    with LiveServer(settings) as live, live.client() as c:
        assert c.get("/readyz").status_code == 200
        own.stop()
        down = c.get("/readyz")
        assert down.status_code == 503
        assert down.json()["status"] == "unavailable"
        assert down.json()["checks"]["redis"].startswith("error")
        assert down.json()["checks"]["database"] == "ok"
        assert c.get("/healthz").status_code == 200  # the process itself is fine
        own.start()
        assert wait_for(lambda: c.get("/readyz").status_code == 200, message="readiness after Redis restart")


def test_readiness_fails_when_the_database_is_unreachable(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        log_json=False,
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
    )
    with LiveServer(settings) as live:
        r = httpx.get(f"{live.url}/readyz", timeout=30)
    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("error")


def test_enqueue_refuses_unknown_queues(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown queue"):
        enqueue(ping, queue="urgent", settings=settings)


def test_jobs_survive_a_redis_restart(tmp_path: Path, sqlite_settings: Settings, start_worker) -> None:  # type: ignore[no-untyped-def]
    """The embedded default keeps an append-only file: a job accepted before a restart still runs."""
    from tests.services import RedisServer

    own = RedisServer(tmp_path / "redis").start()
    settings = Settings(**{**sqlite_settings.model_dump(), "redis_url": own.url})
    job = enqueue(ping, settings=settings, token="kept")
    time.sleep(1.2)  # appendfsync everysec
    own.stop()
    own.start()
    redis.Redis.from_url(own.url).ping()
    start_worker(settings)
    try:
        wait_for(lambda: job.get_status(refresh=True) == "finished", message="the job after the restart")
    finally:
        own.stop()


def test_readiness_does_not_wait_behind_a_sqlite_writer(sqlite_settings: Settings) -> None:
    import sqlite3

    writer = sqlite3.connect(sqlite_settings.data_dir / "anju.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with LiveServer(sqlite_settings) as live:
            r = httpx.get(f"{live.url}/readyz", timeout=5)
        assert r.status_code == 200
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_stop_signal_caught_inside_a_log_call_still_stops_the_worker(sqlite_settings: Settings) -> None:
    """rq raises its stop exception from the signal handler; swallowed by logging's own error
    handling it used to leave the worker running until killed."""
    import os

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.core.stop_during_log",
            str(sqlite_settings.data_dir),
            str(sqlite_settings.redis_url),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and the scheduler process it forked
        proc.communicate()
        raise AssertionError("the worker ignored SIGTERM") from None
    assert proc.returncode == 0, err[-2000:]
    assert "stopped after" in out


def test_a_stopping_worker_stops_listening_for_commands_at_once(sqlite_settings: Settings) -> None:
    """rq's listener thread for worker commands (redis-py's, sleep_time 60 s): when the
    unsubscribe confirmation reached it before the stop flag, it waited a minute for a new
    subscription and the stopping worker joined it for that minute. Both orders, real Redis."""
    from core.queue import build_worker

    for listener_first in (False, True):
        worker = build_worker(sqlite_settings)
        worker.subscribe()
        thread = worker.pubsub_thread
        assert thread is not None
        wait_for(lambda: worker.pubsub.subscribed, timeout=10, message="the subscription")  # noqa: B023
        time.sleep(0.3)  # the listener is reading
        if listener_first:  # the confirmation arrives and the listener loops before the flag is down
            worker.pubsub.unsubscribe()
            wait_for(lambda: not worker.pubsub.subscribed, timeout=10, message="the confirmation")  # noqa: B023
            time.sleep(0.3)
        started = time.monotonic()
        worker.unsubscribe()
        assert time.monotonic() - started < 10  # not the listener's 60 s
        if not listener_first:
            assert not thread.is_alive()


def test_a_dead_schedulers_lock_is_released_and_a_live_ones_kept(redis_url: str) -> None:
    from core.queue import release_dead_scheduler_locks

    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    connection.set("rq:scheduler-lock:default", "dead-one", ex=40)  # not refreshed for 21 s
    connection.set("rq:scheduler-lock:high", "live-one", ex=60)  # refreshed a second ago
    assert release_dead_scheduler_locks(connection) == ["default"]
    assert connection.get("rq:scheduler-lock:default") is None
    assert connection.get("rq:scheduler-lock:high") == b"live-one"
    connection.flushdb()


def test_the_scheduler_process_moves_delayed_jobs_so_workers_need_not_fork_one(
    settings: Settings,
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """Under `anju up` the worker runs without rq's scheduler fork (a copy of a process holding
    the models): `anju scheduler` moves delayed jobs and back-off retries onto their queues."""
    from datetime import timedelta

    without = settings.model_copy(update={"worker_scheduler": False})
    start_worker(without)
    job = enqueue(ping, queue="high", settings=settings, delay=timedelta(seconds=1), token="later")
    assert job.get_status(refresh=True) == "scheduled"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "anju.cli", "scheduler"], cwd=ROOT, env=settings_env(settings),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for(lambda: job.get_status(refresh=True) == "finished", timeout=30,
                        message="the delayed job moved by the scheduler process and run")  # fmt: skip
        assert job.return_value() == "pong:later"
    finally:
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=10) == 0
    # it let go of rq's scheduler locks on its way out: a worker's scheduler may take over at once
    assert not get_redis(settings).keys("rq:scheduler-lock:*")
