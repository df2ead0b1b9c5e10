"""Intake under load (issue 4): the WeChat callback's latency with a slow assistant, and how many
messages per second the intake accepts and stores.

    .venv/bin/python -m bench.intake_load            # full run (~15 min on 2 vCPUs)
    .venv/bin/python -m bench.intake_load --quick    # short run (~3 min): short, small counts
    .venv/bin/python -m bench.intake_load --smoke    # one latency and one acceptance scenario, 1 API
                                                     # process, seconds and tens of messages: checks it runs
    .venv/bin/python -m bench.intake_load --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What runs (bench/intake_common.py): a private redis-server on a free port; a fresh copy of a
migrated database seeded by ``anju seed-demo`` (demo company, FAQ, service standard and search
index) per scenario, SQLite by default, or a database ``anju_bench_*`` of our own on the given
PostgreSQL server (dropped at the end); ``anju serve --workers N`` (real uvicorn processes);
``anju worker`` processes (real rq workers, fork per job, as ``anju up`` runs them); and
bench/fakes.py (a fake OpenAI-compatible LLM, WeChat's API and the app's webhook receiver). The
load generator is this process: raw keep-alive HTTP/1.1 over asyncio on 127.0.0.1, a closed loop
of ``--connections`` connections, each sending its next request as soon as the last one was
answered (latency = request written -> response read; signing and encryption happen before).
Each latency run starts with ``--warmup`` (3) seconds of the same load that are not measured (each
connection's first request, each process's first callback); its errors still fail the run.

1. **WeChat callback latency** (``latency``): 2 rq workers, the LLM answer writer configured and
   the fake LLM sleeping ``--llm-delay`` (10) s before it answers, so no answer is ready within
   the passive-reply window and every callback must answer ``success`` on its own. For
   ``--duration`` seconds the connections POST signed WeChat text messages to
   /channels/wechat/<account>: half plaintext (account ``plain``), half safe mode (account
   ``aes``, AES-encrypted, msg_signature), each with a unique MsgId and one of 3,000
   FromUserNames, asking questions the demo knowledge base answers (物业费怎么交, 停车月卡怎么办理,
   装修要办什么手续), so the assistant does call the LLM (the fake's call count is reported).
   Reported: p50/p95/p99/max, requests over 5 s (WeChat retries after 5 s), errors, messages/s.
   Targets: none over 5 s, p99 <= 200 ms.
2. **Acceptance throughput** (``acceptance``): ``--messages`` messages through
   POST /channels/app/messages (HMAC-signed, channels.signing) and through /channels/wechat (same
   mix as above), for each number of API processes (``--api-workers``, default 1 and 2) and rq
   workers (``--rq-workers``, default 0: acceptance alone, and 2: workers processing the same
   messages meanwhile, no LLM). A message counts as accepted when the answer was 202/200 (WeChat:
   200 ``success`` or a passive reply) **and** its row is in inbound_message afterwards.
   Target: >= 500 messages/s.

Prints a table per figure, markdown rows ready for docs/BENCHMARKS.md (date, machine, commit)
and, last, one JSON line ``BENCH_INTAKE_LOAD {...}``. Exits 1 when a run had errors, lost a
message or left a process behind (targets missed do not change the exit code: they are figures).
Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from typing import Any

import psutil

from bench.intake_common import (
    QUESTIONS,
    Connection,
    Databases,
    Group,
    HttpError,
    RedisServer,
    app_request,
    fakes_stats,
    free_port,
    git_commit,
    install_sigterm,
    machine,
    machine_label,
    make_workdir,
    percentile,
    query,
    service_env,
    start_fakes,
    tear_down,
    today,
    wait_quiet,
    wait_ready,
    wechat_request,
)

OPENIDS = 3000  # distinct residents (FromUserName / app user ids) the messages come from
SLOW_SECONDS = 5.0  # WeChat gives up on a callback after 5 s and retries
LATENCY_P99_TARGET_MS = 200.0
THROUGHPUT_TARGET = 500.0


class Load:
    """One closed-loop run: ``connections`` connections sending until ``total`` requests were
    sent or ``duration`` seconds passed."""

    def __init__(self, port: int, *, channel: str, tag: str, wechat_mode: str, group: Group) -> None:
        self.port = port
        self.group = group
        self.channel = channel
        self.tag = tag
        self.wechat_mode = wechat_mode
        self.msg_base = random.randrange(10**17, 9 * 10**17)
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.passive = 0
        self.accepted: set[str] = set()  # external ids answered 202/200

    def build(self, i: int) -> tuple[str, bytes, dict[str, str], str]:
        text = QUESTIONS[i % len(QUESTIONS)]
        if self.channel == "app":
            message_id = f"{self.tag}-{i}"
            body, headers = app_request(message_id, f"app-{self.tag}-{i % OPENIDS}", text)
            return "/channels/app/messages", body, headers, message_id
        openid = f"o{self.tag}{i % OPENIDS:05d}"
        msg_id = self.msg_base + i
        aes = self.wechat_mode == "aes" or (self.wechat_mode == "mixed" and i % 2 == 1)
        target, body = wechat_request(openid, msg_id, text, aes=aes)
        return target, body, {"Content-Type": "text/xml"}, f"{openid}:{msg_id}"

    async def one(self, conn: Connection, i: int, t0: float | None = None) -> None:
        """Send request ``i``; its latency runs from ``t0`` (open loop: the scheduled time, so
        waiting for a free connection counts) or from when it is written."""
        target, body, headers, external_id = self.build(i)
        t0 = t0 if t0 is not None else time.perf_counter()
        try:
            status, payload = await conn.request("POST", target, body, headers, timeout=60)
        except HttpError as exc:
            self.latencies.append(time.perf_counter() - t0)
            self.errors[str(exc)[:80]] += 1
            return
        self.latencies.append(time.perf_counter() - t0)
        self.statuses[str(status)] += 1
        if self.channel == "app" and status in (200, 202):
            self.accepted.add(external_id)
        elif (
            self.channel == "wechat"
            and status == 200
            and (payload == b"success" or payload.startswith(b"<xml>"))
        ):
            self.accepted.add(external_id)
            self.passive += payload.startswith(b"<xml>")
        else:
            self.errors[f"HTTP {status}: {payload[:60]!r}"] += 1

    async def closed_loop(self, connections: int, total: int | None, deadline: float | None) -> None:
        counter = itertools.count()

        async def client() -> None:
            conn = Connection(self.port)
            try:
                while True:
                    i = next(counter)
                    if (total is not None and i >= total) or (
                        deadline is not None and time.perf_counter() >= deadline
                    ):
                        return
                    await self.one(conn, i)
            finally:
                await conn.close()

        await asyncio.gather(*(client() for _ in range(connections)))

    async def open_loop(
        self, connections: int, rate: float, total: int | None, deadline: float | None
    ) -> None:
        """Requests arrive at ``rate``/s whatever the answers do (WeChat pushes as residents
        write), over at most ``connections`` connections."""
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(Connection(self.port))
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()

        async def fire(i: int, scheduled: float) -> None:
            conn = await pool.get()
            try:
                await self.one(conn, i, scheduled)
            finally:
                pool.put_nowait(conn)

        for i in itertools.count():
            scheduled = start + i / rate
            if (total is not None and i >= total) or (deadline is not None and scheduled >= deadline):
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            task = asyncio.ensure_future(fire(i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        while not pool.empty():
            await pool.get_nowait().close()

    async def run(
        self, connections: int, *, total: int | None, duration: float | None, rate: float | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = started + duration if duration else None
        cpu0 = time.process_time()
        roles0 = self.group.cpu_seconds()
        psutil.cpu_percent(None)
        if rate:
            await self.open_loop(connections, rate, total, deadline)
        else:
            await self.closed_loop(connections, total, deadline)
        wall = time.perf_counter() - started
        machine_cpu = psutil.cpu_percent(None)
        roles1 = self.group.cpu_seconds()
        cpu_by_role = {
            k: round(100 * (v - roles0.get(k, 0.0)) / wall, 1)
            for k, v in roles1.items()
            if v - roles0.get(k, 0.0) > 0.01
        }
        lat = sorted(self.latencies)
        sent = len(lat)
        return {
            "sent": sent,
            "answered_ok": len(self.accepted),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors.most_common(5)),
            "statuses": dict(self.statuses),
            "passive_replies": self.passive,
            "wall_s": round(wall, 2),
            "requests_per_s": round(sent / wall, 1),
            "p50_ms": round(1000 * percentile(lat, 0.50), 1),
            "p95_ms": round(1000 * percentile(lat, 0.95), 1),
            "p99_ms": round(1000 * percentile(lat, 0.99), 1),
            "max_ms": round(1000 * lat[-1], 1) if lat else None,
            "over_5s": sum(1 for x in lat if x > SLOW_SECONDS),
            "loadgen_cpu_pct": round(100 * (time.process_time() - cpu0) / wall, 1),
            "machine_cpu_pct": machine_cpu,  # of all CPUs (100 = every vCPU busy)
            "cpu_pct_by_process": cpu_by_role,  # of one vCPU
        }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = make_workdir()
        self.group = Group(self.workdir)
        self.dbs = Databases(self.workdir, args.database_url)
        self.redis = RedisServer(self.group, self.workdir / "redis")
        self.fakes_port = 0
        self.scenarios = 0

    def setup(self) -> None:
        self.redis.start()
        _, self.fakes_port, _ = start_fakes(self.group, self.workdir, llm_delay=self.args.llm_delay)
        env = service_env(
            data_dir=self.workdir / "template",
            redis_url=self.redis.url,
            database_url=None,
            port=0,
            fakes_port=self.fakes_port,
            llm=False,
        )
        t = time.monotonic()
        self.dbs.prepare(env)
        print(
            f"database template ({self.dbs.kind}) migrated and seeded in {time.monotonic() - t:.1f} s",
            flush=True,
        )

    def scenario(
        self,
        figure: str,
        *,
        channel: str,
        api_workers: int,
        rq_workers: int,
        llm: bool,
        total: int | None,
        duration: float | None,
        rate: float | None = None,
    ) -> dict[str, Any]:
        self.scenarios += 1
        n = self.scenarios
        data_dir = self.workdir / f"s{n}"
        database_url = self.dbs.fresh(data_dir)
        self.redis.flush()
        port = free_port()
        env = service_env(
            data_dir=data_dir,
            redis_url=self.redis.url,
            database_url=database_url,
            port=port,
            fakes_port=self.fakes_port,
            llm=llm,
            extra={"ANJU_LOG_LEVEL": self.args.log_level},
        )
        api = self.group.anju(f"api-s{n}", ["serve", "--port", str(port), "--workers", str(api_workers)], env)
        workers = [self.group.anju(f"worker-s{n}-{i}", ["worker"], env) for i in range(rq_workers)]
        result: dict[str, Any] = {
            "figure": figure,
            "channel": channel,
            "database": self.dbs.kind,
            "api_workers": api_workers,
            "rq_workers": rq_workers,
            "connections": self.args.connections,
            "load": f"open loop, {rate:g}/s" if rate else f"closed loop, {self.args.connections} connections",
            "llm": f"fake, {self.args.llm_delay:g} s" if llm else "none",
        }
        try:
            wait_ready(port, workers=rq_workers, procs=[api, *workers])
            result["warmup_wait_s"] = wait_quiet(self.group, limit=3 if self.args.smoke else 60)
            llm_before = fakes_stats(self.fakes_port).get("llm", 0)
            tag = f"b{os.getpid() % 1000}s{n}"
            mode = self.args.wechat_mode
            load = Load(port, channel=channel, tag=tag, wechat_mode=mode, group=self.group)
            result["wechat_mode"] = mode if channel == "wechat" else None
            warm: Load | None = None
            if figure == "latency" and self.args.warmup > 0:
                # The same load for a few seconds, not measured: each connection's first request and
                # each process's first callback are not what WeChat meets on a running service.
                warm = Load(port, channel=channel, tag=f"{tag}w", wechat_mode=mode, group=self.group)
                w = asyncio.run(
                    warm.run(self.args.connections, total=None, duration=self.args.warmup, rate=rate)
                )
                result["warmup"] = {
                    k: w[k] for k in ("wall_s", "sent", "errors", "p50_ms", "p99_ms", "max_ms")
                }
            result.update(
                asyncio.run(load.run(self.args.connections, total=total, duration=duration, rate=rate))
            )
            url = self.dbs.sqlalchemy_url(data_dir, database_url)
            stored = {
                row[0]
                for row in query(url, "SELECT external_id FROM inbound_message WHERE channel = :c", c=channel)
            }
            result["stored"] = len(load.accepted & stored)
            result["accepted_not_stored"] = len(load.accepted - stored) + (
                len(warm.accepted - stored) if warm is not None else 0
            )
            result["accepted_per_s"] = round(result["stored"] / result["wall_s"], 1)
            statuses = dict(
                query(
                    url,
                    "SELECT status, count(*) FROM inbound_message WHERE channel = :c GROUP BY status",
                    c=channel,
                )
            )
            result["rows_by_status_at_end"] = statuses
            result["llm_calls_during_run"] = fakes_stats(self.fakes_port).get("llm", 0) - llm_before
        finally:
            for proc in (*workers, api):
                self.group.stop(proc, grace=3)
            if not self.args.keep:
                shutil.rmtree(data_dir, ignore_errors=True)
        return result


def print_report(results: list[dict[str, Any]], info: dict[str, Any]) -> None:
    when, where = info["date"], machine_label(info["machine"])
    latency = [r for r in results if r["figure"] == "latency"]
    accept = [r for r in results if r["figure"] == "acceptance"]
    if latency:
        print("\nWeChat callback latency, assistant slowed (fake LLM) — target: 0 over 5 s, p99 <= 200 ms")
        print(
            f"{'load':<32}{'API':>4}{'rq':>4}{'sent':>8}{'ok':>8}{'err':>6}{'msg/s':>8}{'p50':>8}{'p95':>8}{'p99':>8}"
            f"{'max':>8}{'>5s':>6}{'passive':>8}{'LLM calls':>10}{'gen CPU%':>9}"
        )
        for r in latency:
            print(
                f"{r['load']:<32}{r['api_workers']:>4}{r['rq_workers']:>4}{r['sent']:>8}{r['stored']:>8}{r['errors']:>6}"
                f"{r['requests_per_s']:>8}{r['p50_ms']:>8}{r['p95_ms']:>8}{r['p99_ms']:>8}{r['max_ms']:>8}"
                f"{r['over_5s']:>6}{r['passive_replies']:>8}{r['llm_calls_during_run']:>10}"
                f"{r['loadgen_cpu_pct']:>9}"
            )
    if accept:
        print(f"\nAcceptance throughput (accepted and stored per second) — target >= {THROUGHPUT_TARGET:g}/s")
        print(
            f"{'channel':<8}{'API':>4}{'rq':>4}{'sent':>8}{'stored':>8}{'err':>6}{'accepted/s':>11}{'p50':>8}"
            f"{'p99':>8}{'max':>8}{'done@end':>9}{'gen CPU%':>9}"
        )
        for r in accept:
            print(
                f"{r['channel']:<8}{r['api_workers']:>4}{r['rq_workers']:>4}{r['sent']:>8}{r['stored']:>8}"
                f"{r['errors']:>6}{r['accepted_per_s']:>11}{r['p50_ms']:>8}{r['p99_ms']:>8}{r['max_ms']:>8}"
                f"{r['rows_by_status_at_end'].get('done', 0):>9}{r['loadgen_cpu_pct']:>9}"
            )

    print("\nMarkdown rows for docs/BENCHMARKS.md:\n")
    print(
        "| date | machine | commit | figure | channel | DB | API procs | rq workers | load | "
        "messages | errors | stored | msg/s | p50 ms | p95 ms | p99 ms | max ms | > 5 s | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["figure"] == "latency":
            met = r["over_5s"] == 0 and r["p99_ms"] <= LATENCY_P99_TARGET_MS and not r["errors"]
            figure = f"WeChat callback, LLM {r['llm']}"
            rate = r["requests_per_s"]
            target = f"{'met' if met else 'missed'} (0 > 5 s, p99 ≤ 200 ms)"
        else:
            met = r["accepted_per_s"] >= THROUGHPUT_TARGET and not r["errors"]
            figure = "acceptance" + (" + rq processing" if r["rq_workers"] else " alone")
            rate = r["accepted_per_s"]
            target = f"{'met' if met else 'missed'} (≥ {THROUGHPUT_TARGET:g}/s)"
        channel = r["channel"] + (f" ({r['wechat_mode']})" if r.get("wechat_mode") else "")
        print(
            f"| {when} | {where} | `{info['commit']}` | {figure} | {channel} | {r['database']} | "
            f"{r['api_workers']} | {r['rq_workers']} | {r['load']} | {r['sent']} | {r['errors']} | "
            f"{r['stored']} | {rate} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | "
            f"{r['over_5s']} | {target} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short run: 10 s latency, 1,500 messages")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="latency (1 API, 1 rq, 2 s, LLM 1 s) and acceptance (app, 1 API, 0 rq, 40 messages), "
        "4 connections: checks the script runs",
    )
    parser.add_argument("--only", choices=["latency", "acceptance"], help="run one figure only")
    parser.add_argument(
        "--database-url", help="postgresql+psycopg://… (a database anju_bench_* is created on it)"
    )
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, help="latency run seconds (default 60; --quick 10)")
    parser.add_argument(
        "--messages", type=int, help="messages per acceptance run (default 20000; --quick 1500)"
    )
    parser.add_argument("--api-workers", default="1,2", help="uvicorn processes to try, comma list")
    parser.add_argument(
        "--rq-workers", default="0,2", help="rq workers beside the acceptance runs, comma list"
    )
    parser.add_argument("--channels", default="app,wechat", help="acceptance channels, comma list")
    parser.add_argument("--latency-rq-workers", type=int, default=2)
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="latency runs: seconds of the same load before measuring, not counted (0: none)",
    )
    parser.add_argument(
        "--latency-rates",
        help="also measure the callback latency with requests arriving at these rates (open loop, "
        "messages/s, comma list; default 25,50; --quick 25; '' for none)",
    )
    parser.add_argument("--wechat-mode", choices=["mixed", "plain", "aes"], default="mixed")
    parser.add_argument("--llm-delay", type=float, default=10.0, help="seconds the fake LLM takes per answer")
    parser.add_argument("--log-level", default="INFO", help="ANJU_LOG_LEVEL of the service (shipped: INFO)")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp/bench-intake-* folder and logs")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.messages, args.connections = args.duration or 2.0, args.messages or 40, 4
        args.api_workers, args.rq_workers, args.channels, args.latency_rq_workers = "1", "0", "app", 1
        args.warmup, args.llm_delay, args.latency_rates = 0.5, 1.0, ""
    duration = args.duration or (10.0 if args.quick else 60.0)
    messages = args.messages or (1500 if args.quick else 20000)
    api_counts = [int(x) for x in args.api_workers.split(",") if x]
    rq_counts = [int(x) for x in args.rq_workers.split(",") if x]
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    rates = args.latency_rates if args.latency_rates is not None else ("25" if args.quick else "25,50")
    latency_rates = [float(x) for x in rates.split(",") if x]

    install_sigterm()
    info: dict[str, Any] = {
        "date": today(),
        "machine": machine(),
        "commit": git_commit(),
        "python": sys.executable,
    }
    bench = Bench(args)
    print(f"working folder {bench.workdir}; machine {info['machine']}", flush=True)
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    leftovers: list[dict[str, Any]] = []
    interrupted = False
    try:
        bench.setup()
        if args.only in (None, "latency"):
            for api, rate in itertools.product(api_counts, [None, *latency_rates]):
                r = bench.scenario(
                    "latency",
                    channel="wechat",
                    api_workers=api,
                    rq_workers=args.latency_rq_workers,
                    llm=True,
                    total=None,
                    duration=duration,
                    rate=rate,
                )
                results.append(r)
                print(
                    f"[latency, {api} API, {r['load']}] {r['sent']} sent, "
                    f"p50 {r['p50_ms']} p99 {r['p99_ms']} max "
                    f"{r['max_ms']} ms, {r['over_5s']} over 5 s, {r['errors']} errors, "
                    f"{r['requests_per_s']}/s, LLM calls {r['llm_calls_during_run']}",
                    flush=True,
                )
        if args.only in (None, "acceptance"):
            for api, rq, channel in itertools.product(api_counts, rq_counts, channels):
                r = bench.scenario(
                    "acceptance",
                    channel=channel,
                    api_workers=api,
                    rq_workers=rq,
                    llm=False,
                    total=messages,
                    duration=None,
                )
                results.append(r)
                print(
                    f"[acceptance, {channel}, {api} API, {rq} rq] {r['stored']}/{r['sent']} stored, "
                    f"{r['accepted_per_s']}/s, p99 {r['p99_ms']} ms, {r['errors']} errors",
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything", file=sys.stderr, flush=True)
    finally:
        leftovers = tear_down(bench.group, bench.dbs, bench.workdir, keep=args.keep)
    info["wall_s"] = round(time.monotonic() - started, 1)
    info["leftovers"] = leftovers
    if results:
        print_report(results, info)
    print(f"\nwall time {info['wall_s']} s; leftover processes: {len(leftovers)}")
    print("BENCH_INTAKE_LOAD " + json.dumps({**info, "results": results}, ensure_ascii=False))
    bad = (
        interrupted
        or leftovers
        or any(r["errors"] or r.get("warmup", {}).get("errors") or r["accepted_not_stored"] for r in results)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
