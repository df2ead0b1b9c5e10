"""Shared harness of the intake benchmarks (bench/intake_load.py, bench/intake_faults.py).

Everything runs on this machine, in a folder ``/tmp/bench-intake-*`` of its own:

- a private ``redis-server`` on a free 127.0.0.1 port, without persistence (never the test
  suite's 127.0.0.1:6379 db 9);
- the database: SQLite under the folder, or with ``--database-url postgresql+psycopg://…`` a
  database ``anju_bench_<hex>`` of our own on that server (created from a migrated and seeded
  template with ``CREATE DATABASE … TEMPLATE``, dropped at the end; nothing else is touched);
- the service exactly as it is deployed: ``python -m anju.cli migrate`` / ``seed-demo`` (demo
  company, the demo FAQ and service standard, the search index), ``anju.cli serve --workers N``
  (uvicorn), ``anju.cli worker`` (rq, fork per job, with rq's scheduler) and ``anju.cli scheduler``;
- bench/fakes.py as its own process (fake LLM, fake WeChat API, the app's webhook receiver).

Children are started in their own process group with PDEATHSIG (core.processes.die_with_parent),
so a killed benchmark takes them along; ``Group.stop_all`` SIGTERMs, then SIGKILLs every process
it started and their descendants (rq's work-horses call setsid, so they are found by pid, not by
group), and ``leftovers`` checks that nothing of this folder still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # this process runs no model; its children inherit it

from core.processes import die_with_parent  # noqa: E402

APP_SECRET = "bench-app-secret-0123456789abcdef"
WECHAT_TOKEN = "bench-wechat-token"
WECHAT_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"  # 43 characters, as WeChat issues them
WECHAT_APP_ID = "wx49f0ab532d5d035a"
WECHAT_GH = "gh_bench_account"
# Questions the demo knowledge base answers (action "answer"), so the LLM writer is called.
QUESTIONS = ("物业费怎么交", "停车月卡怎么办理", "装修要办什么手续")


# --- machine, folders, ports ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def machine_label(m: dict[str, Any]) -> str:
    return f"{m['nproc']} vCPU, {m['ram_gib']} GiB"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-intake-", dir="/tmp"))


def install_sigterm() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C: the script's ``finally`` stops what it started."""

    def _raise(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGHUP, _raise)


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    known: set[int] = field(default_factory=set)  # every pid seen under it (work-horses call setsid)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def family(self) -> list[psutil.Process]:
        if not self.alive():
            return []
        try:
            root = psutil.Process(self.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        self.known.update(p.pid for p in members)
        return members


class Group:
    """The processes a benchmark started, stopped all together (also on Ctrl-C)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.all_pids: set[int] = set()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc = Proc(name, argv, env, log_path)
        with log_path.open("ab") as log:
            proc.popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.procs.append(proc)
        self.all_pids.add(proc.pid)
        return proc

    def anju(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        return self.start(name, [sys.executable, "-m", "anju.cli", *args], env)

    def track(self) -> None:
        """Remember the descendants of every live child (call now and then)."""
        for proc in self.procs:
            self.all_pids.update(p.pid for p in proc.family())

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far per started process (with its descendants; finished work-horses
        count through their parent's children times), keyed by role (api, worker, redis, fakes)."""
        out: dict[str, float] = {}
        for proc in self.procs:
            total = 0.0
            for i, p in enumerate(proc.family()):
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0.0)
            role = proc.name.split("-")[0]  # names are "<role>-<n>…"
            out[role] = out.get(role, 0.0) + total
        return out

    def kill(self, proc: Proc, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal a child and all its descendants at once (SIGKILL: a machine losing power)."""
        members = proc.family()
        for p in members:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if not proc.alive():
            return
        members = proc.family()
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=grace)
        for p in members:  # the work-horses and uvicorn's worker processes too
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=10)

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM the service, then Redis (so workers do not log a lost Redis), then SIGKILL
        whatever of ours is still running."""
        self.track()
        last = [p for p in self.procs if p.name.startswith("redis")]
        for batch in ([p for p in self.procs if p not in last], last):
            for proc in reversed(batch):
                if proc.alive():
                    with contextlib.suppress(Exception):
                        proc.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            deadline = time.monotonic() + grace
            for proc in reversed(batch):
                if proc.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in sorted(self.all_pids):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE and _ours(p, self.workdir):
                    p.kill()
        for proc in self.procs:
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)
        self.procs.clear()

    def leftovers(self) -> list[dict[str, Any]]:
        """Live processes started by this benchmark (by pid) or running on its folder."""
        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            if p.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error):
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                if _ours(p, self.workdir):
                    found.append({"pid": p.pid, "cmd": " ".join(p.info["cmdline"] or [])[:120]})
        return found


def tear_down(group: Group, dbs: Databases, workdir: Path, *, keep: bool) -> list[dict[str, Any]]:
    """Stop every process, drop the benchmark databases, remove the folder unless kept; the
    processes left behind (should be none)."""
    group.stop_all()
    dbs.drop_all()
    leftovers = group.leftovers()
    if keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return leftovers


def _ours(p: psutil.Process, workdir: Path) -> bool:
    """A process of this run: our folder is in its command line or its ANJU_DATA_DIR (so a pid
    recycled by someone else's process is never touched)."""
    try:
        cmd = " ".join(p.cmdline())
        env_dir = p.environ().get("ANJU_DATA_DIR", "")
    except psutil.Error:
        return False
    return str(workdir) in cmd or env_dir.startswith(str(workdir))


# --- Redis ----------------------------------------------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from core.redis import redis_executable

    return redis_executable()


class RedisServer:
    """Our own redis-server on a free port, no persistence: a restart loses every queued job."""

    def __init__(self, group: Group, folder: Path, port: int | None = None) -> None:
        self.group = group
        self.folder = folder
        self.port = port or free_port()
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--maxclients",
            "2000",
        ]
        self.starts += 1
        self.proc = self.group.start(f"redis-{self.starts}", argv, dict(os.environ))
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if time.monotonic() > deadline or not self.proc.alive():
                raise RuntimeError(f"redis-server did not start (see {self.proc.log_path})")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.group.stop(self.proc, grace=10)

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


# --- database -------------------------------------------------------------------------------------


class Databases:
    """A migrated, seeded template, and a fresh copy of it per scenario."""

    def __init__(self, workdir: Path, database_url: str | None) -> None:
        self.workdir = workdir
        self.pg_url = database_url
        self.tag = f"anju_bench_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self.copies = 0

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.pg_url else "SQLite"

    def _admin(self) -> str:
        assert self.pg_url
        return self.pg_url.replace("postgresql+psycopg://", "postgresql://")

    def _url_for(self, name: str) -> str:
        assert self.pg_url
        return self.pg_url.rsplit("/", 1)[0] + f"/{name}"

    def prepare(self, env: dict[str, str]) -> None:
        """Migrate and seed the demo (company, residents, knowledge base, index) once.

        With SQLite and ``ANJU_BENCH_TEMPLATE`` naming a folder that this method prepared before
        (the smoke tests prepare one for all the benchmarks that need it), that folder is copied
        instead: the same database, without seeding it again."""
        template_dir = self.workdir / "template"
        reuse = os.environ.get("ANJU_BENCH_TEMPLATE")
        if reuse and not self.pg_url and (Path(reuse) / "anju.db").is_file():
            shutil.copytree(reuse, template_dir, dirs_exist_ok=True)
            return
        template_dir.mkdir(parents=True, exist_ok=True)
        env = dict(env, ANJU_DATA_DIR=str(template_dir))
        if self.pg_url:
            import psycopg

            with psycopg.connect(self._admin(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.tag}"')
            self.created.append(self.tag)
            env["ANJU_DATABASE_URL"] = self._url_for(self.tag)
        for args in (["migrate"], ["seed-demo"]):
            done = subprocess.run(
                [sys.executable, "-m", "anju.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"anju {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def fresh(self, data_dir: Path) -> str | None:
        """A new database for one scenario; returns ANJU_DATABASE_URL (None: SQLite in data_dir)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.copies += 1
        if not self.pg_url:
            for suffix in ("", "-wal", "-shm"):
                source = self.workdir / "template" / f"anju.db{suffix}"
                if source.exists():
                    shutil.copy(source, data_dir / f"anju.db{suffix}")
            secret = self.workdir / "template" / "secret_key"
            if secret.exists():
                shutil.copy(secret, data_dir / "secret_key")
            return None
        import psycopg

        name = f"{self.tag}_{self.copies}"
        with psycopg.connect(self._admin(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.tag}"')
        self.created.append(name)
        return self._url_for(name)

    def sqlalchemy_url(self, data_dir: Path, database_url: str | None) -> str:
        return database_url or f"sqlite:///{(data_dir / 'anju.db').resolve()}"

    def drop_all(self) -> None:
        if not self.pg_url or not self.created:
            return
        import psycopg

        with psycopg.connect(self._admin(), autocommit=True) as conn:
            for name in reversed(self.created):
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


# --- the service's environment -------------------------------------------------------------------


def wechat_accounts() -> list[dict[str, Any]]:
    """Two accounts of the cuihu community: /channels/wechat/plain (plaintext mode) and
    /channels/wechat/aes (safe mode)."""
    common = {
        "app_id": WECHAT_APP_ID,
        "app_secret": "bench-secret",
        "token": WECHAT_TOKEN,
        "community": "cuihu",
    }
    return [{"key": "plain", **common}, {"key": "aes", "aes_key": WECHAT_AES_KEY, **common}]


def service_env(
    *,
    data_dir: Path,
    redis_url: str,
    database_url: str | None,
    port: int,
    fakes_port: int,
    llm: bool,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_")}
    env.update(
        ANJU_DATA_DIR=str(data_dir),
        ANJU_REDIS_URL=redis_url,
        ANJU_PORT=str(port),
        ANJU_HOST="127.0.0.1",
        ANJU_LOG_JSON="false",
        ANJU_APP_CHANNEL_SECRET=APP_SECRET,
        ANJU_APP_WEBHOOK_URL=f"http://127.0.0.1:{fakes_port}/anju/replies",
        ANJU_WECHAT_ACCOUNTS=json.dumps(wechat_accounts()),
        ANJU_WECHAT_API_BASE=f"http://127.0.0.1:{fakes_port}",
        ANJU_OUTBOUND_ALLOW=f"127.0.0.1:{fakes_port}",  # the fakes (WeChat API, app webhook, LLM)
        OMP_NUM_THREADS="1",  # one intra-op thread in every process that loads a model (API, workers)
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    if database_url:
        env["ANJU_DATABASE_URL"] = database_url
    if llm:
        env.update(
            ANJU_LLM_BASE_URL=f"http://127.0.0.1:{fakes_port}/v1",
            ANJU_LLM_MODEL="bench-slow-llm",
            # The fake answers after its delay; the client must wait longer than that, or the
            # assistant would give up (and retry once) before the slow answer arrives.
            ANJU_LLM_TIMEOUT_SECONDS="30",
        )
    env.update(extra or {})
    return env


def start_fakes(group: Group, workdir: Path, *, llm_delay: float) -> tuple[Proc, int, Path]:
    port = free_port()
    record = workdir / "receipts.jsonl"
    record.touch()
    env = dict(
        os.environ,
        BENCH_WEBHOOK_SECRET=APP_SECRET,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = group.start(
        "fakes",
        [
            sys.executable,
            "-m",
            "bench.fakes",
            "--port",
            str(port),
            "--record",
            str(record),
            "--llm-delay",
            str(llm_delay),
        ],
        env,
    )
    deadline = time.monotonic() + 20
    while not port_open(port):
        if time.monotonic() > deadline or not proc.alive():
            raise RuntimeError(f"bench.fakes did not start (see {proc.log_path})")
        time.sleep(0.05)
    return proc, port, record


def fakes_stats(port: int) -> dict[str, int]:
    import httpx

    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json())
    except (httpx.HTTPError, ValueError):
        return {}


def wait_ready(port: int, *, workers: int, procs: list[Proc], timeout: float = 120) -> None:
    """Until GET /readyz is 200 and reports ``workers`` rq workers."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early (see {proc.log_path})")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            last = response.text
            if response.status_code == 200 and response.json()["checks"].get("workers", 0) >= workers:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service was not ready within {timeout:.0f} s: {last}")


def wait_quiet(group: Group, *, limit: float = 60, threshold: float = 25.0) -> float:
    """Until the processes we started use less than ``threshold`` % CPU together (the API's and
    the workers' warm-up of the models and indexes is over); returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        group.track()
        procs = []
        for pid in group.all_pids:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                p.cpu_percent(None)
                procs.append(p)
        time.sleep(1.0)
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.cpu_percent(None)
        if total < threshold:
            break
    return round(time.monotonic() - started, 1)


# --- requests -------------------------------------------------------------------------------------


def app_request(
    message_id: str, user_id: str, text: str, community: str = "cuihu"
) -> tuple[bytes, dict[str, str]]:
    """A signed POST /channels/app/messages (channels.signing): body and headers."""
    from channels.signing import signed_headers

    body = json.dumps(
        {"message_id": message_id, "community": community, "user_id": user_id, "text": text},
        ensure_ascii=False,
    ).encode()
    return body, {"Content-Type": "application/json", **signed_headers(APP_SECRET, body)}


def _wechat_signature(timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()


def wechat_text_xml(openid: str, msg_id: int, content: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{WECHAT_GH}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


_crypto: Any = None


def wechat_request(openid: str, msg_id: int, content: str, *, aes: bool) -> tuple[str, bytes]:
    """(request target with the signed query, body) of one WeChat push, plaintext or safe mode."""
    from urllib.parse import urlencode

    global _crypto
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:16]
    params = {"signature": _wechat_signature(timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    xml = wechat_text_xml(openid, msg_id, content)
    if not aes:
        return f"/channels/wechat/plain?{urlencode(params)}", xml.encode()
    if _crypto is None:
        from wechatpy.crypto import WeChatCrypto

        _crypto = WeChatCrypto(WECHAT_TOKEN, WECHAT_AES_KEY, WECHAT_APP_ID)
    sealed = _crypto.encrypt_message(xml, nonce, timestamp)
    encrypt = sealed.split("<Encrypt><![CDATA[", 1)[1].split("]]></Encrypt>", 1)[0]
    msg_signature = sealed.split("<MsgSignature><![CDATA[", 1)[1].split("]]></MsgSignature>", 1)[0]
    body = (
        f"<xml><ToUserName><![CDATA[{WECHAT_GH}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
    params.update(encrypt_type="aes", msg_signature=msg_signature)
    return f"/channels/wechat/aes?{urlencode(params)}", body.encode()


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams: far less CPU per request than
    an HTTP client library, so the load generator does not eat the server's share of 2 vCPUs."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, bytes]:
        head = [
            f"{method} {target} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        for attempt in range(2):
            reused = self.writer is not None and self.used > 0
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), timeout
                    )
                    self.used = 0
                assert self.reader is not None and self.writer is not None
                self.writer.write(raw)
                await self.writer.drain()
                return await asyncio.wait_for(self._response(), timeout)
            except asyncio.IncompleteReadError as exc:
                await self.close()
                if attempt == 0 and reused and not exc.partial:
                    continue  # the server closed an idle keep-alive connection: send again
                raise HttpError("connection closed by the server") from None
            except (TimeoutError, OSError) as exc:
                await self.close()
                raise HttpError(f"{type(exc).__name__}: {exc}") from None
        raise HttpError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(data[:-2])
            payload = b"".join(chunks)
        else:
            payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        self.used += 1
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
