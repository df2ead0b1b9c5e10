"""The opinion pipeline end to end (issue 6): crawl → judge → score → store → group → grade → alert.

    .venv/bin/python -m bench.crawl_pipeline                 # 3,000 pages, SQLite
    .venv/bin/python -m bench.crawl_pipeline --pages 600     # a shorter run
    .venv/bin/python -m bench.crawl_pipeline --smoke         # 60 pages, 4 stories: checks it runs
    .venv/bin/python -m bench.crawl_pipeline --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What runs: a private redis-server; a fresh migrated database with the demo company (SQLite by
default, or a database ``anju_bench_*`` of our own on the given PostgreSQL server, dropped at the
end); a synthetic news/forum site in this process (list pages of 50 links, or more when
``--pages`` would need more than the 50 list pages a source may follow, then ``--pages`` article
pages of generated Chinese posts: about a third about the demo communities, grouped into
``--stories`` stories with a few severe ones, the rest other cities, other companies and general
news); a group-robot receiver in this process (WeCom protocol, records when each message
arrived); an alert route to it for every grade; and ``--workers`` real ``anju worker`` processes
that deliver the alerts. The crawl itself is ``crawlers.service.run_source`` (scrapy in a forked
child with the Store pipeline), with politeness switched off (no robots delay, no AutoThrottle,
32 concurrent requests) because the site is ours.

Figures:
- **pages/min**: article and list pages fetched and processed, over the crawl's wall time.
  Target >= 1,500.
- **crawl → alert**: for each robot message, from the moment the site served the newest post it
  links to (the post that raised or upgraded the event) to the message's arrival at the robot:
  p50/p95/max.

Prints a markdown row for docs/BENCHMARKS.md and one JSON line ``BENCH_CRAWL_PIPELINE {...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.intake_common import (
    Group,
    RedisServer,
    git_commit,
    install_sigterm,
    machine,
    machine_label,
    percentile,
    today,
)

COMMUNITIES = (("翠湖花园", "杭州", "西湖区"), ("锦江苑", "成都", "锦江区"), ("滨江壹号", "武汉", "江岸区"))
TOPICS = (
    # (topic, severe, sentences)
    (
        "电梯困人",
        True,
        [
            "{c}{b}电梯突然停在两层之间，{n}名业主被困{m}分钟",
            "物业值班电话一直打不通，最后还是消防破门救人",
            "这已经是本月第{k}次，安居物业到底有没有维保",
            "业主群里有人说要拉横幅维权，还有人打了12345",
        ],
    ),
    (
        "高空坠物",
        True,
        [
            "{c}{b}楼上掉下一个花盆，砸在单元门口离孩子不到两米",
            "派出所已经来人，物业说会排查阳台堆放物",
            "这么危险的事安居物业平时怎么不巡查",
            "转给记者看看，必须曝光",
        ],
    ),
    (
        "地库水浸",
        True,
        [
            "{c}地下车库昨夜积水没过脚踝，{n}辆车被泡",
            "排水泵根本没人管，物业电话打了{k}遍",
            "要求安居物业赔偿损失",
            "车主们准备一起去街道反映",
        ],
    ),
    (
        "物业费上涨",
        False,
        [
            "{c}物业费从1.8元涨到2.3元，业主大会都没开",
            "公共收益几年没公示过，安居物业先把账公开",
            "单元门口贴张通知就算数了？",
            "有没有业主愿意一起联名",
        ],
    ),
    (
        "装修噪音",
        False,
        [
            "{c}{b}楼上装修天天早上七点就开始电钻",
            "跟物业反映了{k}次还是没人管",
            "孩子要上网课，真的受不了",
            "安居物业的管家就会说在协调",
        ],
    ),
    (
        "门禁故障",
        False,
        ["{c}东门人脸门禁坏了{k}天", "每次进出都要等保安开门", "物业说配件在路上", "希望安居物业快点修好"],
    ),
    (
        "保安点赞",
        False,
        ["{c}保安大哥帮忙把老人背上{k}楼", "安居物业的服务真的很贴心", "必须点个赞", "谢谢你们"],
    ),
    (
        "停水通知",
        False,
        ["{c}因市政管网改造将停水{k}小时", "安居物业提醒业主提前储水", "恢复时间另行通知", "敬请谅解"],
    ),
)
NOISE = (
    "{city}老旧小区加装电梯今年已完工{k}台，明年继续推进",
    "南宁翠湖花园的鸿景物业被业主投诉停车乱收费",
    "沿江菜市场升级改造完成，新增公平秤和农残快检室",
    "保障性安居工程今年开工{k}套，惠及新市民",
    "{city}地铁{k}号线下月开通，沿线房价引关注",
    "安居乐业，祝大家周末愉快",
    "某小区业主自发组织义诊活动，{k}名老人受益",
)


def generate(pages: int, stories: int, seed: int) -> list[tuple[str, str]]:
    """(title, text) of every article: a third about the demo communities, grouped in stories."""
    rng = random.Random(seed)
    plan = []
    for s in range(stories):
        community, city, district = COMMUNITIES[s % len(COMMUNITIES)]
        topic, _, sentences = TOPICS[s % len(TOPICS)]
        plan.append((community, city, district, topic, sentences, rng.randint(1, 9)))
    articles = []
    for i in range(pages):
        if i % 3 == 0:
            community, city, district, topic, sentences, building = plan[rng.randrange(stories)]
            fill = {"c": community, "b": f"{building}栋", "n": rng.randint(2, 9), "m": rng.randint(10, 50),
                    "k": rng.randint(2, 6)}  # fmt: skip
            picked = rng.sample(sentences, k=rng.randint(2, len(sentences)))
            text = f"{city}{district}" + "。".join(s.format(**fill) for s in picked) + "。"
            title = picked[0].format(**fill)[:30]
        else:
            city = rng.choice(["南宁", "西安", "长沙", "杭州", "成都"])
            text = rng.choice(NOISE).format(city=city, k=rng.randint(2, 300))
            title = text[:20]
        articles.append((title, text))
    return articles


MAX_LIST_PAGES = 50  # what crawlers.service.check_config accepts as a source's max_pages


class Site:
    """The synthetic site: /list/<n>.html (``per_list`` links each, then a next link) and /a/<i>.html."""

    def __init__(self, articles: list[tuple[str, str]]) -> None:
        self.articles = articles
        # 50 links a list page; more when the articles would need more list pages than a source
        # may follow (3,000 pages: 60 a page over 50 list pages).
        self.per_list = max(50, -(-len(articles) // MAX_LIST_PAGES))
        self.list_pages = -(-len(articles) // self.per_list)
        self.served: dict[str, float] = {}
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = site.page(self.path)
                status = 200 if body is not None else 404
                payload = (body or "<h1>404</h1>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if status == 200 and self.path.startswith("/a/"):
                    with site.lock:
                        site.served[self.path] = time.time()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, path: str) -> str | None:
        if path.startswith("/list/"):
            n = int(path[6:].removesuffix(".html"))
            first = n * self.per_list
            if first >= len(self.articles):
                return None
            rows = "".join(
                f'<li class="item"><a class="t" href="/a/{i}.html">{self.articles[i][0]}</a>'
                f'<span class="d">{time.strftime("%Y-%m-%d")}</span></li>'
                for i in range(first, min(first + self.per_list, len(self.articles)))
            )
            more = first + self.per_list < len(self.articles)
            nxt = f'<a class="next" href="/list/{n + 1}.html">下一页</a>' if more else ""
            return f"<html><body><ul>{rows}</ul><div class='pager'>{nxt}</div></body></html>"
        if path.startswith("/a/"):
            i = int(path[3:].removesuffix(".html"))
            if i >= len(self.articles):
                return None
            title, text = self.articles[i]
            stamp = time.strftime("%Y-%m-%d %H:%M")
            return (f"<html><head><meta charset='utf-8'></head><body><h1>{title}</h1>"
                    f"<span class='time'>{stamp}</span><div class='c'><p>{text}</p></div></body></html>")  # fmt: skip
        return None


class Robot:
    """A WeCom group robot: records each message and when it arrived."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        robot = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with robot.lock:
                    robot.messages.append((time.time(), body))
                payload = b'{"errcode":0,"errmsg":"ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/webhook/send?key=bench"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--stories", type=int, default=40)
    parser.add_argument("--workers", type=int, default=1, help="rq workers delivering the alerts")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="60 pages, 4 stories: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.pages, args.stories, args.workers = 60, 4, 1
    install_sigterm()

    import re
    import tempfile

    from sqlalchemy import select

    from core.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="bench-crawl-", dir="/tmp"))
    group = Group(workdir)
    redis_server = RedisServer(group, workdir / "redis")
    pg_name = None
    try:
        redis_server.start()
        database_url = None
        if args.database_url:
            import psycopg

            pg_name = f"anju_bench_{int(time.time())}"
            admin = args.database_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_name}"')
            database_url = args.database_url.rsplit("/", 1)[0] + f"/{pg_name}"
        settings = Settings(data_dir=workdir / "data", redis_url=redis_server.url, database_url=database_url,
                            log_json=False, crawl_polite=False, warm_assistant=False,
                            alert_rate_per_hour=100_000)  # fmt: skip
        import anju.models  # noqa: F401
        from anju.demo import seed_demo
        from anju.migrate import upgrade
        from core.db import get_database
        from core.outbound import outbound_policy
        from crawlers import service
        from crawlers.schemas import SourceIn
        from sentiment.models import Alert, AlertChannel, AlertRoute, Event, Post

        upgrade(settings)
        database = get_database(settings)
        robot = Robot()
        articles = generate(args.pages, args.stories, seed=20261123)
        site = Site(articles)
        # Our own site and robot listen on 127.0.0.1: allowed by host:port, like an operator would.
        allow = [robot.url.split("/")[2], site.url.split("/")[2]]
        settings = settings.model_copy(update={"outbound_allow": allow})
        with database.session() as session:
            company = seed_demo(session, residents_per_community=1, knowledge=False)
            session.add(AlertRoute(company_id=company.id, name="品牌部", channel=AlertChannel.wecom,
                                   target=robot.url, worst_grade=4))  # fmt: skip
            config = {
                "start_urls": ["/list/0.html"], "max_pages": site.list_pages,
                "list": {"item": "li.item", "link": "a.t::attr(href)", "date": "span.d::text",
                         "next": "div.pager a.next::attr(href)"},
                "detail": {"title": "h1::text", "published": "span.time::text", "content": "div.c p::text",
                           "required": ["title", "content"]},
            }  # fmt: skip
            source, _ = service.save_source(session=session, company_id=company.id, data=SourceIn(
                key="bench", name="bench", kind="generic", url=site.url + "/", config=config, authority="media"),
                policy=outbound_policy(settings))  # fmt: skip
            source_id = source.id
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ANJU_")}
        env.update(ANJU_DATA_DIR=str(settings.data_dir), ANJU_REDIS_URL=redis_server.url, ANJU_LOG_JSON="false",
                   ANJU_WARM_ASSISTANT="false", ANJU_ALERT_RATE_PER_HOUR="100000", OMP_NUM_THREADS="1",
                   ANJU_OUTBOUND_ALLOW=",".join(allow))  # fmt: skip
        if database_url:
            env["ANJU_DATABASE_URL"] = database_url
        for n in range(args.workers):
            group.anju(f"worker-{n}", ["worker"], env)
        import redis as redis_client
        from rq import Worker

        connection = redis_client.Redis.from_url(redis_server.url)
        up_by = time.time() + 60
        while Worker.count(connection=connection) < args.workers:  # workers up
            if time.time() > up_by:
                raise RuntimeError(f"{args.workers} rq workers did not register within 60 s")
            time.sleep(0.2)
        started = time.time()
        run = service.run_source(settings=settings, source_id=source_id,
                                 overrides={"LOG_LEVEL": "WARNING", "CONCURRENT_REQUESTS": 32,
                                            "CONCURRENT_REQUESTS_PER_DOMAIN": 32})  # fmt: skip
        wall = time.time() - started
        assert not isinstance(run, list)
        with database.session() as session:
            alerts = len(list(session.scalars(select(Alert.id))))
            events = len(list(session.scalars(select(Event.id))))
            posts = len(list(session.scalars(select(Post.id))))
        deadline = time.time() + 120
        while time.time() < deadline:
            with robot.lock:
                if len(robot.messages) >= alerts:
                    break
            time.sleep(0.2)
        latencies = []
        link = re.compile(r"\]\((http://[^)]+/a/\d+\.html)\)")
        for arrived, body in robot.messages:
            text = body.get("markdown", {}).get("content", "") or body.get("text", {}).get("content", "")
            found = link.search(text)
            if found:
                served = site.served.get("/a/" + found.group(1).rsplit("/a/", 1)[1])
                if served:
                    latencies.append(arrived - served)
        latencies.sort()
        stats = run.stats or {}
        pages = int(stats.get("response_received_count", 0))
        result = {
            "date": today(), "machine": machine(), "commit": git_commit(),
            "database": "postgresql" if database_url else "sqlite", "pages": pages, "wall_s": round(wall, 1),
            "pages_per_min": round(pages / wall * 60), "stored": stats.get("anju/stored", 0),
            "irrelevant": stats.get("anju/irrelevant", 0), "posts": posts, "events": events, "alerts": alerts,
            "robot_messages": len(robot.messages),
            "alert_latency_s": {"n": len(latencies), "p50": round(percentile(latencies, 0.5), 2) if latencies else None,
                                "p95": round(percentile(latencies, 0.95), 2) if latencies else None,
                                "max": round(latencies[-1], 2) if latencies else None},
        }  # fmt: skip
        print(f"| {today()} | {machine_label(result['machine'])} | {result['database']} | {pages} | "
              f"{result['wall_s']} s | **{result['pages_per_min']}** | {posts} posts, {events} events, "
              f"{alerts} alerts | {result['alert_latency_s']['p50']} s | **{result['alert_latency_s']['p95']} s** | "
              f"{result['alert_latency_s']['max']} s |")  # fmt: skip
        print("BENCH_CRAWL_PIPELINE " + json.dumps(result, ensure_ascii=False))
        return 0 if run.error is None else 1
    finally:
        group.stop_all()
        if pg_name and args.database_url:
            import psycopg

            from core.db import get_database as _gd

            with contextlib.suppress(Exception):
                _gd(settings).dispose()
            admin = args.database_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
