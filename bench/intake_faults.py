"""Intake fault run (issue 4): nothing accepted is lost or answered twice when a worker is
SIGKILLed mid-job and Redis restarts empty.

    .venv/bin/python -m bench.intake_faults                    # 10,000 messages (~50 min on 2 vCPUs)
    .venv/bin/python -m bench.intake_faults --messages 500     # a shorter run (~4 min)
    .venv/bin/python -m bench.intake_faults --smoke            # 15 messages, both faults, 2 s sweeps,
                                                               # 10 s job timeout: checks it runs
    .venv/bin/python -m bench.intake_faults --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What runs (bench/intake_common.py): a private redis-server on a fixed free port with no
persistence; a migrated database seeded by ``anju seed-demo`` (SQLite by default, or a database
``anju_bench_*`` of our own on the given PostgreSQL server, dropped at the end); ``anju serve``
(one uvicorn process), two ``anju worker`` processes and ``anju scheduler`` (which enqueues
core.tasks.sweep and channels.tasks.sweep_inbound every ``ANJU_SWEEP_INTERVAL_SECONDS``), all
as ``anju up`` runs them and, like ``anju up``'s supervisor, restarted when they exit; and
bench/fakes.py as the resident app's webhook receiver, which checks each reply's signature and
records every receipt (delivery_id, reply_to, body). No LLM is configured (extractive answers).
Settings for quick recovery: ANJU_INBOUND_STALE_SECONDS=5, ANJU_SWEEP_INTERVAL_SECONDS=5,
ANJU_WORKER_HEARTBEAT_SECONDS=2, ANJU_JOB_TIMEOUT_SECONDS=30 (``--job-timeout``; also when a claimed
message or a delivery stuck in "sending" counts as abandoned), delivery back-off 1, 2, 4, 8, 15 s.

``--senders`` (20) connections POST signed messages to /channels/app/messages (questions the demo
knowledge base answers, 500 distinct app users) at ``--rate`` messages/s in total; a request
that fails (connection refused, 5xx) is sent again with the same message_id, as the app's
backend would. Faults, by the share of messages sent:

- at 1/3: one rq worker in the middle of a process_inbound job (its message claimed, row status
  "processing") is SIGKILLed together with its work-horse (a machine losing power), and a
  replacement worker is started;
- at 2/3: redis-server is stopped and started again on the same port, empty (every queued,
  scheduled and started job is gone), after ``--redis-down`` seconds.

Sending at 25/s outruns what two workers answer on 2 vCPUs (about 3-7 messages/s, two
fork-per-job jobs a message), so a backlog builds and the Redis restart loses many queued jobs; the
sweeper has to recover them. Then it waits until every inbound row is done or failed, every
delivery sent or failed and the receipts stop changing (or ``--settle-timeout``), and reports:
messages sent, accepted, stored rows, processed, failed rows, replies received, distinct
messages replied to, lost (accepted but never answered), duplicated (a message answered by more
than one distinct delivery; separately, raw receipts of the same delivery_id more than once: the
app de-duplicates those by delivery_id), and the wall time.
Target: 0 lost, 0 duplicated. Prints markdown rows for
docs/BENCHMARKS.md and, last, one JSON line ``BENCH_INTAKE_FAULTS {...}``; exits 1 when a message
was lost or duplicated or a process was left behind. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.intake_common import (
    QUESTIONS,
    Connection,
    Databases,
    Group,
    HttpError,
    Proc,
    RedisServer,
    app_request,
    git_commit,
    install_sigterm,
    machine,
    machine_label,
    make_workdir,
    query,
    service_env,
    start_fakes,
    tear_down,
    today,
    wait_quiet,
    wait_ready,
)
from bench.intake_common import free_port as _free_port

USERS = 500
SEND_ATTEMPTS = 30  # a message is resent this many times at most (the service restarting…)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = make_workdir()
        self.group = Group(self.workdir)
        self.dbs = Databases(self.workdir, args.database_url)
        self.redis = RedisServer(self.group, self.workdir / "redis")
        self.events: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.workers: list[Proc] = []
        self.scheduler: Proc | None = None
        self.api: Proc | None = None
        self.env: dict[str, str] = {}
        self.restarts: Counter[str] = Counter()
        self.killed: set[int] = set()  # pids we killed on purpose: not restarted
        self.worker_serial = 0
        self.killed_job: str | None = None
        self.progress = 0

    def event(self, what: str, **details: Any) -> None:
        entry = {"t_s": round(time.monotonic() - self.t0, 1), "event": what, **details}
        self.events.append(entry)
        print(f"  [{entry['t_s']:>6} s] {what} {details if details else ''}", flush=True)

    # --- the service, supervised like `anju up` -------------------------------------------------

    def start_worker(self) -> Proc:
        self.worker_serial += 1
        proc = self.group.anju(f"worker-{self.worker_serial}", ["worker"], self.env)
        self.workers.append(proc)
        return proc

    def supervise(self) -> None:
        """Restart a worker or the scheduler that exited by itself (anju up's supervisor does)."""
        for proc in list(self.workers):
            if not proc.alive() and proc.pid not in self.killed:
                self.workers.remove(proc)
                self.restarts["worker"] += 1
                self.event("worker exited by itself; restarted", name=proc.name, code=proc.popen.returncode)  # type: ignore[union-attr]
                self.group.stop(proc)
                self.start_worker()
        if self.scheduler is not None and not self.scheduler.alive():
            self.restarts["scheduler"] += 1
            self.event("scheduler exited by itself; restarted", code=self.scheduler.popen.returncode)  # type: ignore[union-attr]
            self.group.stop(self.scheduler)
            self.scheduler = self.group.anju(
                f"scheduler-{self.restarts['scheduler'] + 1}", ["scheduler"], self.env
            )
        if self.api is not None and not self.api.alive():
            raise RuntimeError(f"the API exited (see {self.api.log_path})")
        self.group.track()

    def kill_busy_worker(self) -> dict[str, Any]:
        """SIGKILL a worker (and its work-horse) while it runs a process_inbound job whose message
        is claimed and not yet answered (row status "processing")."""
        import redis
        from rq import Worker

        connection = redis.Redis.from_url(self.redis.url)
        deadline = time.monotonic() + 30
        ours = {p.pid: p for p in self.workers if p.alive()}
        while time.monotonic() < deadline:
            for worker in Worker.all(connection=connection):
                job_id = worker.get_current_job_id()
                if worker.pid not in ours or not job_id or not job_id.startswith("inbound-"):
                    continue
                rows = query(self.url, "SELECT status FROM inbound_message WHERE id = :i", i=int(job_id[8:]))
                if not rows or rows[0][0] != "processing":
                    continue
                proc = ours[worker.pid]
                self.killed.add(proc.pid)
                family = len(proc.family())
                self.group.kill(proc)
                self.workers.remove(proc)
                return {"worker": proc.name, "pid": proc.pid, "job": job_id, "processes_killed": family}
            time.sleep(0.005)
        return {"worker": None, "note": "no worker was in the middle of a process_inbound job within 30 s"}

    def restart_redis(self) -> None:
        self.redis.stop()
        time.sleep(self.args.redis_down)
        self.redis.start()

    # --- the run ------------------------------------------------------------------------------

    def setup(self) -> tuple[str, int]:
        self.redis.start()
        _, fakes_port, self.record = start_fakes(self.group, self.workdir, llm_delay=0)
        base = service_env(
            data_dir=self.workdir / "template",
            redis_url=self.redis.url,
            database_url=None,
            port=0,
            fakes_port=fakes_port,
            llm=False,
        )
        self.dbs.prepare(base)
        data_dir = self.workdir / "run"
        database_url = self.dbs.fresh(data_dir)
        port = _free_port()
        self.env = service_env(
            data_dir=data_dir,
            redis_url=self.redis.url,
            database_url=database_url,
            port=port,
            fakes_port=fakes_port,
            llm=False,
            extra={
                "ANJU_INBOUND_STALE_SECONDS": str(self.args.stale_seconds),
                "ANJU_SWEEP_INTERVAL_SECONDS": str(self.args.sweep_interval),
                "ANJU_WORKER_HEARTBEAT_SECONDS": "2",
                "ANJU_JOB_TIMEOUT_SECONDS": str(self.args.job_timeout),
                "ANJU_DELIVERY_BACKOFF_SECONDS": "[1, 2, 4, 8, 15]",
                "ANJU_DELIVERY_MAX_ATTEMPTS": "6",
                "ANJU_LOG_LEVEL": self.args.log_level,
            },
        )
        self.api = self.group.anju("api", ["serve", "--port", str(port)], self.env)
        for _ in range(2):
            self.start_worker()
        self.scheduler = self.group.anju("scheduler-1", ["scheduler"], self.env)
        wait_ready(port, workers=2, procs=[self.api, *self.workers, self.scheduler])
        wait_quiet(self.group, limit=3 if self.args.smoke else 60)
        self.url = self.dbs.sqlalchemy_url(data_dir, database_url)
        return self.url, port

    def send(self, port: int, tag: str) -> dict[str, Any]:
        """Send from a thread of its own (an asyncio loop); this (main) thread supervises and
        injects the faults: children must be started from the main thread, which lives as long
        as they should (PDEATHSIG is tied to the thread that started a child)."""
        import threading

        n = self.args.messages
        box: dict[str, Any] = {}
        self.progress = 0
        thread = threading.Thread(
            target=lambda: box.update(asyncio.run(self._send(port, tag))), name="senders", daemon=True
        )
        thread.start()
        faults = [] if self.args.no_faults else [(n // 3, "kill"), ((2 * n) // 3, "redis")]
        while thread.is_alive() or faults:  # a fault not reached when sending ended comes now
            if faults and (self.progress >= faults[0][0] or not thread.is_alive()):
                _, kind = faults.pop(0)
                if kind == "kill":
                    self.event("SIGKILL a busy rq worker …", sent=self.progress)
                    killed = self.kill_busy_worker()
                    self.killed_job = killed.get("job")
                    self.event("worker killed", **killed)
                    self.event("replacement worker started", name=self.start_worker().name)
                else:
                    self.event("redis-server stopping (no persistence) …", sent=self.progress)
                    self.restart_redis()
                    self.event("redis-server started again, empty", down_s=self.args.redis_down)
            self.supervise()
            thread.join(timeout=0.2)
        if "sent" not in box:
            raise RuntimeError("the senders stopped without a result")
        return box

    async def _send(self, port: int, tag: str) -> dict[str, Any]:
        n = self.args.messages
        accepted: set[str] = set()
        duplicates_answered = 0
        requests = 0
        errors: Counter[str] = Counter()
        next_i = iter(range(n))
        interval = self.args.senders / self.args.rate if self.args.rate else 0.0

        async def sender() -> None:
            nonlocal requests, duplicates_answered
            conn = Connection(port)
            try:
                for i in next_i:
                    message_id = f"{tag}-{i}"
                    started = time.monotonic()
                    for _attempt in range(SEND_ATTEMPTS):
                        body, headers = app_request(
                            message_id, f"app-{tag}-{i % USERS}", QUESTIONS[i % len(QUESTIONS)]
                        )
                        requests += 1
                        try:
                            status, payload = await conn.request(
                                "POST", "/channels/app/messages", body, headers
                            )
                        except HttpError as exc:
                            errors[str(exc)[:60]] += 1
                            await asyncio.sleep(0.5)
                            continue
                        if status in (200, 202):
                            accepted.add(message_id)
                            duplicates_answered += status == 200
                            break
                        errors[f"HTTP {status}: {payload[:80]!r}"] += 1
                        await asyncio.sleep(0.5)
                    self.progress += 1
                    if interval:
                        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
            finally:
                await conn.close()

        t = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(self.args.senders)))
        wall = time.monotonic() - t
        return {
            "sent": self.progress,
            "requests": requests,
            "accepted": accepted,
            "resent_duplicates_200": duplicates_answered,
            "send_errors": dict(errors.most_common(6)),
            "send_errors_total": sum(errors.values()),
            "send_wall_s": round(wall, 1),
            "send_rate_per_s": round(self.progress / wall, 1),
        }

    def receipts(self) -> list[dict[str, Any]]:
        out = []
        for line in Path(self.record).read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                if entry.get("kind") == "app":
                    out.append(entry)
        return out

    def state(self, tag: str) -> dict[str, Any]:
        like = f"{tag}-%"
        inbound = dict(
            query(
                self.url,
                "SELECT status, count(*) FROM inbound_message WHERE channel = 'app' "
                "AND external_id LIKE :like GROUP BY status",
                like=like,
            )
        )
        deliveries = dict(query(self.url, "SELECT status, count(*) FROM outbound_delivery GROUP BY status"))
        return {"inbound": inbound, "deliveries": deliveries, "receipts": len(self.receipts())}

    def settle(self, tag: str) -> tuple[dict[str, Any], bool]:
        deadline = time.monotonic() + self.args.settle_timeout
        last_receipts, stable_since = -1, time.monotonic()
        last_print = 0.0
        while time.monotonic() < deadline:
            self.supervise()
            now = self.state(tag)
            open_inbound = now["inbound"].get("accepted", 0) + now["inbound"].get("processing", 0)
            open_deliveries = now["deliveries"].get("pending", 0) + now["deliveries"].get("sending", 0)
            if now["receipts"] != last_receipts:
                last_receipts, stable_since = now["receipts"], time.monotonic()
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                print(
                    f"  settling: inbound {now['inbound']}, deliveries {now['deliveries']}, "
                    f"receipts {now['receipts']}",
                    flush=True,
                )
            if not open_inbound and not open_deliveries and time.monotonic() - stable_since > 3:
                return now, True
            time.sleep(1)
        return self.state(tag), False


def report(run: Run, sent: dict[str, Any], final: dict[str, Any], settled: bool, tag: str) -> dict[str, Any]:
    accepted: set[str] = sent["accepted"]
    receipts = [r for r in run.receipts() if str(r.get("reply_to", "")).startswith(f"{tag}-")]
    by_delivery = Counter(r["delivery_id"] for r in receipts)
    deliveries_per_message: dict[str, set[Any]] = {}
    for r in receipts:
        deliveries_per_message.setdefault(r["reply_to"], set()).add(r["delivery_id"])
    replied = set(deliveries_per_message)
    stored = {
        row[0]
        for row in query(
            run.url,
            "SELECT external_id FROM inbound_message WHERE channel = 'app' AND external_id LIKE :like",
            like=f"{tag}-%",
        )
    }
    failed_rows = query(
        run.url,
        "SELECT external_id, attempts, error FROM inbound_message WHERE channel = 'app' "
        "AND external_id LIKE :like AND status = 'failed'",
        like=f"{tag}-%",
    )
    failed_deliveries = query(
        run.url, "SELECT id, attempts, last_error FROM outbound_delivery WHERE status = 'failed'"
    )
    turns = query(
        run.url,
        "SELECT client_id, count(*) FROM message WHERE client_id LIKE :like "
        "GROUP BY client_id HAVING count(*) > 1",
        like=f"{tag}-%",
    )
    lost = sorted(accepted - replied)
    timing = query(
        run.url,
        "SELECT min(received_at), max(processed_at) FROM inbound_message WHERE channel = 'app' "
        "AND external_id LIKE :like",
        like=f"{tag}-%",
    )
    last_sent = query(run.url, "SELECT max(sent_at) FROM outbound_delivery")[0][0]
    processing_rate = None
    if timing and timing[0][0] and timing[0][1]:
        first, last = (_when(v) for v in timing[0])
        processing_rate = round(len(stored) / max(0.001, (last - first).total_seconds()), 1)
    killed_message: dict[str, Any] | None = None
    if run.killed_job and run.killed_job.startswith("inbound-"):
        rows = query(
            run.url,
            "SELECT external_id, status, attempts FROM inbound_message WHERE id = :i",
            i=int(run.killed_job.split("-", 1)[1]),
        )
        if rows:
            external_id, status, attempts = rows[0]
            killed_message = {
                "message_id": external_id,
                "status": status,
                "attempts": attempts,
                "replies": sum(1 for r in receipts if r["reply_to"] == external_id),
            }
    return {
        "messages": run.args.messages,
        "sent": sent["sent"],
        "http_requests": sent["requests"],
        "accepted": len(accepted),
        "send_errors_total": sent["send_errors_total"],
        "send_errors": sent["send_errors"],
        "resent_answered_duplicate_200": sent["resent_duplicates_200"],
        "stored_rows": len(stored),
        "accepted_not_stored": len(accepted - stored),
        "rows_by_status": final["inbound"],
        "processed": final["inbound"].get("done", 0),
        "failed_rows": len(failed_rows),
        "failed_row_errors": [str(r[2])[:120] for r in failed_rows[:5]],
        "deliveries_by_status": final["deliveries"],
        "failed_deliveries": [str(r[2])[:120] for r in failed_deliveries[:5]],
        "replies_received": len(receipts),
        "distinct_deliveries_received": len(by_delivery),
        "distinct_messages_replied": len(replied),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "duplicated_messages": sum(1 for d in deliveries_per_message.values() if len(d) > 1),
        "duplicate_receipts_same_delivery": sum(c - 1 for c in by_delivery.values() if c > 1),
        "replies_to_unknown_messages": len(replied - accepted),
        "duplicate_turns": len(turns),
        "processing_rate_per_s": processing_rate,  # rows / (first received -> last processed)
        "last_reply_sent_at": str(last_sent),
        "killed_job_message": killed_message,
        "settled": settled,
        "events": run.events,
        "restarts": dict(run.restarts),
        "send_wall_s": sent["send_wall_s"],
        "send_rate_per_s": sent["send_rate_per_s"],
    }


def _when(value: Any) -> Any:
    """A timestamp from either database as an aware datetime (SQLite returns text)."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=20, help="concurrent connections")
    parser.add_argument(
        "--rate",
        type=float,
        default=25.0,
        help="messages/s in total (0: as fast as accepted); the default is about what two "
        "workers answer on 2 vCPUs, so the faults land while messages are being processed",
    )
    parser.add_argument(
        "--database-url", help="postgresql+psycopg://… (a database anju_bench_* is created on it)"
    )
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down")
    parser.add_argument("--stale-seconds", type=int, default=5, help="ANJU_INBOUND_STALE_SECONDS")
    parser.add_argument("--sweep-interval", type=int, default=5, help="ANJU_SWEEP_INTERVAL_SECONDS")
    parser.add_argument("--settle-timeout", type=float, default=3600.0)
    parser.add_argument(
        "--job-timeout", type=int, default=30, help="ANJU_JOB_TIMEOUT_SECONDS (a claimed job abandoned)"
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="the same run without the faults (a baseline)"
    )
    parser.add_argument("--log-level", default="INFO", help="ANJU_LOG_LEVEL of the service")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp/bench-intake-* folder and logs")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="15 messages, 3 senders at 10/s, Redis down 1 s, 2 s sweeps, 10 s job timeout: checks it runs",
    )
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.senders, args.rate, args.redis_down = 15, 3, 10.0, 1.0
        args.stale_seconds, args.sweep_interval, args.job_timeout, args.settle_timeout = 2, 2, 10, 120.0

    install_sigterm()
    info: dict[str, Any] = {"date": today(), "machine": machine(), "commit": git_commit()}
    run = Run(args)
    print(f"working folder {run.workdir}; machine {info['machine']}", flush=True)
    result: dict[str, Any] = {}
    interrupted = False
    started = time.monotonic()
    tag = f"f{int(time.time()) % 100000}"
    try:
        _, port = run.setup()
        print(
            f"service up ({run.dbs.kind}, Redis {run.redis.url}); sending {args.messages} messages",
            flush=True,
        )
        run.t0 = time.monotonic()
        sent = run.send(port, tag)
        run.event("sending finished", sent=sent["sent"], accepted=len(sent["accepted"]))
        final, settled = run.settle(tag)
        run.event("settled" if settled else "settle timeout", **final)
        result = report(run, sent, final, settled, tag)
        result["total_wall_s"] = round(time.monotonic() - run.t0, 1)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything", file=sys.stderr, flush=True)
    finally:
        leftovers = tear_down(run.group, run.dbs, run.workdir, keep=args.keep)
    info["leftovers"] = leftovers
    info["wall_s"] = round(time.monotonic() - started, 1)
    if result:
        r = result
        faults = (
            "none (baseline)"
            if args.no_faults
            else "SIGKILL a busy worker at 1/3, Redis restarted empty at 2/3"
        )
        print(f"\nFault run: {faults} — target 0 lost, 0 duplicated")
        for key in (
            "messages",
            "sent",
            "http_requests",
            "accepted",
            "stored_rows",
            "processed",
            "failed_rows",
            "replies_received",
            "distinct_messages_replied",
            "lost",
            "duplicated_messages",
            "duplicate_receipts_same_delivery",
            "duplicate_turns",
            "rows_by_status",
            "deliveries_by_status",
            "restarts",
            "killed_job_message",
            "send_rate_per_s",
            "processing_rate_per_s",
            "total_wall_s",
            "settled",
        ):
            print(f"  {key:<34} {r[key]}")
        ok = r["lost"] == 0 and r["duplicated_messages"] == 0
        print("\nMarkdown row for docs/BENCHMARKS.md:\n")
        print(
            "| date | machine | commit | DB | faults | messages | senders | rate/s | accepted | stored "
            "| processed | failed | replies | distinct replied | lost | duplicated (distinct replies) "
            "| duplicate receipts (same delivery_id) | wall s | target |"
        )
        print("|" + "---|" * 19)
        print(
            f"| {info['date']} | {machine_label(info['machine'])} | `{info['commit']}` | {run.dbs.kind} | "
            f"{'none' if args.no_faults else 'worker SIGKILL + Redis restart'} | {r['messages']} | "
            f"{args.senders} | {args.rate:g} | {r['accepted']} | {r['stored_rows']} | {r['processed']} | "
            f"{r['failed_rows']} | {r['replies_received']} | {r['distinct_messages_replied']} | "
            f"{r['lost']} | "
            f"{r['duplicated_messages']} | {r['duplicate_receipts_same_delivery']} | {r['total_wall_s']} | "
            f"{'met' if ok else 'missed'} (0 lost, 0 duplicated) |"
        )
    print(f"\nwall time {info['wall_s']} s; leftover processes: {len(leftovers)}")
    print("BENCH_INTAKE_FAULTS " + json.dumps({**info, "result": result}, ensure_ascii=False, default=str))
    bad = interrupted or not result or leftovers or result["lost"] or result["duplicated_messages"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
