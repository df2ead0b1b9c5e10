"""Chat latency while an admin uploads bombs and a large real document (issue 19, finding 3).

    .venv/bin/python bench/upload_bomb.py [--phase-seconds 20] [--data-dir DIR] [--redis-url URL]
    .venv/bin/python -m bench.upload_bomb --smoke --redis-url URL   # checks it runs (~30 s)

--smoke: a temporary data folder and a free port; 1 s phases; the upload limits lowered (4 MB
unzipped, 5 MB a PDF stream, a 2 s parse budget) so that bombs of 8-12 MB are refused by the same
checks and the slow PDF, one page of it, is stopped by the same budget; the large document 10,000
characters and 2 PDF pages.

Builds a data folder with the demo company and the demo knowledge base (indexed in this process),
then starts the real service as its own processes — `anju serve` (the API) and `anju worker` (rq,
at its production CPU priority) — and sends POST /api/chat one turn after another, all the time,
as residents would (every 50th turn an emergency: each opens a case whose SLA timers and duty
chain are worker jobs too). Phase by phase it reports p50/p95/max chat
latency and any non-200:

* baseline: no upload;
* docx bomb: a 200 KB docx that unzips to 200 MB (finding 3's), uploaded every 2 s;
* xlsx bomb: a 300 KB FAQ table whose sharedStrings unzip to 300 MB (finding 3's 3 MB xlsx), as a
  knowledge upload and as a residents import, every 2 s;
* pdf bomb: a 200 KB PDF whose content stream inflates to 200 MB, and a PDF of text operators
  that costs pypdf ~25 s a page (the worker's CPU budget stops it), each uploaded once;
* large document: the five real standards of ../shared/corpus repeated into a ~600,000-character
  docx (a 300-page book) and a 150-page PDF, parsed by the worker and indexed (some 3,000 passages
  embedded).

Each bomb phase lasts at least --phase-seconds and until the worker has finished with what was
uploaded (at most --phase-timeout). Also: the API's RSS before and after, the work-horses' peak
RSS, what each upload answered and what became of it. Prints a table and one JSON line
(BENCH_UPLOAD_BOMB {...}).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.corpus import corpus_files  # noqa: E402  (after sys.path: run as a script too)
from tests import bombs  # noqa: E402  (after the path: the bombs are the tests' own)

QUESTIONS = [
    "物业费怎么交",
    "小区保安多久巡逻一次",
    "快递放在哪里",
    "装修需要办什么手续",
    "停车费多少钱一个月",
]
EMERGENCY = "电梯里有人被困住了，快来人"


SMOKE_LIMITS = {  # the service's upload limits in a smoke run; its bombs are larger
    "ANJU_UPLOAD_MAX_UNZIPPED_BYTES": str(4 * 1024 * 1024),
    "ANJU_UPLOAD_MAX_PDF_STREAM_BYTES": str(5 * 1024 * 1024),  # above the slow PDF's 4 MB
    "ANJU_UPLOAD_PARSE_TIMEOUT_SECONDS": "2",
}


def prepare(data_dir: Path, redis_url: str) -> None:
    """A fresh data folder: migrated, demo data, the demo knowledge base indexed."""
    shutil.rmtree(data_dir, ignore_errors=True)
    os.environ["ANJU_DATA_DIR"] = str(data_dir)
    os.environ["ANJU_REDIS_URL"] = redis_url
    import redis

    from anju.demo import seed_demo
    from anju.migrate import upgrade
    from core.db import get_database
    from core.settings import Settings
    from knowledge.service import rebuild_index

    redis.Redis.from_url(redis_url).flushdb()
    settings = Settings()
    upgrade(settings)
    with get_database(settings).session() as session:
        seed_demo(session, residents_per_community=8)
    rebuild_index(settings, company_id=1)
    get_database(settings).dispose()


def large_documents(chars: int = 600_000, pdf_pages: int = 150) -> tuple[bytes, bytes, int]:
    """(docx, pdf, characters) of the real standards, repeated into a large book."""
    texts = [p.read_text(encoding="utf-8") for p in corpus_files()]
    lines: list[str] = []
    volume = 0
    while sum(map(len, lines)) < chars:
        volume += 1
        lines.append(f"# 物业服务标准汇编 第 {volume} 册")
        for text in texts:
            lines.extend(f"第{volume}册 {line}" if line.strip() else line for line in text.splitlines())
    document = bombs.docx(lines, title="物业服务标准汇编")
    # 150 pages of 45 lines; long lines wrapped at 40 characters
    wrapped = [line[i : i + 40] for line in lines[:4000] for i in range(0, max(len(line), 1), 40)]
    pages = [wrapped[i : i + 45] for i in range(0, min(len(wrapped), pdf_pages * 45), 45)]
    return document, bombs.pdf(pages), sum(map(len, lines))


class Chatter(threading.Thread):
    """One resident after another, all the time: (sent at, latency ms, status, action)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.samples: list[tuple[float, float, int, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while not self.stopping.is_set():
                n += 1
                text = EMERGENCY if n % 50 == 0 else QUESTIONS[n % len(QUESTIONS)]
                body = {"community": "cuihu", "session_id": f"bench-{uuid.uuid4().hex}", "text": text}
                started = time.time()
                t0 = time.perf_counter()
                try:
                    response = client.post("/api/chat", json=body)
                    status = response.status_code
                    action = response.json().get("action", "") if status == 200 else ""
                except httpx.HTTPError as exc:
                    status, action = 0, type(exc).__name__
                self.samples.append((started, (time.perf_counter() - t0) * 1000, status, action))

    def between(self, start: float, end: float) -> list[tuple[float, float, int, str]]:
        return [s for s in self.samples if start <= s[0] < end]


class HorseWatch(threading.Thread):
    """The largest RSS any child of the worker (its work-horses) reached."""

    def __init__(self, worker_pid: int) -> None:
        super().__init__(daemon=True)
        self.worker = psutil.Process(worker_pid)
        self.peak_mb = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                for child in self.worker.children(recursive=True):
                    try:
                        self.peak_mb = max(self.peak_mb, child.memory_info().rss / 2**20)
                    except psutil.Error:
                        continue
            except psutil.Error:
                return
            time.sleep(0.1)


def summary(samples: list[tuple[float, float, int, str]]) -> dict[str, Any]:
    latencies = sorted(s[1] for s in samples if s[2] == 200)
    errors = [s[2] or s[3] for s in samples if s[2] != 200]
    if not latencies:
        return {"turns": 0, "errors": len(errors)}
    return {
        "turns": len(samples),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 1),
        "max_ms": round(latencies[-1], 1),
        "errors": len(errors),
        "error_kinds": sorted({str(e) for e in errors}),
        "emergencies": sum(1 for s in samples if s[3] == "emergency"),
    }


def wait_ready(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not start")


def run(args: argparse.Namespace) -> dict[str, Any]:
    prepare(args.data_dir, args.redis_url)
    scale = 25 if args.smoke else 1  # the smoke run's bombs: 8, 12 and 8 MB against its lower limits
    docx_large, pdf_large, large_chars = large_documents(10_000, 2) if args.smoke else large_documents()
    bomb_docx = bombs.zero_bomb(
        bombs.docx(["# 装修管理规定", "押金 3000 元。"]), "word/document.xml", 200 * bombs.MB // scale
    )
    bomb_xlsx = bombs.shared_strings_bomb(300 * bombs.MB // scale)
    bomb_pdf = bombs.pdf_bomb(200 * bombs.MB // scale)
    slow_pdf = bombs.slow_pdf(pages=1 if args.smoke else 20)
    env = {**os.environ, "ANJU_DATA_DIR": str(args.data_dir), "ANJU_REDIS_URL": args.redis_url,
           "ANJU_PORT": str(args.port), "ANJU_LOG_LEVEL": "ERROR", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "ANJU_CHAT_PER_ADDRESS_PER_MINUTE": "1000000",
           "ANJU_WARM_ASSISTANT": "true", **(SMOKE_LIMITS if args.smoke else {})}  # fmt: skip
    base = f"http://127.0.0.1:{args.port}"
    api = subprocess.Popen([sys.executable, "-m", "anju.cli", "serve"], env=env, cwd=ROOT)
    worker = subprocess.Popen([sys.executable, "-m", "anju.cli", "worker"], env=env, cwd=ROOT)
    chatter = Chatter(base)
    watch = HorseWatch(worker.pid)
    phases: list[dict[str, Any]] = []
    try:
        wait_ready(base)
        admin = httpx.Client(base_url=base, timeout=600)
        token = admin.post("/api/auth/token", json={"username": "admin", "password": "anju-demo-2026"})
        admin.headers["Authorization"] = f"Bearer {token.raise_for_status().json()['access_token']}"
        with httpx.Client(base_url=base, timeout=60) as warm:  # models and index loaded
            for text in QUESTIONS * (1 if args.smoke else 6):
                warm.post(
                    "/api/chat", json={"community": "cuihu", "session_id": uuid.uuid4().hex, "text": text}
                )
        time.sleep(0.2 if args.smoke else 2)
        rss_before = psutil.Process(api.pid).memory_info().rss / 2**20
        chatter.start()
        watch.start()

        def upload(name: str, content: bytes, path: str = "/api/knowledge/sources") -> dict[str, Any]:
            t0 = time.perf_counter()
            response = admin.post(path, files={"file": (name, content)})
            answer: dict[str, Any] = {"file": name, "bytes": len(content), "status": response.status_code,
                                      "ms": round((time.perf_counter() - t0) * 1000, 1)}  # fmt: skip
            body = response.json()
            if response.status_code >= 400:
                answer["message"] = body["error"]["message"]
            elif "source" in body:
                answer["source_id"] = body["source"]["id"]
            return answer

        def outcome(answer: dict[str, Any], deadline: float) -> None:
            """Wait for the worker; record what became of an accepted upload."""
            if "source_id" not in answer:
                return
            started = time.perf_counter()
            while True:
                source = admin.get(f"/api/knowledge/sources/{answer['source_id']}").json()
                if source["status"] != "parsing" or time.time() > deadline:
                    break
                time.sleep(0.5)
            print(
                f"  {answer['file']}: {source['status']} after {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            answer["worker"] = source["status"]
            answer["worker_s"] = round(time.perf_counter() - started, 1)
            if source["error"]:
                answer["reason"] = source["error"]
            else:
                answer["passages"] = source["passage_count"]

        def phase(name: str, act: Any) -> None:
            started = time.time()
            deadline = started + args.phase_timeout
            uploads: list[dict[str, Any]] = act()
            for answer in uploads:
                outcome(answer, deadline)
            if name == "large document":  # until the new index answers
                while admin.get("/api/knowledge/index").json()["stale"] and time.time() < deadline:
                    time.sleep(1)
                indexed = admin.get("/api/knowledge/index").json()
                uploads.append({"index": indexed["index"], "stale": indexed["stale"]})
            remaining = args.phase_seconds - (time.time() - started)
            if remaining > 0:
                time.sleep(remaining)
            ended = time.time()
            phases.append({"phase": name, "seconds": round(ended - started, 1), "load": os.getloadavg(),
                           "chat": summary(chatter.between(started, ended)), "uploads": uploads})  # fmt: skip
            print(f"{name:<16} {phases[-1]['chat']}", flush=True)

        def repeated(*files: tuple[str, bytes, str]) -> list[dict[str, Any]]:
            answers: list[dict[str, Any]] = []
            deadline = time.time() + args.phase_seconds
            while time.time() < deadline:
                for name, content, path in files:
                    answers.append(upload(name, content, path))
                time.sleep(2)
            # one line per kind of answer, with how many times and the slowest
            folded: dict[tuple[str, int], dict[str, Any]] = {}
            for a in answers:
                entry = folded.setdefault((a["file"], a["status"]), {**a, "times": 0, "max_ms": 0.0})
                entry["times"] += 1
                entry["max_ms"] = max(entry["max_ms"], a["ms"])
            return list(folded.values())

        phase("baseline", lambda: (time.sleep(args.phase_seconds), [])[1])
        phase("docx bomb", lambda: repeated(("装修管理规定.docx", bomb_docx, "/api/knowledge/sources")))
        phase("xlsx bomb", lambda: repeated(
            ("常见问题.xlsx", bomb_xlsx, "/api/knowledge/sources"),
            ("住户名单.xlsx", bomb_xlsx, "/api/communities/1/residents/imports")))  # fmt: skip
        phase("pdf bomb", lambda: [upload("压缩炸弹.pdf", bomb_pdf), upload("十万指令.pdf", slow_pdf)])
        phase("large document", lambda: [upload("物业服务标准汇编.docx", docx_large),
                                         upload("物业服务标准汇编.pdf", pdf_large)])  # fmt: skip
        phase("after", lambda: (time.sleep(args.phase_seconds), [])[1])
        rss_after = psutil.Process(api.pid).memory_info().rss / 2**20
        admin.close()
    finally:
        chatter.stopping.set()
        watch.stopping.set()
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return {
        "phases": phases,
        "api_rss_mb": {"before": round(rss_before), "after": round(rss_after)},
        "work_horse_peak_rss_mb": round(watch.peak_mb),
        "large_document_chars": large_chars,
        "large_files_bytes": {"docx": len(docx_large), "pdf": len(pdf_large)},
    }


def machine() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # nproc reports that, else

    def out(*cmd: str) -> str:
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, cwd=ROOT, timeout=10, env=env
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": out("git", "rev-parse", "--short", "HEAD"),
        "nproc": out("nproc"),
        "lscpu": out("lscpu").splitlines()[:10],
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--phase-seconds", type=float, default=20)
    parser.add_argument("--phase-timeout", type=float, default=900, help="give up waiting for the worker")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/anju-bench-upload"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--smoke", action="store_true", help="small and short: checks the script runs")
    args = parser.parse_args()
    scratch = None
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="anju-bench-upload-smoke-"))
        args.data_dir, args.phase_seconds, args.phase_timeout = scratch / "data", 1.0, 60.0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args.port = int(s.getsockname()[1])
    try:
        result = {"machine": machine(), **run(args)}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"{'phase':<16}{'turns':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'non-200':>9}")
    for p in result["phases"]:
        c = p["chat"]
        print(f"{p['phase']:<16}{c['turns']:>7}{c.get('p50_ms', '-'):>9}{c.get('p95_ms', '-'):>9}"
              f"{c.get('max_ms', '-'):>9}{c['errors']:>9}")  # fmt: skip
        for u in p["uploads"]:
            print("    ", json.dumps(u, ensure_ascii=False))
    print(f"API RSS {result['api_rss_mb']} MB; work-horse peak {result['work_horse_peak_rss_mb']} MB")
    print("BENCH_UPLOAD_BOMB " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
