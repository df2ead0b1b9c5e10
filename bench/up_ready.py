"""How long ``anju up`` takes to become ready, how much memory the running group holds, and how
long a Ctrl-C (SIGINT) takes to stop everything cleanly.

Each round starts ``anju up`` (the console script next to this interpreter) twice on a free port:

* cold: a fresh, empty temporary ``ANJU_DATA_DIR`` (so the run includes migrate + demo seed);
* warm: the same data dir again (database migrated and seeded, Redis AOF present).

For every run it measures wall seconds from spawn until ``GET /readyz`` first answers 200, until
``/readyz`` also reports at least one registered worker, and until the banner is printed; then it
waits ``--settle`` seconds and sums RSS (and PSS) over the supervisor and all its descendants,
per role (supervisor / redis / api / worker / worker-child / scheduler); then it sends SIGINT to
the supervisor and measures the time until the supervisor exited and every descendant is gone,
and looks for anything left running that belongs to the run's data dir.

    .venv/bin/python bench/up_ready.py            # 3 rounds = 3 cold + 3 warm runs
    .venv/bin/python bench/up_ready.py --runs 5 --settle 5
    .venv/bin/python -m bench.up_ready --smoke     # one cold run, 0.5 s settle: checks it runs

Prints a table and, last, one JSON line (``BENCH_UP_READY {...}``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
ANJU = Path(sys.executable).parent / "anju"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def role_of(proc: psutil.Process, supervisor_pid: int) -> str:
    try:
        cmd = " ".join(proc.cmdline())
        ppid = proc.ppid()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if proc.pid == supervisor_pid:
        return "supervisor"
    if "redis-server" in cmd:
        return "redis"
    if "anju.cli serve" in cmd:
        return "api"
    if "anju.cli scheduler" in cmd:
        return "scheduler"
    if "anju.cli worker" in cmd:
        # the rq worker forks its scheduler process (with_scheduler=True) and one work-horse per job
        return "worker" if ppid == supervisor_pid else "worker-child"
    return "other:" + cmd[:60]


def memory_snapshot(supervisor: psutil.Process) -> dict[str, Any]:
    procs = [supervisor, *supervisor.children(recursive=True)]
    per_role: dict[str, dict[str, Any]] = {}
    total_rss = total_pss = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            rss, pss = info.rss, getattr(info, "pss", 0)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        role = role_of(proc, supervisor.pid)
        entry = per_role.setdefault(role, {"count": 0, "rss_mb": 0.0, "pss_mb": 0.0, "pids": []})
        entry["count"] += 1
        entry["rss_mb"] += rss / 2**20
        entry["pss_mb"] += pss / 2**20
        entry["pids"].append(proc.pid)
        total_rss += rss
        total_pss += pss
    for entry in per_role.values():
        entry["rss_mb"] = round(entry["rss_mb"], 1)
        entry["pss_mb"] = round(entry["pss_mb"], 1)
    return {
        "total_rss_mb": round(total_rss / 2**20, 1),
        "total_pss_mb": round(total_pss / 2**20, 1),
        "processes": len(procs),
        "per_role": per_role,
    }


def processes_of_data_dir(data_dir: Path, exclude: set[int]) -> list[psutil.Process]:
    """Every live process whose command line or ANJU_DATA_DIR mentions this run's data dir."""
    found = []
    needle = str(data_dir)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in exclude:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            env_dir = proc.environ().get("ANJU_DATA_DIR", "")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if needle in cmd or env_dir == needle:
            found.append(proc)
    return found


def problem_lines(log_text: str) -> list[str]:
    """Log lines at WARNING or above, tracebacks, and anything that is not a JSON log line."""
    out = []
    for line in log_text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            out.append(line[:300])
            continue
        if isinstance(entry, dict) and entry.get("level") in {"WARNING", "ERROR", "CRITICAL"}:
            out.append(line[:300])
    return out


def log_milestones(log_text: str, spawn_epoch: float) -> dict[str, float]:
    """Seconds after spawn at which the JSON log first shows each start-up milestone."""
    marks = {
        "first_log": None,
        "redis_started": "embedded Redis on",
        "worker_listening": "*** Listening on",
        "scheduler_started": "scheduler started",
        "api_listening": "Uvicorn running on",
    }
    out: dict[str, float] = {}
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
            ts = datetime.fromisoformat(entry["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        for key, needle in marks.items():
            if key not in out and (needle is None or needle in str(entry.get("msg", ""))):
                out[key] = round(ts - spawn_epoch, 3)
    return out


def one_run(data_dir: Path, kind: str, settle: float, log_dir: Path, index: int) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANJU_")}
    env.update(ANJU_DATA_DIR=str(data_dir), ANJU_PORT=str(port), ANJU_HOST="127.0.0.1")
    # JSON lines with rq's own job lines: the start-up milestones below are read from them.
    env.update(ANJU_LOG_JSON="true", ANJU_QUEUE_LOG_LEVEL="INFO")
    err_path = log_dir / f"{kind}-{index}.stderr.log"
    url = f"http://127.0.0.1:{port}/readyz"
    result: dict[str, Any] = {"kind": kind, "run": index, "port": port, "data_dir": str(data_dir)}

    banner_at: list[float] = []
    stdout_lines: list[str] = []

    with err_path.open("wb") as err:
        t0 = time.monotonic()
        spawn_epoch = time.time()
        proc = subprocess.Popen(
            [str(ANJU), "up"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # our own terminal's Ctrl-C must not reach it
        )

        def read_stdout() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                stdout_lines.append(line)
                if "anju is up" in line and not banner_at:
                    banner_at.append(time.monotonic() - t0)

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        supervisor = psutil.Process(proc.pid)
        t_ready = t_ready_worker = None
        ready_body: dict[str, Any] = {}
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - t0 < READY_TIMEOUT and proc.poll() is None:
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        now = time.monotonic() - t0
                        if t_ready is None:
                            t_ready = now
                            result["readyz_first_200_body"] = response.json()
                        ready_body = response.json()
                        if ready_body.get("checks", {}).get("workers", 0) >= 1:
                            t_ready_worker = now
                            break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        result["ready_s"] = None if t_ready is None else round(t_ready, 3)
        result["ready_with_worker_s"] = None if t_ready_worker is None else round(t_ready_worker, 3)

        if t_ready_worker is not None:
            time.sleep(settle)
            if not banner_at:
                time.sleep(1.0)
            result["banner_s"] = round(banner_at[0], 3) if banner_at else None
            result["memory"] = memory_snapshot(supervisor)
        else:
            result["error"] = f"not ready within {READY_TIMEOUT:.0f} s (exit code {proc.poll()})"

        # Clean stop: SIGINT to the supervisor only, as Ctrl-C would (its children run in their own
        # sessions, so a terminal's Ctrl-C reaches nobody else either).
        descendants = supervisor.children(recursive=True)
        result["pids_before_stop"] = sorted(p.pid for p in descendants)
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
            result["supervisor_exit_s"] = round(time.monotonic() - t_stop, 3)
            result["exit_code"] = rc
        except subprocess.TimeoutExpired:
            result["supervisor_exit_s"] = None
            result["exit_code"] = None
        # Everything the supervisor had started must be gone (allow a moment for reaping).
        _gone, alive = psutil.wait_procs(descendants, timeout=5)
        result["all_stopped_s"] = round(time.monotonic() - t_stop, 3) if not alive else None
        time.sleep(0.3)
        leftovers = {p.pid: p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}
        for p in processes_of_data_dir(data_dir, exclude={os.getpid()}):
            leftovers.setdefault(p.pid, p)
        result["leftovers"] = []
        for p in leftovers.values():
            try:
                result["leftovers"].append({"pid": p.pid, "cmd": " ".join(p.cmdline())[:120]})
            except psutil.Error:
                continue
        # Clean up whatever this run left behind, by pid only.
        for p in leftovers.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=2)

    log_text = err_path.read_text(encoding="utf-8", errors="replace")
    result["milestones_s"] = log_milestones(log_text, spawn_epoch)
    result["log_problems"] = problem_lines(log_text)
    result["log_lines"] = len(log_text.splitlines())
    result["stderr_log"] = str(err_path)
    return result


def summary(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(vals), 3),
        "min": round(min(vals), 3),
        "max": round(max(vals), 3),
        "n": len(vals),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds; each is one cold and one warm start")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after ready before RSS")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and logs")
    parser.add_argument("--smoke", action="store_true", help="one cold run, 0.5 s settle: checks it runs")
    args = parser.parse_args()
    kinds: tuple[str, ...] = ("cold", "warm")
    if args.smoke:  # the cold start is the longer one and the one that seeds
        args.runs, args.settle, kinds = 1, 0.5, ("cold",)

    if not ANJU.exists():
        print(f"no anju console script at {ANJU}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="anju-bench-up-"))
    log_dir = root / "logs"
    log_dir.mkdir()
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for i in range(1, args.runs + 1):
            data_dir = root / f"data-{i}"
            data_dir.mkdir()
            for kind in kinds:
                r = one_run(data_dir, kind, args.settle, log_dir, i)
                runs.append(r)
                mem = r.get("memory", {})
                print(
                    f"[{kind} {i}] ready {r['ready_s']} s, with worker {r['ready_with_worker_s']} s, "
                    f"RSS {mem.get('total_rss_mb')} MB, stop {r['supervisor_exit_s']} s, "
                    f"exit {r['exit_code']}, leftovers {len(r['leftovers'])}, "
                    f"log warnings/errors {len(r['log_problems'])}",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    # ---- report ----
    def col(kind: str, key: str) -> list[float | None]:
        return [r.get(key) for r in runs if r["kind"] == kind]

    def mem_col(kind: str, key: str) -> list[float | None]:
        return [r.get("memory", {}).get(key) for r in runs if r["kind"] == kind]

    roles = sorted({role for r in runs for role in r.get("memory", {}).get("per_role", {})})
    report: dict[str, Any] = {"runs": args.runs, "settle_s": args.settle}
    for kind in ("cold", "warm"):
        report[kind] = {
            "ready_s": summary(col(kind, "ready_s")),
            "ready_with_worker_s": summary(col(kind, "ready_with_worker_s")),
            "banner_s": summary(col(kind, "banner_s")),
            "total_rss_mb": summary(mem_col(kind, "total_rss_mb")),
            "total_pss_mb": summary(mem_col(kind, "total_pss_mb")),
            "stop_s": summary(col(kind, "supervisor_exit_s")),
            "all_stopped_s": summary(col(kind, "all_stopped_s")),
            "per_role_rss_mb": {
                role: summary(
                    [
                        r.get("memory", {}).get("per_role", {}).get(role, {}).get("rss_mb")
                        for r in runs
                        if r["kind"] == kind
                    ]
                )
                for role in roles
            },
            "per_role_count": {
                role: sorted(
                    {
                        r.get("memory", {}).get("per_role", {}).get(role, {}).get("count", 0)
                        for r in runs
                        if r["kind"] == kind
                    }
                )
                for role in roles
            },
            "milestones_s": {
                key: summary([r["milestones_s"].get(key) for r in runs if r["kind"] == kind])
                for key in (
                    "first_log",
                    "redis_started",
                    "worker_listening",
                    "scheduler_started",
                    "api_listening",
                )
            },
        }
    report["exit_codes"] = sorted({str(r["exit_code"]) for r in runs})
    report["leftovers"] = [lo for r in runs for lo in r["leftovers"]]
    report["readyz_first_200_bodies"] = sorted({json.dumps(r.get("readyz_first_200_body")) for r in runs})
    report["log_problems"] = sorted({re.sub(r"\d", "#", p)[:200] for r in runs for p in r["log_problems"]})
    report["errors"] = [r["error"] for r in runs if "error" in r]
    report["python"] = platform.python_version()
    report["wall_s"] = round(time.monotonic() - started, 1)

    print()
    warm_runs = args.runs if "warm" in kinds else 0
    print(f"anju up: {args.runs} cold + {warm_runs} warm runs, RSS after {args.settle:g} s settle")
    print(f"{'metric':<34}{'cold median':>12}{'min':>8}{'max':>8}{'warm median':>13}{'min':>8}{'max':>8}")

    def row(label: str, c: dict[str, Any], w: dict[str, Any]) -> None:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        print(
            f"{label:<34}{f(c['median']):>12}{f(c['min']):>8}{f(c['max']):>8}"
            f"{f(w['median']):>13}{f(w['min']):>8}{f(w['max']):>8}"
        )

    cold, warm = report["cold"], report["warm"]
    row("spawn -> /readyz 200 (s)", cold["ready_s"], warm["ready_s"])
    row("spawn -> /readyz workers>=1 (s)", cold["ready_with_worker_s"], warm["ready_with_worker_s"])
    row("spawn -> banner printed (s)", cold["banner_s"], warm["banner_s"])
    for key, value in cold["milestones_s"].items():
        row(f"  log: {key} (s)", value, warm["milestones_s"][key])
    row("total RSS (MB)", cold["total_rss_mb"], warm["total_rss_mb"])
    row("total PSS (MB)", cold["total_pss_mb"], warm["total_pss_mb"])
    for role in roles:
        counts = cold["per_role_count"][role]
        row(
            f"  RSS {role} x{'/'.join(map(str, counts))} (MB)",
            cold["per_role_rss_mb"][role],
            warm["per_role_rss_mb"][role],
        )
    row("SIGINT -> supervisor exited (s)", cold["stop_s"], warm["stop_s"])
    row("SIGINT -> all descendants gone (s)", cold["all_stopped_s"], warm["all_stopped_s"])
    print(f"exit codes: {report['exit_codes']}; leftover processes: {len(report['leftovers'])}")
    print(f"first 200 /readyz body: {report['readyz_first_200_bodies']}")
    if report["log_problems"]:
        print("log lines at WARNING+ (digits masked):")
        for line in report["log_problems"]:
            print("  " + line)
    if report["errors"]:
        print("errors:", report["errors"])
    print(f"wall time {report['wall_s']} s")
    print("BENCH_UP_READY " + json.dumps(report, ensure_ascii=False))
    failed = bool(report["errors"] or report["leftovers"] or report["exit_codes"] != ["0"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
