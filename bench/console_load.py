"""Agent console under load (issue 5): from a resident's message to the agent's screen, with
``--agents`` (20) agents working ``--cases`` (200) open cases on this machine.

    .venv/bin/python -m bench.console_load            # full run: 20 agents, 200 cases, 60 s measured (~3 min)
    .venv/bin/python -m bench.console_load --quick    # short run: the same, 20 s measured
    .venv/bin/python -m bench.console_load --smoke    # 2 agents, 4 cases, 3 s measured: checks it runs
    .venv/bin/python -m bench.console_load --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What runs (bench/intake_common.py, as bench/intake_load.py runs it): a private redis-server on a
free 127.0.0.1 port (flushed before the run; the live updates are Redis pub/sub channels, which
are not per database, so a shared server would mix this run's events with the test suite's);
a fresh copy of a database migrated and seeded by ``anju seed-demo`` (SQLite by default, or a
database ``anju_bench_*`` of our own on the given PostgreSQL server, dropped at the end), into
which the ``--agents`` accounts ``bench-agent-NN`` (role agent, all three demo communities) are
written before the service starts; ``anju serve --workers N`` (uvicorn), ``anju worker`` (rq,
with its scheduler: SLA timers and emergency pages) and ``anju scheduler``. The web chat answers
in the request itself; the worker runs the SLA timers, the pages and the sweeps.

1. **Seeding**: ``--cases`` web-chat sessions (distinct session ids, the three communities in
   turn) ask for a person through ``POST /api/chat``: most with "转人工"-like requests, about 15 %
   with a complaint ("我要投诉…"), ``--emergencies`` with an emergency (fire, a lift). Each opens
   one case. The agents' live streams are already open, so the time from the POST to the first
   ``created`` event on an agent's stream is measured too (new case -> queue).
2. **Agents** (``--duration`` s): each logs in (``POST /api/auth/token``), keeps
   ``GET /api/console/stream`` open (server-sent events, httpx streaming) and behaves like the
   console page (anju/templates/console.html): when events that change a row of its lists arrived
   (not a resident's message, a note or a work order: ``ROW_UNCHANGED``) it reloads its lists
   (``view=queue`` and ``view=mine``) at most every ``--list-interval`` s (the page: at once, then
   at most once a second), and re-opens the case on screen when that case changed; opening a case
   is ``GET /api/cases/{id}`` plus ``GET /api/cases/{id}/suggestions`` unless the suggestions on
   screen already answer that case's latest resident message (the page keeps them). Between
   actions it thinks ``--think`` (1-3) s, then: claims a case near the top of the queue (15 %; a
   409 because a colleague was faster counts as a conflict, not an error), opens a case (35 %),
   replies to a case it holds (30 %) or adds a note (20 %); after an action the page reloads the
   list and the case (so does the agent).
3. **Residents** (meanwhile): follow-up messages into the held conversations at ``--rate``
   messages/s in total (open loop, a random session among those with no message still in
   flight; each resident has a connection of their own, so a message never waits for a free
   one), through ``POST /api/chat``. **Resident message -> agent screen**: from just before the
   POST is written until the first ``event: case`` with that case id and ``what: message``
   arrives on an agent's stream (and until it has arrived on every agent's stream: each agent is
   scoped to all three communities, so all of them must get it). An event not seen within
   ``--event-timeout`` s on a stream counts as missed on that stream.

After ``--duration`` s nobody starts a new request; the ones in flight are awaited (at most
180 s each: a request still unanswered then is an error) and the events of the last messages
for ``--event-timeout`` s. Latency of every endpoint is taken on this side (request written ->
response read; raw keep-alive HTTP/1.1, three connections per agent like a browser's,
bench.intake_common.Connection), with the server's own request times from its log beside them.
The load generator's own event-loop lag is reported, since it delays the arrival times it records.

Prints a summary table, markdown rows for docs/BENCHMARKS.md and, last, one JSON line
``BENCH_CONSOLE_LOAD {...}``; writes the same JSON to ``--out``. Exits 1 when a request failed,
an event was missed or a process was left behind (a target missed does not change the exit
code: it is a figure). Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.intake_common import (
    ROOT,
    Connection,
    Databases,
    Group,
    HttpError,
    RedisServer,
    free_port,
    git_commit,
    install_sigterm,
    machine,
    machine_label,
    make_workdir,
    percentile,
    query,
    service_env,
    tear_down,
    today,
    wait_quiet,
    wait_ready,
)

REQUEST_TIMEOUT = 180.0  # a browser's fetch waits as long as it takes: measure, do not cut off
TARGET_P95_S = 1.0  # issue 5: a resident's message on the agent's screen within 1 s (p95)
AGENT_PASSWORD = "bench-agent-2026"
COMMUNITIES = ("cuihu", "jinjiang", "binjiang")
HANDOVERS = ("转人工", "我要人工客服", "帮我转人工", "找个真人客服")
COMPLAINTS = (
    "我要投诉，楼道垃圾三天没人清理",
    "我要投诉，保安态度很差",
    "我要投诉，电梯坏了一周都没人修",
)
EMERGENCIES = ("楼道里着火了，好多烟", "电梯困人了，有人被关在电梯里出不去")
# Follow-ups a waiting resident writes (no emergency or complaint words: the case stays what it is).
FOLLOW_UPS = (
    "请问大概什么时候能处理？",
    "我下午三点以后都在家",
    "补充一下，是3栋2单元1201",
    "好的，我等你们消息",
    "麻烦尽快安排一下，谢谢",
    "请问处理到哪一步了？",
    "需要我提供照片吗？",
    "门口的灯也不太亮，顺便看一下",
)
REPLIES = (
    "您好，我是客服，您的情况已经收到，正在为您处理，请稍候。",
    "您好，已为您安排维修师傅，师傅会先电话联系您确认上门时间。",
    "您好，这个问题需要和相关部门核实，我们核实后会第一时间回复您。",
)
NOTES = ("已电话联系住户，下午上门", "已转工程部确认", "住户情绪平稳，跟进中")
ACTION_WEIGHTS = {"claim": 0.15, "open": 0.35, "reply": 0.30, "note": 0.20}
LOG_LINE = re.compile(r" (GET|POST|PUT|DELETE) (\S+) (\d{3}) ([\d.]+)ms")


def endpoint_of(method: str, path: str) -> str:
    """A request's endpoint family for the tables (ids replaced by {id})."""
    path = re.sub(r"/\d+", "/{id}", path.split("?", 1)[0]) + (
        f"?view={path.split('view=', 1)[1].split('&', 1)[0]}" if "view=" in path else ""
    )
    return f"{method} {path}"


# Events that change no row of an agent's lists: the page does not reload them for these
# (anju/templates/console.html, ROW_UNCHANGED).
ROW_UNCHANGED = {"message", "note", "work_order", "reminder", "paged", "page_failed"}

# --- what the load generator records ------------------------------------------------------------


class Stats:
    """Latency and outcome per endpoint, measured on the client side."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, Counter[str]] = defaultdict(Counter)
        self.conflicts: Counter[str] = Counter()
        self.recording = False  # only the measured phase counts (seeding has its own figures)

    def add(self, endpoint: str, seconds: float, error: str | None = None, *, conflict: bool = False) -> None:
        if not self.recording:
            return
        self.latencies[endpoint].append(seconds)
        if conflict:
            self.conflicts[endpoint] += 1
        elif error:
            self.errors[endpoint][error] += 1

    def table(self, wall: float) -> list[dict[str, Any]]:
        rows = []
        for endpoint in sorted(self.latencies, key=lambda e: -len(self.latencies[e])):
            lat = sorted(self.latencies[endpoint])
            rows.append(
                {
                    "endpoint": endpoint,
                    "count": len(lat),
                    "per_s": round(len(lat) / wall, 2),
                    "p50_ms": _ms(percentile(lat, 0.50)),
                    "p95_ms": _ms(percentile(lat, 0.95)),
                    "p99_ms": _ms(percentile(lat, 0.99)),
                    "max_ms": _ms(lat[-1]),
                    "errors": sum(self.errors[endpoint].values()),
                    "error_kinds": dict(self.errors[endpoint].most_common(3)),
                    "conflicts": self.conflicts[endpoint],
                }
            )
        return rows


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def distribution(values: list[float]) -> dict[str, Any]:
    lat = sorted(values)
    if not lat:
        return {"count": 0}
    return {
        "count": len(lat),
        "p50_ms": _ms(percentile(lat, 0.50)),
        "p95_ms": _ms(percentile(lat, 0.95)),
        "p99_ms": _ms(percentile(lat, 0.99)),
        "max_ms": _ms(lat[-1]),
        "over_1s": sum(1 for x in lat if x > TARGET_P95_S),
    }


@dataclass
class Flight:
    """One resident message on its way to the agents' screens."""

    case_id: int
    session: str
    t0: float  # just before the POST was written
    answered: float | None = None  # the POST's response read
    arrivals: dict[int, float] = field(default_factory=dict)  # agent index -> first arrival
    failed: str | None = None


class Tracker:
    """Matches ``case`` events on the agents' streams to the resident messages in flight."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.flights: dict[int, Flight] = {}  # case id -> the message in flight (one per case)
        self.done: list[Flight] = []
        self.created: dict[int, dict[int, float]] = defaultdict(dict)  # case id -> agent -> arrival
        self.unmatched: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.changed = asyncio.Event()

    def seen(self, agent: int, event: dict[str, Any], now: float) -> None:
        what, case_id = event.get("what", "?"), event.get("case_id")
        self.events[what] += 1
        if not isinstance(case_id, int):
            return
        if what == "created":
            self.created[case_id].setdefault(agent, now)
        elif what == "message":
            flight = self.flights.get(case_id)
            if flight is None:
                self.unmatched["message"] += 1
                return
            flight.arrivals.setdefault(agent, now)
            if len(flight.arrivals) >= self.agents and flight.answered is not None:
                self.land(flight)

    def land(self, flight: Flight) -> None:
        if self.flights.get(flight.case_id) is flight:
            del self.flights[flight.case_id]
            self.done.append(flight)
            self.changed.set()

    def expire(self, older_than: float) -> None:
        """Messages whose events did not all arrive within the timeout (missed on some stream)."""
        for flight in list(self.flights.values()):
            if flight.answered is not None and flight.answered < older_than:
                self.land(flight)

    def summary(self, started: float) -> dict[str, Any]:
        sent = [f for f in self.done if f.failed is None]
        # Per 10 s of the run (by when the message was sent): does the delay grow (a queue)?
        buckets: dict[int, list[float]] = defaultdict(list)
        for f in sent:
            if f.arrivals:
                buckets[int((f.t0 - started) // 10) * 10].append(min(f.arrivals.values()) - f.t0)
        first = [min(f.arrivals.values()) - f.t0 for f in sent if f.arrivals]
        every = [max(f.arrivals.values()) - f.t0 for f in sent if len(f.arrivals) >= self.agents]
        answered = [f.answered - f.t0 for f in sent if f.answered is not None]
        # On how many screens a message that did reach some screen failed to arrive.
        missed_streams = sum(self.agents - len(f.arrivals) for f in sent)
        event_before_answer = sum(
            1 for f in sent if f.arrivals and f.answered and min(f.arrivals.values()) <= f.answered
        )
        return {
            "messages": len(self.done),
            "failed_posts": len(self.done) - len(sent),
            "first_screen": distribution(first),
            "every_screen": distribution(every),
            "post_answered": distribution(answered),
            "never_seen": sum(1 for f in sent if not f.arrivals),
            "missed_on_some_stream": sum(1 for f in sent if 0 < len(f.arrivals) < self.agents),
            "missed_stream_deliveries": missed_streams,
            "event_before_post_answer": event_before_answer,
            "unmatched_message_events": self.unmatched["message"],
            "events_by_what": dict(self.events),
            "first_screen_p50_ms_by_10s": {
                f"{k}s": distribution(v)["p50_ms"] for k, v in sorted(buckets.items())
            },
        }


IDLE_CLOSE_SECONDS = 3.0  # uvicorn closes a keep-alive connection idle for 5 s
_last_used: dict[int, float] = {}


async def take(pool: asyncio.Queue[Connection]) -> Connection:
    """A connection from the pool; one idle long enough for the server to be closing it is
    closed first (the next request opens a new one), so no request races the server's close."""
    conn = await pool.get()
    if time.monotonic() - _last_used.get(id(conn), time.monotonic()) > IDLE_CLOSE_SECONDS:
        await conn.close()
    return conn


def give_back(pool: asyncio.Queue[Connection], conn: Connection) -> None:
    _last_used[id(conn)] = time.monotonic()
    pool.put_nowait(conn)


# --- agents ------------------------------------------------------------------------------------


class Agent:
    def __init__(self, bench: Load, index: int, username: str) -> None:
        self.bench = bench
        self.index = index
        self.username = username
        self.token = ""
        # A browser's few keep-alive connections: the live reloads and the agent's clicks overlap.
        self.conns: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(3):
            self.conns.put_nowait(Connection(bench.port))
        self.ready = asyncio.Event()
        self.dirty = asyncio.Event()  # an event arrived since the lists were loaded
        self.lists_dirty = False  # ... and it changes a row of the lists
        self.current: int | None = None  # the case on screen
        self.current_changed = False
        self.suggested: int | None = None  # suggestions on screen answer this case's latest message
        self.queue: list[int] = []
        self.mine: list[int] = []
        self.events = 0
        self.disconnects = 0
        self.rng = random.Random(index)
        self.deadline = float("inf")  # no new request after the measured phase

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    async def call(
        self, method: str, target: str, body: Any = None, *, endpoint: str | None = None
    ) -> tuple[int, Any]:
        if time.perf_counter() > self.deadline:
            return 0, None
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else b""
        endpoint = endpoint or endpoint_of(method, target)
        conn = await take(self.conns)
        t0 = time.perf_counter()
        try:
            status, payload = await conn.request(method, target, data, self.headers, timeout=REQUEST_TIMEOUT)
        except HttpError as exc:
            self.bench.stats.add(endpoint, time.perf_counter() - t0, str(exc)[:80])
            return 0, None
        finally:
            give_back(self.conns, conn)
        elapsed = time.perf_counter() - t0
        conflict = status == 409 and endpoint.endswith("/claim")
        error = (
            None if status < 400 or conflict else f"HTTP {status}: {payload[:80].decode(errors='replace')}"
        )
        self.bench.stats.add(endpoint, elapsed, error, conflict=conflict)
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, None

    async def login(self) -> None:
        status, body = await self.call(
            "POST", "/api/auth/token", {"username": self.username, "password": AGENT_PASSWORD}
        )
        if status != 200:
            raise RuntimeError(f"{self.username} could not log in: HTTP {status} {body}")
        self.token = body["access_token"]

    async def listen(self, client: Any) -> None:
        """The console's EventSource: reconnects when the stream ends, like a browser."""
        import httpx

        url = f"http://127.0.0.1:{self.bench.port}/api/console/stream"
        while not self.bench.stopping:
            try:
                async with client.stream(
                    "GET", url, headers={"Authorization": f"Bearer {self.token}"}
                ) as response:
                    if response.status_code != 200:
                        self.bench.stream_errors[f"HTTP {response.status_code}"] += 1
                        await asyncio.sleep(1)
                        continue
                    kind, data = "", ""
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data = line[5:].strip()
                        elif line == "" and kind:
                            self.dispatch(kind, data, time.perf_counter())
                            kind, data = "", ""
            except (httpx.HTTPError, OSError) as exc:
                if self.bench.stopping:
                    return
                self.bench.stream_errors[type(exc).__name__] += 1
            if not self.bench.stopping:
                self.disconnects += 1
                await asyncio.sleep(1)  # the page's "retry: 1000"

    def dispatch(self, kind: str, data: str, now: float) -> None:
        if kind == "ready":
            self.ready.set()
            self.lists_dirty = True  # the page loads its list on "ready"
            self.dirty.set()
            return
        if kind != "case":
            return
        try:
            event = json.loads(data)
        except ValueError:
            self.bench.stream_errors["bad json"] += 1
            return
        self.events += 1
        self.bench.tracker.seen(self.index, event, now)
        what = event.get("what")
        if event.get("case_id") == self.current:
            self.current_changed = True
        if what == "message" and event.get("case_id") == self.suggested:
            self.suggested = None  # the resident wrote again: the page asks for new suggestions
        if what not in ROW_UNCHANGED:
            self.lists_dirty = True
        self.dirty.set()

    async def load_lists(self) -> None:
        status, rows = await self.call("GET", "/api/cases?view=queue")
        if status == 200:
            self.queue = [r["id"] for r in rows]
        status, rows = await self.call("GET", "/api/cases?view=mine")
        if status == 200:
            self.mine = [r["id"] for r in rows]

    async def open(self, case_id: int) -> None:
        """What the page does to show a case: the case, then the knowledge-base suggestions unless
        those on screen already answer the resident's latest message."""
        self.current = case_id
        self.current_changed = False
        status, _ = await self.call("GET", f"/api/cases/{case_id}")
        if status == 200 and self.suggested != case_id:
            status, _ = await self.call("GET", f"/api/cases/{case_id}/suggestions")
            if status == 200:
                self.suggested = case_id

    async def refresher(self) -> None:
        """Reload the lists (and the case on screen if it changed) after events, at most every
        ``list_interval`` s."""
        interval = self.bench.args.list_interval
        while not self.bench.stopping:
            await self.dirty.wait()
            self.dirty.clear()
            started = time.perf_counter()
            if self.lists_dirty:
                self.lists_dirty = False
                await self.load_lists()
            if self.current_changed and self.current is not None:
                await self.open(self.current)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))

    async def work(self, deadline: float) -> None:
        lo, hi = self.bench.think
        self.deadline = deadline
        actions, weights = zip(*ACTION_WEIGHTS.items(), strict=True)
        await asyncio.sleep(self.rng.uniform(0, hi))  # agents do not all start at once
        while time.perf_counter() < deadline and not self.bench.stopping:
            action = self.rng.choices(actions, weights)[0]
            if not self.mine and self.queue:
                action = "claim" if self.rng.random() < 0.5 else "open"
            if action == "claim" and self.queue:
                case_id = self.rng.choice(self.queue[:5])  # people take the top of the queue
                status, _ = await self.call("POST", f"/api/cases/{case_id}/claim")
                if status == 200:
                    self.mine.append(case_id)
                    self.bench.claims += 1
                with contextlib.suppress(ValueError):
                    self.queue.remove(case_id)
                await self.after_action(case_id)
            elif action == "open" and (self.queue or self.mine):
                await self.open(self.rng.choice(self.queue + self.mine))
            elif action == "reply" and self.mine:
                case_id = self.rng.choice(self.mine)
                await self.call("POST", f"/api/cases/{case_id}/reply", {"text": self.rng.choice(REPLIES)})
                await self.after_action(case_id)
            elif action == "note" and (self.current or self.mine):
                case_id = self.current or self.rng.choice(self.mine)
                await self.call("POST", f"/api/cases/{case_id}/notes", {"text": self.rng.choice(NOTES)})
                await self.after_action(case_id)
            await asyncio.sleep(self.rng.uniform(lo, hi))

    async def after_action(self, case_id: int) -> None:
        """The page after an action: the list again, then the case."""
        await self.load_lists()
        await self.open(case_id)


# --- residents ---------------------------------------------------------------------------------


@dataclass
class Resident:
    session: str
    community: str
    case_id: int
    kind: str


class Load:
    """One run against a started service: log in, seed the cases, work them while residents write."""

    def __init__(self, args: argparse.Namespace, port: int, api_log: Path) -> None:
        self.args = args
        self.port = port
        self.api_log = api_log
        self.log_window = [0, 0]  # the measured phase's bytes of the API's log
        self.stats = Stats()
        self.tracker = Tracker(args.agents)
        self.stream_errors: Counter[str] = Counter()
        self.stopping = False
        self.claims = 0
        self.think = tuple(float(x) for x in args.think.split(","))
        self.residents: list[Resident] = []
        self.seed_results: Counter[str] = Counter()
        self.seed_latency: list[float] = []
        self.seed_created: dict[int, float] = {}  # case id -> t0 of the POST that opened it
        self.lag: list[float] = []
        self.schedule_late = 0

    async def chat(
        self, conn: Connection, resident_session: str, community: str, text: str
    ) -> tuple[int, Any, float]:
        body = json.dumps(
            {"community": community, "session_id": resident_session, "text": text}, ensure_ascii=False
        ).encode()
        status, payload = await conn.request(
            "POST", "/api/chat", body, {"Content-Type": "application/json"}, timeout=REQUEST_TIMEOUT
        )
        try:
            return status, json.loads(payload), time.perf_counter()
        except ValueError:
            return status, payload[:200], time.perf_counter()

    async def seed(self) -> None:
        """``cases`` sessions ask for a person; each opens one case."""
        rng = random.Random(5)
        kinds = ["emergency"] * self.args.emergencies + ["complaint"] * round(0.15 * self.args.cases)
        kinds += ["handover"] * (self.args.cases - len(kinds))
        rng.shuffle(kinds)
        todo: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        for i, kind in enumerate(kinds):
            todo.put_nowait((i, kind))

        async def sender() -> None:
            conn = Connection(self.port)
            try:
                while not todo.empty():
                    i, kind = todo.get_nowait()
                    session = f"bench{uuid.uuid4().hex}"
                    community = COMMUNITIES[i % len(COMMUNITIES)]
                    text = rng.choice(
                        {"emergency": EMERGENCIES, "complaint": COMPLAINTS, "handover": HANDOVERS}[kind]
                    )
                    t0 = time.perf_counter()
                    try:
                        status, body, t1 = await self.chat(conn, session, community, text)
                    except HttpError as exc:
                        self.seed_results[f"error {exc}"[:60]] += 1
                        continue
                    self.seed_latency.append(t1 - t0)
                    if status != 200 or not isinstance(body, dict) or not body.get("case_id"):
                        self.seed_results[f"no case: HTTP {status} {str(body)[:60]}"] += 1
                        continue
                    self.seed_results[f"{kind} -> {body['action']}"] += 1
                    self.seed_created[body["case_id"]] = t0
                    self.residents.append(Resident(session, community, body["case_id"], kind))
            finally:
                await conn.close()

        await asyncio.gather(*(sender() for _ in range(self.args.seed_concurrency)))

    async def residents_write(self, deadline: float) -> None:
        """Follow-ups at ``rate``/s in total (open loop), one message in flight per session."""
        rng = random.Random(7)
        # Every resident has a browser of their own: a message never waits for a free connection
        # (idle connections are reused, a new one is opened when none is idle).
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        by_case = {r.case_id: r for r in self.residents}

        async def send(resident: Resident, flight: Flight) -> None:
            conn = await take(pool) if not pool.empty() else Connection(self.port)
            try:
                flight.t0 = time.perf_counter()  # waiting for a free connection is not the server's
                try:
                    status, body, t1 = await self.chat(
                        conn, resident.session, resident.community, rng.choice(FOLLOW_UPS)
                    )
                except HttpError as exc:
                    flight.failed = str(exc)[:80]
                    self.stats.add(
                        "POST /api/chat (follow-up)", time.perf_counter() - flight.t0, flight.failed
                    )
                    self.tracker.land(flight)
                    return
                flight.answered = t1
                error = None
                if status != 200:
                    error = f"HTTP {status}: {str(body)[:60]}"
                elif not isinstance(body, dict) or body.get("case_id") != resident.case_id:
                    error = f"answered without the case: {str(body)[:60]}"
                self.stats.add("POST /api/chat (follow-up)", t1 - flight.t0, error)
                if error:
                    flight.failed = error
                    self.tracker.land(flight)
                elif len(flight.arrivals) >= self.args.agents:
                    self.tracker.land(flight)
            finally:
                give_back(pool, conn)

        start = time.perf_counter()
        for i in range(10**9):
            scheduled = start + i / self.args.rate
            if scheduled >= deadline:
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            if time.perf_counter() - scheduled > 0.1:
                self.schedule_late += 1
            self.tracker.expire(time.perf_counter() - self.args.event_timeout)
            free = [c for c in by_case if c not in self.tracker.flights]
            if not free:
                self.schedule_late += 1
                continue
            resident = by_case[rng.choice(free)]
            flight = Flight(resident.case_id, resident.session, time.perf_counter())
            self.tracker.flights[resident.case_id] = flight
            task = asyncio.ensure_future(send(resident, flight))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        while not pool.empty():
            await pool.get_nowait().close()

    async def measure_lag(self) -> None:
        """How late this process's event loop wakes up (it delays every time recorded here)."""
        while not self.stopping:
            t = time.perf_counter()
            await asyncio.sleep(0.05)
            self.lag.append(time.perf_counter() - t - 0.05)

    def log_size(self) -> int:
        return self.api_log.stat().st_size if self.api_log.exists() else 0

    async def run(self, usernames: list[str], group: Group) -> dict[str, Any]:
        import httpx

        agents = [Agent(self, i, name) for i, name in enumerate(usernames)]
        self.stats.recording = False
        t = time.perf_counter()
        for agent in agents:  # one after another: each login is an argon2 verification
            await agent.login()
        login_s = time.perf_counter() - t
        limits = httpx.Limits(max_connections=len(agents) + 4, max_keepalive_connections=len(agents) + 4)
        timeout = httpx.Timeout(10.0, read=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            listeners = [asyncio.ensure_future(a.listen(client)) for a in agents]
            t = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(a.ready.wait() for a in agents)), 30)
            streams_s = time.perf_counter() - t
            lag_task = asyncio.ensure_future(self.measure_lag())

            t = time.perf_counter()
            await self.seed()
            seed_s = time.perf_counter() - t
            await asyncio.sleep(2)  # the last "created" events
            created_first = [
                min(self.tracker.created[c].values()) - t0
                for c, t0 in self.seed_created.items()
                if self.tracker.created.get(c)
            ]
            created_missing = sum(
                self.args.agents - len(self.tracker.created.get(c, {})) for c in self.seed_created
            )
            print(
                f"seeded {len(self.residents)} cases in {seed_s:.1f} s: {dict(self.seed_results)}",
                flush=True,
            )

            # The measured phase.
            self.lag.clear()
            self.stats.recording = True
            self.tracker.events.clear()
            self.log_window = [self.log_size(), 0]
            roles0 = group.cpu_seconds()
            cpu0 = time.process_time()
            psutil.cpu_percent(None)
            started = time.perf_counter()
            deadline = started + self.args.duration
            refreshers = [asyncio.ensure_future(a.refresher()) for a in agents]
            await asyncio.gather(self.residents_write(deadline), *(a.work(deadline) for a in agents))
            wall = time.perf_counter() - started  # the duration and the requests still in flight then
            self.stats.recording = False
            self.log_window[1] = self.log_size()
            machine_cpu = psutil.cpu_percent(None)
            roles1 = group.cpu_seconds()
            loadgen_cpu = time.process_time() - cpu0
            # The events of the last messages.
            drain_until = time.perf_counter() + self.args.event_timeout
            while self.tracker.flights and time.perf_counter() < drain_until:
                self.tracker.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.tracker.changed.wait(), 0.5)
            self.tracker.expire(float("inf"))
            self.stopping = True
            self.stats.recording = False
            for task in (*refreshers, *listeners, lag_task):
                task.cancel()
            await asyncio.gather(*refreshers, *listeners, lag_task, return_exceptions=True)
            for agent in agents:
                while not agent.conns.empty():
                    await agent.conns.get_nowait().close()

        lag = sorted(self.lag)
        return {
            "login_s": round(login_s, 2),
            "streams_ready_s": round(streams_s, 2),
            "seed": {
                "cases": len(self.residents),
                "wall_s": round(seed_s, 1),
                "by_kind": dict(self.seed_results),
                "post": distribution(self.seed_latency),
                "new_case_first_screen": distribution(created_first),
                "created_missed_stream_deliveries": created_missing,
            },
            "wall_s": round(wall, 1),
            "message_to_screen": self.tracker.summary(started),
            "duration_s": self.args.duration,
            "endpoints": self.stats.table(wall),
            "claims": self.claims,
            "agent_events_received": sum(a.events for a in agents),
            "stream_disconnects": sum(a.disconnects for a in agents),
            "stream_errors": dict(self.stream_errors),
            "resident_sends_late_or_skipped": self.schedule_late,
            "loadgen_cpu_pct": round(100 * loadgen_cpu / wall, 1),
            "loadgen_loop_lag_ms": {
                "p50": _ms(percentile(lag, 0.5)),
                "p99": _ms(percentile(lag, 0.99)),
                "max": _ms(lag[-1]) if lag else None,
            },
            "machine_cpu_pct": machine_cpu,  # of all CPUs (100 = every vCPU busy)
            "cpu_pct_by_process": {  # of one vCPU
                k: round(100 * (v - roles0.get(k, 0.0)) / wall, 1)
                for k, v in roles1.items()
                if v - roles0.get(k, 0.0) > 0.01
            },
        }


# --- the service ---------------------------------------------------------------------------------


def create_agents(database_url: str, data_dir: Path, count: int) -> list[str]:
    """``bench-agent-NN`` accounts (role agent, all demo communities) written before the start."""
    from sqlalchemy import select

    import anju.models  # noqa: F401  every table mapped
    from accounts.models import Role
    from accounts.service import create_user
    from core.db import get_database
    from core.settings import Settings
    from org.models import Community, Company

    settings = Settings(data_dir=data_dir, database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    database = get_database(settings)
    names = [f"bench-agent-{i + 1:02d}" for i in range(count)]
    with database.session() as session:
        company = session.scalar(select(Company).where(Company.code == "anju-demo"))
        assert company is not None, "the demo company is missing"
        communities = list(session.scalars(select(Community.id).where(Community.company_id == company.id)))
        for i, name in enumerate(names):
            create_user(
                session=session,
                company_id=company.id,
                username=name,
                password=AGENT_PASSWORD,
                role=Role.agent,
                display_name=f"压测客服{i + 1:02d}",
                community_ids=communities,
            )
    database.engine.dispose()
    return names


def log_figures(log_path: Path, window: tuple[int, int] | None = None) -> dict[str, Any]:
    """The server's own request times (its access log lines) and its warnings and errors, in the
    byte range ``window`` of the log (the measured phase) or all of it."""
    times: dict[str, list[float]] = defaultdict(list)
    levels: Counter[str] = Counter()
    samples: list[str] = []
    if not log_path.exists():
        return {}
    raw = log_path.read_bytes()
    if window:
        raw = raw[window[0] : window[1]]
    for line in raw.decode(errors="replace").splitlines():
        m = LOG_LINE.search(line)
        if m:
            times[endpoint_of(m.group(1), m.group(2))].append(float(m.group(4)) / 1000)
        for level in ("WARNING", "ERROR", "CRITICAL"):
            if f" {level} " in line:
                levels[level] += 1
                if len(samples) < 8:
                    samples.append(line[:240])
        if line.startswith("Traceback"):
            levels["Traceback"] += 1
    return {
        "server_request_times": {
            k: distribution(v) for k, v in sorted(times.items(), key=lambda kv: -len(kv[1]))
        },
        "log_levels": dict(levels),
        "log_samples": samples,
    }


def uncommitted() -> list[str]:
    """``git status --porcelain`` lines, this script's own line left out."""
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return [line for line in status.splitlines() if not line.endswith("bench/console_load.py")]


def commit_label() -> str:
    return git_commit().removesuffix("+dirty") + (" + uncommitted changes" if uncommitted() else "")


def run(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    workdir = make_workdir()
    group = Group(workdir)
    dbs = Databases(workdir, args.database_url)
    redis = RedisServer(group, workdir / "redis")
    result: dict[str, Any] = {"workdir": str(workdir), "database": dbs.kind}
    print(f"working folder {workdir}", flush=True)
    try:
        redis.start()
        redis.flush()
        env = service_env(
            data_dir=workdir / "template",
            redis_url=redis.url,
            database_url=None,
            port=0,
            fakes_port=1,
            llm=False,
        )
        t = time.monotonic()
        dbs.prepare(env)
        print(f"database ({dbs.kind}) migrated and seeded in {time.monotonic() - t:.1f} s", flush=True)
        data_dir = workdir / "run"
        database_url = dbs.fresh(data_dir)
        usernames = create_agents(dbs.sqlalchemy_url(data_dir, database_url), data_dir, args.agents)
        port = free_port()
        env = service_env(
            data_dir=data_dir,
            redis_url=redis.url,
            database_url=database_url,
            port=port,
            fakes_port=1,  # no WeChat or app traffic in this run
            llm=False,
            extra={
                "ANJU_LOG_LEVEL": args.log_level,
                "ANJU_AGENT_MAX_OPEN_CASES": str(args.max_open_cases),
                "ANJU_CHAT_PER_ADDRESS_PER_MINUTE": "1000000",  # every resident is 127.0.0.1 here
            },
        )
        api = group.anju("api", ["serve", "--port", str(port), "--workers", str(args.api_workers)], env)
        workers = [group.anju(f"worker-{i}", ["worker"], env) for i in range(args.rq_workers)]
        others = [group.anju("scheduler", ["scheduler"], env)] if args.scheduler else []
        wait_ready(port, workers=args.rq_workers, procs=[api, *workers, *others])
        result["warmup_wait_s"] = wait_quiet(group, limit=3 if args.smoke else 60)
        print(f"service ready on 127.0.0.1:{port} ({args.api_workers} API, {args.rq_workers} rq)", flush=True)
        load = Load(args, port, api.log_path)
        result.update(asyncio.run(load.run(usernames, group)))
        group.track()
        url = dbs.sqlalchemy_url(data_dir, database_url)
        result["cases_by_status_at_end"] = dict(
            query(url, "SELECT status, count(*) FROM escalation_case GROUP BY status")
        )
        result["server"] = log_figures(api.log_path, (load.log_window[0], load.log_window[1]))
        result["server_whole_run_log_levels"] = log_figures(api.log_path).get("log_levels", {})
        result["worker_log_levels"] = {
            p.name: log_figures(p.log_path).get("log_levels", {}) for p in (*workers, *others)
        }
        if args.keep:
            for proc in group.procs:
                result.setdefault("logs", []).append(str(proc.log_path))
    finally:
        result["leftovers"] = tear_down(group, dbs, workdir, keep=args.keep)
    return result


# --- report --------------------------------------------------------------------------------------


def server_key(endpoint: str) -> str:
    """The API's access log has the path without the query and without our labels."""
    return endpoint.replace(" (follow-up)", "").split("?", 1)[0]


def md_row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def dist_cells(d: dict[str, Any]) -> list[Any]:
    return [d["count"], d["p50_ms"], d["p95_ms"], d["p99_ms"], d["max_ms"], d["over_1s"]]


def print_report(r: dict[str, Any], info: dict[str, Any], args: argparse.Namespace) -> None:
    m = r["message_to_screen"]
    first, every, post = m["first_screen"], m["every_screen"], m["post_answered"]
    met = first.get("p95_ms", float("inf")) <= 1000 * TARGET_P95_S and m["never_seen"] == 0
    where = f"{machine_label(info['machine'])}, {info['machine']['cpu']}"
    print(f"\n{info['date']} · {where} · commit {info['commit']}")
    print(
        f"{args.agents} agents, {r['seed']['cases']} open cases, {r['database']}, {args.api_workers} API, "
        f"{args.rq_workers} rq, residents {args.rate:g} msg/s, {r['duration_s']:g} s measured "
        f"({r['wall_s']} s until the requests then in flight were answered)"
    )
    print("\nResident message -> agent screen (target p95 <= 1 s)")
    print(f"{'':<36}" + "".join(f"{h:>10}" for h in ("count", "p50", "p95", "p99", "max", ">1s")))
    rows = (
        ("first agent's screen", first),
        (f"every agent's screen ({args.agents})", every),
        ("POST /api/chat answered", post),
        ("new case (seeding) first screen", r["seed"]["new_case_first_screen"]),
    )
    for label, d in rows:
        if d.get("count"):
            print(f"{label:<36}" + "".join(f"{c:>10}" for c in dist_cells(d)))
    print(
        f"never seen: {m['never_seen']}; missed on some stream: {m['missed_on_some_stream']} "
        f"({m['missed_stream_deliveries']} deliveries); failed POSTs: {m['failed_posts']}; "
        f"target {'met' if met else 'MISSED'}"
    )
    print(f"first screen p50 by when sent (ms): {m['first_screen_p50_ms_by_10s']}")
    print("\nEndpoints (client side; srv p95 = the API's own time from its log)")
    heads = ("count", "/s", "p50", "p95", "p99", "max", "err", "409", "srv p95")
    print(f"{'endpoint':<42}" + "".join(f"{h:>10}" for h in heads))
    server = r.get("server", {}).get("server_request_times", {})
    cells = []
    for e in r["endpoints"]:
        srv = server.get(server_key(e["endpoint"]), {}).get("p95_ms", "")
        row = [e["count"], e["per_s"], e["p50_ms"], e["p95_ms"], e["p99_ms"], e["max_ms"]]
        cells.append((e, row, srv))
        print(f"{e['endpoint']:<42}" + "".join(f"{c:>10}" for c in (*row, e["errors"], e["conflicts"], srv)))
    print(
        f"\nclaims {r['claims']}; cases at end {r['cases_by_status_at_end']}; stream disconnects "
        f"{r['stream_disconnects']}; machine CPU {r['machine_cpu_pct']}%; by process (% of one vCPU) "
        f"{r['cpu_pct_by_process']}; load generator {r['loadgen_cpu_pct']}% (loop lag p99 "
        f"{r['loadgen_loop_lag_ms']['p99']} ms); server log {r.get('server', {}).get('log_levels')}"
    )
    print("\nMarkdown rows for docs/BENCHMARKS.md:\n")
    print(md_row("figure", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "over 1 s"))
    print(md_row(*["---"] * 7))
    for label, d in (
        ("resident message → first agent's screen", first),
        (f"resident message → all {args.agents} agents' screens", every),
        ("`POST /api/chat` (follow-up) answered", post),
        ("new case → first agent's screen (seeding)", r["seed"]["new_case_first_screen"]),
    ):
        if d.get("count"):
            print(md_row(label, *dist_cells(d)))
    print()
    print(
        md_row(
            "endpoint", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "server p95 ms"
        )
    )
    print(md_row(*["---"] * 9))
    for e, row, srv in cells:
        err = str(e["errors"]) + (f" (+{e['conflicts']} 409)" if e["conflicts"] else "")
        print(md_row(f"`{e['endpoint']}`", *row, err, srv))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short run: 20 s measured")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 agents, 4 cases (1 emergency), 3 s measured, short think times: checks the script runs",
    )
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--cases", type=int, default=200, help="open cases seeded through the web chat")
    parser.add_argument("--emergencies", type=int, default=4, help="of the cases, emergencies (fire, lift)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 60; --quick 20)")
    parser.add_argument("--rate", type=float, default=5.0, help="resident follow-ups per second, in total")
    parser.add_argument("--think", default="1,3", help="an agent's think time between actions: min,max s")
    parser.add_argument(
        "--list-interval",
        type=float,
        default=2.0,
        help="an agent reloads its lists after events at most this often (s)",
    )
    parser.add_argument(
        "--event-timeout", type=float, default=10.0, help="an event not seen within this is missed"
    )
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument("--rq-workers", type=int, default=1)
    parser.add_argument(
        "--no-scheduler", dest="scheduler", action="store_false", help="do not run anju scheduler"
    )
    parser.add_argument("--max-open-cases", type=int, default=50, help="ANJU_AGENT_MAX_OPEN_CASES")
    parser.add_argument("--seed-concurrency", type=int, default=8)
    parser.add_argument(
        "--database-url", help="postgresql+psycopg://… (a database anju_bench_* is created on it)"
    )
    parser.add_argument("--log-level", default="INFO", help="ANJU_LOG_LEVEL of the service (shipped: INFO)")
    parser.add_argument("--out", help="JSON result file (default /tmp/anju-console-load-<UTC time>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp/bench-intake-* folder and logs")
    args = parser.parse_args()
    if args.smoke:
        args.agents, args.cases, args.emergencies, args.duration = 2, 4, 1, args.duration or 3.0
        args.rate, args.think, args.list_interval, args.event_timeout = 2.0, "0.2,0.5", 0.5, 5.0
        args.seed_concurrency = 4
    args.duration = args.duration or (20.0 if args.quick else 60.0)

    install_sigterm()
    info: dict[str, Any] = {
        "date": today(),
        "machine": machine(),
        "commit": commit_label(),
        "uncommitted": uncommitted(),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.console_load", *sys.argv[1:]]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    print(f"machine {info['machine']}; commit {info['commit']}", flush=True)
    started = time.monotonic()
    result: dict[str, Any] = {}
    interrupted = False
    try:
        result = run(args, info)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopped everything", file=sys.stderr, flush=True)
    info["wall_s"] = round(time.monotonic() - started, 1)
    info["load_after"] = [round(x, 2) for x in psutil.getloadavg()]
    if "message_to_screen" in result:
        print_report(result, info, args)
    out = Path(args.out or f"/tmp/anju-console-load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json")
    payload = {**info, "result": result}
    out.write_text(json.dumps(payload, ensure_ascii=False, indent=1))
    leftovers = len(result.get("leftovers", []))
    print(f"\nwall time {info['wall_s']} s; leftover processes: {leftovers}; written {out}")
    print("BENCH_CONSOLE_LOAD " + json.dumps(payload, ensure_ascii=False))
    m = result.get("message_to_screen", {})
    bad = (
        interrupted
        or not m
        or result.get("seed", {}).get("cases") != args.cases
        or result.get("leftovers")
        or m.get("never_seen")
        or m.get("missed_stream_deliveries")
        or m.get("failed_posts")
        or any(e["errors"] for e in result.get("endpoints", []))
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
