"""Client addresses and the login lockout, tried as an attacker would: a forged X-Forwarded-For from
a peer nobody trusts, a trusted proxy naming many clients, a lockout that must end with its window,
and many addresses guessing one account while its owner still gets in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from core.settings import Settings
from tests import services
from tests.conftest import ROOT, LiveServer, settings_env, wait_for

PASSWORD = "anju-demo-2026"


def _login(c: httpx.Client, username: str, password: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return c.post("/api/auth/token", json={"username": username, "password": password}, headers=headers)


def _rotating_guesses(c: httpx.Client, username: str, n: int) -> list[int]:
    """n wrong passwords, each claiming another client address in every header a proxy might set."""
    codes = []
    for i in range(n):
        fake = f"198.51.{i // 250}.{i % 250 + 1}"
        r = c.post(
            "/api/auth/token",
            json={"username": username, "password": f"guess-{i}"},
            headers={"X-Forwarded-For": fake, "X-Real-IP": fake, "Forwarded": f"for={fake}"},
        )
        codes.append(r.status_code)
    return codes


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_changes_nothing(server: LiveServer) -> None:
    """Default: no trusted proxy. Rotating the headers does not buy one more guess."""
    limit = server.settings.login_max_failures
    with server.client() as c:
        codes = _rotating_guesses(c, "pr", limit + 3)
        right = _login(c, "pr", PASSWORD, forwarded_for="203.0.113.99")
    assert codes[:limit] == [401] * limit
    assert codes[limit:] == [429, 429, 429]
    assert right.status_code == 429  # the lockout is this peer's, whatever it claims to be
    assert "分钟后再试" in right.json()["error"]["message"]


def test_a_trusted_proxy_names_each_client_and_the_attacker_locks_only_itself(demo: Settings) -> None:
    settings = demo.model_copy(update={"trusted_proxies": ["127.0.0.1"]})
    limit = settings.login_max_failures
    with LiveServer(settings) as server, server.client() as c:
        attacker = "203.0.113.7"
        codes = [_login(c, "pr", f"guess-{i}", forwarded_for=attacker).status_code for i in range(limit + 1)]
        # The proxy appends the address it saw: a client-written prefix does not change who it is.
        spoofed = _login(c, "pr", PASSWORD, forwarded_for=f"192.0.2.1, {attacker}")
        owner = _login(c, "pr", PASSWORD, forwarded_for="203.0.113.8")
    assert codes == [401] * limit + [429]
    assert spoofed.status_code == 429
    assert owner.status_code == 200, owner.text  # the real user elsewhere is not locked out


def test_a_lockout_ends_when_its_window_does(demo: Settings) -> None:
    settings = demo.model_copy(update={"login_max_failures": 3, "login_lockout_minutes": 0.05})  # 3 s
    with LiveServer(settings) as server, server.client() as c:
        codes = [_login(c, "agent", "wrong-one").status_code]
        started = time.monotonic()  # the window runs from the first failure
        codes += [_login(c, "agent", "wrong-one").status_code for _ in range(2)]
        locked = _login(c, "agent", PASSWORD)
        # More attempts while locked do not push the end further out.
        for _ in range(5):
            assert _login(c, "agent", "wrong-again").status_code == 429
        wait_for(lambda: time.monotonic() - started > 3.5, timeout=5)
        after = _login(c, "agent", PASSWORD)
    assert codes == [401, 401, 401]
    assert locked.status_code == 429 and "1 分钟后再试" in locked.json()["error"]["message"]
    assert after.status_code == 200, after.text


def test_many_addresses_guessing_one_account_are_slowed_and_its_owner_still_gets_in(demo: Settings) -> None:
    settings = demo.model_copy(
        update={
            "trusted_proxies": ["127.0.0.1"],
            "login_account_max_failures": 6,
            "login_account_slow_seconds": 2,
        }
    )
    home = "203.0.113.50"
    with LiveServer(settings) as server, server.client() as c:
        assert _login(c, "supervisor", PASSWORD, forwarded_for=home).status_code == 200  # a known address
        # A botnet: two guesses from each of three addresses reach the account's ceiling.
        for i in range(6):
            assert (
                _login(c, "supervisor", "guess", forwarded_for=f"198.51.100.{i // 2 + 1}").status_code == 401
            )
        first = _login(c, "supervisor", "guess", forwarded_for="198.51.100.200")  # takes the slot
        second = _login(c, "supervisor", "guess", forwarded_for="198.51.100.201")  # within the interval
        at_home = _login(c, "supervisor", PASSWORD, forwarded_for=home)  # never slowed
        time.sleep(settings.login_account_slow_seconds + 0.2)
        travelling = _login(c, "supervisor", PASSWORD, forwarded_for="203.0.113.60")  # a new address
    assert first.status_code == 401
    assert second.status_code == 429 and "已限速" in second.json()["error"]["message"]
    assert at_home.status_code == 200, at_home.text
    assert travelling.status_code == 200, travelling.text


@pytest.fixture
def served(demo: Settings) -> Iterator[Callable[[dict[str, str]], str]]:
    """`anju serve` as `anju up` runs it (uvicorn's own proxy handling as configured there)."""

    def start(extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
        port = services.free_port()
        env = {**settings_env(demo), "ANJU_WARM_ASSISTANT": "false", **extra}
        proc = subprocess.Popen(
            [sys.executable, "-m", "anju.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, message="anju serve")
        return proc, url

    procs: list[subprocess.Popen[bytes]] = []

    def run(extra: dict[str, str]) -> str:
        proc, url = start(extra)
        procs.append(proc)
        return url

    yield run
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)


def test_anju_serve_believes_forwarded_addresses_only_from_named_proxies(
    served: Callable[[dict[str, str]], str],
) -> None:
    """uvicorn would believe X-Forwarded-For from 127.0.0.1: `anju serve` (and so `anju up`) must not."""
    limit = 10
    url = served({})
    with httpx.Client(base_url=url, timeout=30) as c:
        codes = _rotating_guesses(c, "pr", limit + 1)
    assert codes == [401] * limit + [429]

    url = served({"ANJU_TRUSTED_PROXIES": "127.0.0.1"})
    with httpx.Client(base_url=url, timeout=30) as c:
        codes = [
            _login(c, "agent", "guess", forwarded_for="203.0.113.7").status_code for _ in range(limit + 1)
        ]
        owner = _login(c, "agent", PASSWORD, forwarded_for="203.0.113.8")
    assert codes == [401] * limit + [429]
    assert owner.status_code == 200


def test_supervisor_runs_the_api_through_anju_serve() -> None:
    """`anju up` starts the API with `anju serve`, so the settings above hold for it too."""
    from anju.supervisor import Supervisor

    supervisor = Supervisor(Settings(redis_url="redis://unused"))
    api = next(c for c in supervisor.children if c.name == "api")
    assert api.argv[1:] == ["-m", "anju.cli", "serve"]


@pytest.mark.parametrize("value", ["*", "proxy.internal", "10.0.0.300"])
def test_trusted_proxies_must_be_addresses(value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not an IP address or CIDR"):
        Settings(trusted_proxies=value)


def test_trusted_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_TRUSTED_PROXIES", "10.0.0.5, 172.16.0.0/12")
    assert Settings().trusted_proxies == ["10.0.0.5", "172.16.0.0/12"]
    monkeypatch.delenv("ANJU_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == []
    assert "ANJU_TRUSTED_PROXIES" not in os.environ
