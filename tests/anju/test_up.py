"""``anju up`` from an empty data folder, as a newcomer runs it: embedded Redis, migrate, demo data,
API + worker + scheduler; a crashed child comes back; Ctrl-C stops everything and leaves nothing."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests import services
from tests.conftest import ROOT, wait_for

GREETING = "安居已启动"


def _wait_gone(processes: list[psutil.Process], *, timeout: float, what: str) -> None:
    try:
        wait_for(lambda: not any(_alive(p) for p in processes), timeout=timeout, message=f"{what} to stop")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still running: {[p.pid for p in processes if _alive(p)]}") from None


@contextlib.contextmanager
def _admin(url: str) -> Iterator[httpx.Client]:
    """An API client logged in as the demo admin."""
    with httpx.Client(base_url=url, timeout=30) as api:
        token = api.post("/api/auth/token", json={"username": "admin", "password": "anju-demo-2026"})
        api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield api


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE  # an orphaned zombie waits for init to reap it
    except psutil.NoSuchProcess:
        return False


class Up:
    def __init__(self, data_dir: Path) -> None:
        self.port = services.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_")}
        env.update(ANJU_DATA_DIR=str(data_dir), ANJU_PORT=str(self.port), ANJU_LOG_JSON="false")
        env.update(ANJU_WORKER_HEARTBEAT_SECONDS="2", ANJU_SWEEP_INTERVAL_SECONDS="2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anju.cli", "up"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if needle in self.lines.get(timeout=0.5):
                    return
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        raise AssertionError(f"`anju up` never printed {needle!r}:\n{''.join(self.output)[-4000:]}")

    def family(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def child(self, module_arg: str) -> psutil.Process | None:
        """The supervisor's own child running ``anju <module_arg>`` (not what that child forked)."""
        for p in psutil.Process(self.proc.pid).children():
            try:
                cmd = p.cmdline()
            except psutil.NoSuchProcess:
                continue
            if cmd[-1:] == [module_arg] and "anju.cli" in cmd:
                return p
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            for p in [*self.family(), psutil.Process(self.proc.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            self.proc.wait()


@pytest.mark.slow
def test_up_from_nothing_serves_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data)
    try:
        up.wait_for_line(GREETING)
        printed = "".join(up.output)
        assert f"{up.url}/login" in printed and "anju-demo-2026" in printed
        for account in ("agent", "supervisor", "pr", "admin"):
            assert f"    {account} " in printed
        ready = httpx.get(f"{up.url}/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["redis"] == "ok"
        assert (data / "anju.db").exists() and (data / "redis" / "redis.sock").exists()

        # The login page accepts a demo account and shows the workspace.
        with httpx.Client(base_url=up.url, timeout=30) as browser:
            page = browser.get("/login")
            assert page.status_code == 200 and "登录" in page.text
            signed_in = browser.post(
                "/login", data={"username": "supervisor", "password": "anju-demo-2026", "next": "/"}
            )
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
            workspace = browser.get("/")
            assert workspace.status_code == 200 and "客服主管王敏" in workspace.text

        # The worker runs jobs against the embedded Redis; killed, it is restarted and work goes on.
        worker = up.child("worker")
        assert worker is not None
        forked = worker.children(recursive=True)
        worker.kill()
        new_worker = wait_for(
            lambda: (w := up.child("worker")) is not None and w.pid != worker.pid and w,
            timeout=30,
            message="the supervisor to restart the worker",
        )
        with _admin(up.url) as api:
            upload = api.post(
                "/api/communities/1/residents/imports",
                files={"file": ("r.csv", "姓名,手机号\n秦川,13922223333\n".encode())},
            )
            assert upload.status_code == 202, upload.text
            done = wait_for(
                lambda: api.get(f"/api/resident-imports/{upload.json()['id']}").json()["status"] == "done",
                timeout=60,
                message="the restarted worker to run the import:\n" + "".join(up.output)[-5000:],
            )
            assert done
        assert new_worker.is_running()

        # What the dead worker had forked (rq's scheduler process) went with it.
        _wait_gone(forked, timeout=10, what="the forked processes")

        # Ctrl-C: everything stops, nothing is left running, the socket is gone.
        family = up.family()
        assert len(family) >= 4  # redis-server, api, worker, scheduler
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(timeout=60) == 0, "".join(up.output)[-3000:]
        _wait_gone(family, timeout=10, what="every process of the group")
        assert not (data / "redis" / "redis.sock").exists()
        log = "".join(up.output)
        assert "Traceback" not in log, log[-3000:]
    finally:
        up.close()

    # A second start on the same folder keeps the data and does not seed again.
    again = Up(data)
    try:
        again.wait_for_line(GREETING)
        with _admin(again.url) as api:
            response = api.get("/api/communities/1/residents", params={"q": "13922223333"})
            assert response.status_code == 200, (response.text, "".join(again.output)[-5000:])
            found = response.json()
            communities = api.get("/api/communities").json()
        assert found["total"] == 1
        assert len(communities) == 3
        # A closed terminal (SIGHUP) stops the group as cleanly as Ctrl-C.
        family = again.family()
        again.proc.send_signal(signal.SIGHUP)
        assert again.proc.wait(timeout=60) == 0
        _wait_gone(family, timeout=10, what="the group")
    finally:
        again.close()


@pytest.mark.slow
def test_a_killed_up_takes_its_children_with_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data)
    try:
        up.wait_for_line(GREETING)
        family = up.family()
        assert len(family) >= 4
        up.proc.kill()  # no chance to clean up: the kernel tells the children
        up.proc.wait()
        _wait_gone(family, timeout=30, what="the children of a killed `anju up`")
    finally:
        up.close()
    # The folder is usable at once (no stale socket, no second Redis), and start after start every
    # Ctrl-C ends everything within seconds: the supervisor, its children and what they forked.
    for cycle in range(3):
        again = Up(data)
        try:
            again.wait_for_line(GREETING)
            assert httpx.get(f"{again.url}/readyz").json()["checks"]["workers"] >= 1
            family = again.family()
            again.proc.send_signal(signal.SIGINT)
            # bounded (anju.supervisor.STOP_GRACE_SECONDS): a stop that waits on a job does not hang
            assert again.proc.wait(timeout=20) == 0
            _wait_gone(family, timeout=5, what=f"the group after Ctrl-C (cycle {cycle + 1})")
        finally:
            again.close()


def test_a_second_embedded_redis_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    from core.redis import EmbeddedRedisBusy, spawn_embedded_redis
    from core.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    first = spawn_embedded_redis(settings)
    try:
        with pytest.raises(EmbeddedRedisBusy, match="另一个 anju up"):
            spawn_embedded_redis(settings)
        assert first.poll() is None  # the running one is left alone
    finally:
        first.terminate()
        first.wait(timeout=15)


def test_up_refuses_a_port_already_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_")}
        env.update(ANJU_DATA_DIR=str(tmp_path / "data"), ANJU_PORT=str(port))
        run = subprocess.run(
            [sys.executable, "-m", "anju.cli", "up"], env=env, cwd=ROOT, capture_output=True, text=True
        )
    assert run.returncode == 1
    assert f"端口 127.0.0.1:{port} 已被占用" in run.stderr
    assert not (tmp_path / "data" / "redis").exists()  # nothing was started
