"""The embedded default under write load: the API and two worker processes writing to one SQLite
file at the same moment, and nobody gets "database is locked"."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from anju.demo import seed_demo
from core.db import get_database
from core.queue import get_queue
from core.redis import get_redis
from core.settings import Settings
from org.models import Resident
from tests.conftest import LiveServer, wait_for

ROWS_PER_IMPORT = 1000  # five batches of 200, each its own write transaction
API_WRITERS, WRITES_EACH = 4, 40


def _csv(prefix: str) -> bytes:
    lines = ["姓名,手机号,楼栋,单元,房号"]
    lines += [f"住户{i},{prefix}{i:04d},{i % 9 + 1}栋,1单元,{i:04d}" for i in range(ROWS_PER_IMPORT)]
    return "\n".join(lines).encode()


@pytest.mark.slow
def test_api_and_two_workers_write_at_once(sqlite_settings: Settings, start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = sqlite_settings
    with get_database(settings).session() as session:
        seed_demo(session, residents_per_community=2)
    workers = [start_worker(settings), start_worker(settings)]
    with LiveServer(settings) as live, live.login("admin") as admin:
        wait_for(lambda: admin.get("/readyz").json()["checks"]["workers"] == 2, message="two workers")
        imports = []
        for community_id, prefix in ((1, "1370000"), (2, "1370001"), (3, "1370002"), (1, "1370003")):
            r = admin.post(
                f"/api/communities/{community_id}/residents/imports",
                files={"file": (f"{prefix}.csv", _csv(prefix), "text/csv")},
            )
            assert r.status_code == 202, r.text
            imports.append(r.json()["id"])

        statuses: list[int] = []
        failures: list[str] = []

        def write(writer: int) -> None:
            with live.login("admin") as client:
                for i in range(WRITES_EACH):
                    r = client.post(
                        f"/api/communities/{writer % 3 + 1}/residents",
                        json={"name": f"接待{writer}-{i}", "mobile": f"1360{writer:03d}{i:04d}"},
                    )
                    statuses.append(r.status_code)
                    if r.status_code != 201:
                        failures.append(r.text)
                    client.get(f"/api/communities/{writer % 3 + 1}/residents", params={"limit": 5})

        threads = [threading.Thread(target=write, args=(w,)) for w in range(API_WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reports = [
            wait_for(
                lambda i=i: (
                    (j := admin.get(f"/api/resident-imports/{i}").json())["status"] in {"done", "failed"}
                    and j
                ),
                timeout=120,
                message=f"import {i}",
            )
            for i in imports
        ]
    assert failures == [] and statuses.count(201) == API_WRITERS * WRITES_EACH
    assert [r["status"] for r in reports] == ["done"] * 4
    assert [r["report"]["created"] for r in reports] == [ROWS_PER_IMPORT] * 4
    for name in ("high", "default", "low"):
        assert FailedJobRegistry(queue=get_queue(name, settings=settings)).count == 0
    with get_database(settings).session() as session:
        total = session.scalar(select(func.count()).select_from(Resident))
    assert total == 3 * 2 + 4 * ROWS_PER_IMPORT + API_WRITERS * WRITES_EACH
    logs = "".join(w.log_path.read_text(errors="replace") for w in workers)
    assert "database is locked" not in logs
    assert get_redis(settings).ping()


def test_writers_of_one_process_queue_for_the_database_and_every_ending_lets_the_next_in(
    sqlite_settings: Settings,
) -> None:
    """Each way a write transaction ends (commit, rollback, an error, a closed connection) hands
    the database to the next writer at once, not after SQLite's busy timeout; readers never wait."""
    import os
    import time

    settings = sqlite_settings.model_copy(update={"sqlite_busy_timeout_ms": 20_000})
    database = get_database(settings)
    with database.session() as session:
        seed_demo(session, residents_per_community=1, knowledge=False)

    def timed_write() -> float:
        started = time.perf_counter()
        with database.session() as session:
            session.add(Resident(community_id=1, name="排队的住户"))
        return time.perf_counter() - started

    # committed, rolled back, failed: the next writer goes straight in
    with database.session() as session:
        session.add(Resident(community_id=1, name="甲"))
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(Resident(community_id=1, name="乙"))
        session.flush()
        raise RuntimeError("a view failed half-way")
    assert timed_write() < 2

    # a writer holding the database: another thread queues, a reader does not
    holder = database.sessionmaker()
    holder.add(Resident(community_id=1, name="慢写入"))
    holder.flush()
    finished: list[float] = []
    waiting = threading.Thread(target=lambda: finished.append(timed_write()))
    waiting.start()
    time.sleep(0.5)
    assert not finished  # still queued behind the holder
    with database.session(readonly=True) as reader:
        assert reader.scalar(select(func.count(Resident.id))) >= 1
    holder.connection().connection.dbapi_connection.close()  # a connection lost mid-transaction
    holder.invalidate()
    waiting.join(5)
    assert finished and finished[0] < 3

    # rq's work-horse: forked after this process's writers let go (the gate's lock is not carried
    # into the child: it starts with one of its own), the child writes, and the parent goes on
    # writing afterwards. SQLite's rule stays: no fork while another thread has a connection open
    # (the child inherits that file's lock state and could not write, or lost its commit); anju's
    # forking processes (rq workers, the crawl runner) use SQLite from one thread only.
    holder = database.sessionmaker()
    holder.add(Resident(community_id=1, name="父进程"))
    holder.flush()
    queued = threading.Thread(target=timed_write)
    queued.start()
    time.sleep(0.2)
    holder.commit()  # the queued thread writes now
    holder.close()
    queued.join(5)
    assert not queued.is_alive()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with get_database(settings).session() as child:
                child.add(Resident(community_id=1, name="子进程"))
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    queued.join(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert timed_write() < 2
    # another process (an rq worker) queues at the same gate and goes in as soon as we commit
    import subprocess
    import sys

    from tests.conftest import ROOT, settings_env

    holder = database.sessionmaker()
    holder.add(Resident(community_id=1, name="本进程"))
    holder.flush()
    script = (
        "from core.db import get_database; from core.settings import get_settings; "
        "import anju.models; from org.models import Resident\n"
        "with get_database(get_settings()).session() as s: s.add(Resident(community_id=1, name='别的进程'))"
    )
    other = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=settings_env(settings))
    time.sleep(3)  # it started (imports take ~1 s) and waits
    assert other.poll() is None
    holder.commit()
    committed = time.perf_counter()
    assert other.wait(10) == 0
    assert time.perf_counter() - committed < 1.5
    holder.close()

    with database.session(readonly=True) as session:
        names = set(session.scalars(select(Resident.name)))
    assert {"甲", "排队的住户", "父进程", "子进程", "本进程", "别的进程"} <= names and "乙" not in names
