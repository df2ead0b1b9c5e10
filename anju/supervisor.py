"""``anju up``: the API, a worker and the scheduler (and the embedded Redis) as one supervised group.

A child that dies is restarted (with a pause that grows if it keeps dying). Ctrl-C, SIGTERM or
SIGHUP (a closed terminal) stops the group: the API, scheduler and worker are asked to stop at
once, and whatever is still running after a few seconds is killed with everything it forked;
Redis last, after they have gone. If the
supervisor itself is killed, its children get SIGTERM from the kernel and stop too (Linux).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from core.processes import die_with_parent
from core.redis import spawn_embedded_redis
from core.settings import Settings

log = logging.getLogger(__name__)

# A stop finishes within this bound: a job still running then is killed with its worker. Jobs are
# idempotent and the database is the source of truth, so the sweeper runs it again at the next start
# (a 30 s grace let one stop hang on a crawl retrying the already stopped API).
STOP_GRACE_SECONDS = 4
MAX_RESTART_DELAY = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the supervisor's environment
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    history: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, start_new_session=True, env={**os.environ, **self.env}, preexec_fn=die_with_parent()
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.proc.pid)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis_proc: subprocess.Popen[bytes] | None = None
        python = sys.executable
        self.children = [
            Child("api", [python, "-m", "anju.cli", "serve"]),
            # rq's scheduler runs in the scheduler process, not as a fork of the worker (core.queue)
            Child("worker", [python, "-m", "anju.cli", "worker"], {"ANJU_WORKER_SCHEDULER": "false"}),
            Child("scheduler", [python, "-m", "anju.cli", "scheduler"]),
        ]
        self.stopping = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def start(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)
        if self.settings.embedded_redis:
            self.redis_proc = spawn_embedded_redis(self.settings)
            log.info("embedded Redis on %s (pid %s)", self.settings.redis_socket, self.redis_proc.pid)
        for child in self.children:
            child.start()

    def wait_ready(self, timeout: float = 90.0) -> bool:
        deadline = time.monotonic() + timeout
        url = f"http://{self.settings.host}:{self.settings.port}/readyz"
        while time.monotonic() < deadline and not self.stopping:
            try:
                response = httpx.get(url, timeout=2)
                # The API is ready on its own; the group is ready once a worker takes jobs too.
                if response.status_code == 200 and response.json()["checks"].get("workers", 0) > 0:
                    return True
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            self.check_children()
            time.sleep(0.2)
        return False

    def check_children(self) -> None:
        now = time.monotonic()
        if self.redis_proc is not None and self.redis_proc.poll() is not None and not self.stopping:
            log.error("embedded Redis exited with %s; restarting it", self.redis_proc.returncode)
            try:
                self.redis_proc = spawn_embedded_redis(self.settings)
            except RuntimeError as exc:
                log.error("%s; trying again", exc)
        for child in self.children:
            if child.proc is None:
                if now >= child.next_start:
                    child.start()
                continue
            code = child.proc.poll()
            if code is None or self.stopping:
                continue
            # Whatever the dead child forked (rq's scheduler process, a work-horse) shares its
            # process group; left alone it would hold rq's scheduler lock and run on unsupervised.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.history = [t for t in child.history if now - t < 60] + [now]
            delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (len(child.history) - 1))
            log.error("%s exited with %s; restarting in %.1f s", child.name, code, delay)
            child.proc = None
            child.restarts += 1
            child.next_start = now + delay

    def run_until_stopped(self) -> None:
        while not self.stopping:
            self.check_children()
            time.sleep(0.5)
        self.stop()

    def stop(self) -> None:
        """Every child gets SIGTERM at once (a warm stop: the API drains, a worker finishes its job
        if it can); after STOP_GRACE_SECONDS, or as soon as all have exited, each child's whole
        process group is killed, so nothing they forked (rq's scheduler, a work-horse) outlives
        ``anju up``. Then the embedded Redis, which saves on SIGTERM."""
        self.stopping = True
        procs = [(c.name, c.proc) for c in self.children if c.proc is not None]
        for name, proc in procs:
            if proc.poll() is None:
                log.info("stopping %s", name)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, proc in procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %d s; killing it", name, STOP_GRACE_SECONDS)
        for _, proc in procs:  # the group outlives its leader while anything it forked lives
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.send_signal(signal.SIGTERM)  # redis-server saves and exits on SIGTERM
            try:
                self.redis_proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
                self.redis_proc.wait()
        log.info("all stopped")
