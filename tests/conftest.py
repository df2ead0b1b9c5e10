"""Fixtures: real SQLite and PostgreSQL, real Redis, the app over real HTTP, real worker processes.

Every test that takes ``settings`` runs twice, on SQLite and on PostgreSQL. Each test gets an
empty, migrated database and an empty Redis database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import redis
import uvicorn
from sqlalchemy import text

from anju import wiring
from anju.app import create_app
from anju.migrate import upgrade
from core.db import get_database
from core.settings import Settings
from tests import services

wiring.connect()  # the test process is assembled here: services called directly post as the app does

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")
# One Redis database per test process: 9 by default, ANJU_TEST_REDIS_DB for a second session run
# beside the first (bench/ uses 11), plus the pytest-xdist worker's number (gw0 → +0, gw1 → +1).
TEST_REDIS_DB = int(os.environ.get("ANJU_TEST_REDIS_DB", "9")) + int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0
)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return services.ensure_redis() + f"/{TEST_REDIS_DB}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once; dropped at the end."""
    admin = services.ensure_postgres()
    if admin is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432")
        pytest.skip("PostgreSQL is not reachable")
    name = f"anju_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade(Settings(database_url=url, redis_url="redis://unused"))
    yield url
    get_database(Settings(database_url=url, redis_url="redis://unused")).dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for each test (migrating takes longer than copying)."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    upgrade(Settings(data_dir=folder, redis_url="redis://unused"))
    return folder / "anju.db"


def _truncate_all(settings: Settings) -> None:
    from anju.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with get_database(settings).engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Settings]:
    """Settings for one test: an empty migrated database (SQLite or PostgreSQL), an empty Redis db."""
    base = dict(
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        log_json=False,
        worker_heartbeat_seconds=1,
        sweep_interval_seconds=1,
        warm_assistant=False,  # no background thread racing the per-test database reset
    )
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        (tmp_path / "data").mkdir()
        shutil.copy(template, tmp_path / "data" / "anju.db")
        settings = Settings(**base)
    else:
        settings = Settings(**base, database_url=request.getfixturevalue("pg_database"))
        _truncate_all(settings)
    redis.Redis.from_url(redis_url).flushdb()
    yield settings
    redis.Redis.from_url(redis_url).flushdb()
    if request.param == "sqlite":
        get_database(settings).dispose()


@pytest.fixture
def sqlite_settings(tmp_path: Path, redis_url: str, sqlite_template: Path) -> Settings:
    (tmp_path / "data").mkdir()
    shutil.copy(sqlite_template, tmp_path / "data" / "anju.db")
    redis.Redis.from_url(redis_url).flushdb()
    return Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        log_json=False,
        worker_heartbeat_seconds=1,
        sweep_interval_seconds=1,
        warm_assistant=False,
    )


@pytest.fixture
def demo(settings: Settings) -> Settings:
    """The demo company, communities, residents and accounts in the test database."""
    from anju.demo import seed_demo

    with get_database(settings).session() as session:
        seed_demo(session, residents_per_community=8, knowledge=False)
    return settings


@pytest.fixture
def demo_kb(demo: Settings) -> Settings:
    """The demo data with the demo knowledge base (FAQ and service standard), indexed."""
    from anju.demo import seed_demo_knowledge
    from knowledge.service import rebuild_index
    from org.models import Company

    with get_database(demo).session() as session:
        company = session.query(Company).one()
        seed_demo_knowledge(session, company.id)
        company_id = company.id
    rebuild_index(demo, company_id=company_id)
    return demo


class LiveServer:
    """The real app on a real port, spoken to over real HTTP."""

    def __init__(self, settings: Settings, app: object | None = None) -> None:
        self.settings = settings
        self.port = services.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or create_app(settings),  # type: ignore[arg-type]
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            proxy_headers=False,  # as `anju serve`: only the app reads X-Forwarded-For (trusted_proxies)
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def login(self, username: str, password: str = "anju-demo-2026") -> httpx.Client:
        """An API client holding a bearer token for this account."""
        with self.client() as c:
            response = c.post("/api/auth/token", json={"username": username, "password": password})
        response.raise_for_status()
        token = response.json()["access_token"]
        return self.client(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def server(demo: Settings) -> Iterator[LiveServer]:
    with LiveServer(demo) as live:
        yield live


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child process (worker, CLI) needs to share this test's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_")}
    env.update(
        ANJU_DATA_DIR=str(settings.data_dir),
        ANJU_LOG_JSON="false",
        OMP_NUM_THREADS="1",
        ANJU_WORKER_HEARTBEAT_SECONDS=str(settings.worker_heartbeat_seconds),
        ANJU_SWEEP_INTERVAL_SECONDS=str(settings.sweep_interval_seconds),
        PYTHONPATH=str(ROOT),
        # Workers at the API's priority: here the "API" is the test process, which waits for them.
        ANJU_WORKER_NICE="0",
    )
    for name in ("app_channel_secret", "app_webhook_url", "app_webhook_secret", "phone_channel_secret"):
        if value := getattr(settings, name):
            env[f"ANJU_{name.upper()}"] = value
    if settings.llm_base_url:
        env.update(ANJU_LLM_BASE_URL=settings.llm_base_url, ANJU_LLM_MODEL=settings.llm_model,
                   ANJU_LLM_TIMEOUT_SECONDS=str(settings.llm_timeout_seconds))  # fmt: skip
    if settings.app_channels:
        env["ANJU_APP_CHANNELS"] = json.dumps([c.model_dump() for c in settings.app_channels])
    if settings.phone_channels:
        env["ANJU_PHONE_CHANNELS"] = json.dumps([c.model_dump() for c in settings.phone_channels])
    if settings.wechat_accounts:
        env["ANJU_WECHAT_ACCOUNTS"] = json.dumps([a.model_dump() for a in settings.wechat_accounts])
    env["ANJU_WECHAT_API_BASE"] = settings.wechat_api_base
    env["ANJU_DELIVERY_BACKOFF_SECONDS"] = json.dumps(settings.delivery_backoff_seconds)
    env["ANJU_DELIVERY_MAX_ATTEMPTS"] = str(settings.delivery_max_attempts)
    env["ANJU_INBOUND_STALE_SECONDS"] = str(settings.inbound_stale_seconds)
    env["ANJU_WORKER_SCHEDULER"] = str(settings.worker_scheduler).lower()
    if settings.supervisor_robots:
        env["ANJU_SUPERVISOR_ROBOTS"] = json.dumps([r.model_dump() for r in settings.supervisor_robots])
    for name in ("case_idle_minutes", "survey_low_score", "agent_max_open_cases", "business_hours",
                 "risk_thresholds", "crawl_polite", "alert_rate_per_hour", "alert_ack_minutes",
                 "alert_mail_from", "upload_parse_timeout_seconds", "upload_max_unzipped_bytes",
                 "upload_max_zip_entries", "upload_max_zip_ratio", "upload_max_pdf_pages",
                 "upload_max_pdf_stream_bytes"):  # fmt: skip
        env[f"ANJU_{name.upper()}"] = str(getattr(settings, name))
    if settings.trusted_proxies:
        env["ANJU_TRUSTED_PROXIES"] = ",".join(settings.trusted_proxies)
    if settings.smtp_url:
        env["ANJU_SMTP_URL"] = settings.smtp_url
    if settings.outbound_allow:  # the fakes a test lets the server reach (tests/services.allowing)
        env["ANJU_OUTBOUND_ALLOW"] = json.dumps(settings.outbound_allow)
    if settings.database_url:
        env["ANJU_DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["ANJU_REDIS_URL"] = settings.redis_url
    return env


class WorkerIgnoredSigterm(UserWarning):
    """A test's worker had to be killed at teardown: shown in the warnings summary, not an error
    (the test itself passed), with the stacks the worker dumped."""


class WorkerProcess:
    """``anju worker`` as its own process, as it runs in production."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anju.cli", "worker"],
            env=settings_env(self.settings),
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the worker and the work-horse it forked (rq puts it in its own session):
        a machine that lost power."""
        if self.proc and self.proc.poll() is None:
            family = [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children(recursive=True))]
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # rq's warm shutdown: finish the job, then exit
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # Say what it was doing (anju worker dumps its stacks on SIGUSR1), then kill it.
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
                self.kill()
                tail = self.log_path.read_bytes()[-4000:].decode(errors="replace")
                warnings.warn(
                    WorkerIgnoredSigterm(
                        f"worker {self.proc.pid} still running 15 s after SIGTERM; its log ends\n{tail}"
                    ),
                    stacklevel=2,
                )
        self.log.close()


def run_burst_worker(settings: Settings, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``anju worker --burst``: a real worker runs every queued job, then exits. Fails the test if
    the worker does."""
    worker = subprocess.run(
        [sys.executable, "-m", "anju.cli", "worker", "--burst"],
        env=settings_env(settings), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
    return worker


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[object]:
    workers: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
