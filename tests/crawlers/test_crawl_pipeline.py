"""Crawling end to end: configured sources crawl the saved pages on a local server, posts about the
company are stored once (scored, grouped, graded), politeness and bad pages are handled, runs
are recorded, and alerts reach robots and mailboxes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from core.db import get_database
from core.outbound import outbound_policy
from core.settings import Settings
from crawlers import service
from crawlers.models import CrawlRun, RunStatus
from crawlers.schemas import SourceIn
from org.models import Company
from sentiment.models import Alert, AlertChannel, AlertRoute, Event, Post
from tests.conftest import ROOT, settings_env, wait_for
from tests.crawl_site import CrawlSite
from tests.mailbox import Mailbox
from tests.robots import FakeRobot
from tests.services import allowing

FAST = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "DOWNLOAD_DELAY_JITTER": 0, "RETRY_TIMES": 2}

GENERIC = {
    "start_urls": ["/news/index.html"],
    "max_age_days": 3650,  # the saved pages are dated November 2026
    "list": {"item": "ul.news-list > li.news-item", "link": "a.news-title::attr(href)",
             "date": "span.news-date::text", "next": "div.pager a.next::attr(href)"},
    "detail": {"title": "h1.article-title::text", "published": "div.article-meta span.pub-time::text",
               "author": "div.article-meta span.author::text", "content": "div.article-content p::text",
               "required": ["title", "published", "content"]},
}  # fmt: skip

DISCUZ = {
    "start_urls": ["/forum-12-1.html"],
    "max_age_days": 3650,
    "list": {"item": "tbody[id^=normalthread_]", "link": "a.s.xst::attr(href)",
             "date": "td.by em span span::attr(title) | td.by em span::text",
             "replies": "td.num a.xi2::text", "views": "td.num em::text", "next": "a.nxt::attr(href)"},
    "detail": {"title": "#thread_subject::text",
               "published": "xpath:(//em[starts-with(@id,'authorposton')])[1]/span/@title"
                            " | xpath:(//em[starts-with(@id,'authorposton')])[1]/text()",
               "content": "xpath:(//td[starts-with(@id,'postmessage_')])[1]//text()",
               "required": ["title", "content"]},
}  # fmt: skip


def company_id(settings: Settings) -> int:
    with get_database(settings).session() as session:
        return int(session.scalars(select(Company.id)).one())


def add_source(settings: Settings, **fields: Any) -> int:
    data = SourceIn.model_validate({"name": fields.get("key", "src"), **fields})
    with get_database(settings).session() as session:
        source, _ = service.save_source(
            session=session, company_id=company_id(settings), data=data, policy=outbound_policy(settings)
        )
        return source.id


def crawl(settings: Settings, source_id: int, **overrides: Any) -> CrawlRun:
    run = service.run_source(settings=settings, source_id=source_id, overrides={**FAST, **overrides})
    assert isinstance(run, CrawlRun)
    return run


def stored(settings: Settings) -> dict[str, Post]:
    with get_database(settings).session() as session:
        posts = list(session.scalars(select(Post)))
        session.expunge_all()
    return {p.url.rsplit("/", 1)[-1]: p for p in posts}


@pytest.fixture
def demo_sqlite(sqlite_settings: Settings) -> Settings:
    from anju.demo import seed_demo

    with get_database(sqlite_settings).session() as session:
        seed_demo(session, residents_per_community=2, knowledge=False)
    return sqlite_settings


def test_a_news_site_crawl_keeps_our_posts_obeys_robots_and_skips_broken_pages(demo: Settings) -> None:
    with CrawlSite("generic") as site:
        allowed = allowing(demo, site.url())
        source_id = add_source(allowed, key="binjiang-news", kind="generic", url=site.url("/"),
                               authority="media", config=GENERIC, city="武汉")  # fmt: skip
        run = crawl(allowed, source_id)
        assert "/news/draft/1206.html" not in site.paths()  # robots.txt: Disallow /news/draft/
    assert run.status is RunStatus.finished and run.error is None
    stats = run.stats
    assert stats["robotstxt/forbidden"] == 1
    assert stats["anju/generic/skipped_malformed"] == 2  # 1204 cut off, 1205 empty
    assert stats["anju/stored"] == 2 and stats["anju/irrelevant"] == 1
    posts = stored(demo)
    assert set(posts) == {"1201.html", "1202.html"}  # 1203 (a market) is not about us
    fee = posts["1202.html"]
    # a flat report of a fee dispute: the reporter's attitude is neutral (issue 20); its risk comes
    # from what it reports, not from its tone
    assert fee.sentiment == "neu" and "安居物业" in fee.matched
    assert fee.published_at is not None and fee.published_at.isoformat().startswith("2026-11-23T01:05")
    assert fee.event_id is not None
    with get_database(demo).session() as session:
        assert session.scalar(select(func.count(Event.id))) == 2  # two stories, two events
    assert service.run_summary(run) == {"pages": 7, "stored": 2, "skipped": 2}


def test_the_next_run_reads_only_new_pages_and_stores_nothing_twice(demo_sqlite: Settings) -> None:
    with CrawlSite("generic") as site:
        allowed = allowing(demo_sqlite, site.url())
        source_id = add_source(allowed, key="news", kind="generic", url=site.url("/"), config=GENERIC)
        crawl(allowed, source_id)
        first = len(site.paths())
        second = crawl(allowed, source_id)
        again = site.paths()[first:]
    # The stored and the irrelevant pages are not fetched again; the list is, and the broken
    # pages are tried again (they may be fixed).
    assert second.stats["anju/seen_skipped"] == 3
    assert "/news/2026/11/1202.html" not in again and "/news/index.html" in again
    assert second.stats.get("anju/stored", 0) == 0
    assert len(stored(demo_sqlite)) == 2


def test_gb18030_forum_pages_are_decoded_and_judged(demo_sqlite: Settings) -> None:
    with CrawlSite("forum_gbk") as site:
        allowed = allowing(demo_sqlite, site.url())
        source_id = add_source(allowed, key="rongcheng-bbs", kind="generic", url=site.url("/"),
                               config=DISCUZ, city="成都")  # fmt: skip
        run = crawl(allowed, source_id)
    posts = stored(demo_sqlite)
    assert {"thread-88321-1-1.html", "thread-88295-1-1.html"} <= set(posts)
    assert "thread-88307-1-1.html" not in posts  # appliance repair, not about us
    fee = posts["thread-88321-1-1.html"]
    assert fee.title == "锦江苑物业费涨价，大家交了没？" and "1.8涨到2.3" in fee.text
    assert fee.comments == 3 and fee.views == 268
    assert run.stats.get("anju/generic/skipped_malformed", 0) == 0


def test_busy_and_oversized_pages_retry_or_are_dropped_and_the_run_goes_on(demo_sqlite: Settings) -> None:
    with CrawlSite("generic") as site:
        site.fail("/news/2026/11/1202.html", status=503, times=1)
        site.fail("/news/2026/11/1201.html", status=429, times=5)  # more than the retries
        site.big("/news/2026/11/1203.html", 64 * 1024)
        allowed = allowing(demo_sqlite, site.url())
        source_id = add_source(allowed, key="news", kind="generic", url=site.url("/"), config=GENERIC)
        run = crawl(allowed, source_id, DOWNLOAD_MAXSIZE=32 * 1024)
        hits = site.paths()
    assert hits.count("/news/2026/11/1202.html") == 2  # one 503, then the page
    assert hits.count("/news/2026/11/1201.html") == 3  # the first try and two retries, then given up
    assert run.stats["retry/max_reached"] == 1
    assert set(stored(demo_sqlite)) == {"1202.html"}
    assert run.status is RunStatus.finished


def test_a_feed_crawl_groups_the_same_story_and_alerts_robots_and_mail_once(
    demo_sqlite: Settings, start_worker: Any
) -> None:
    company = company_id(demo_sqlite)
    with (
        FakeRobot(dingtalk_secret="SECdemo") as robots,
        Mailbox() as mailbox,
        CrawlSite("rss", feed="xizi_minsheng.rss.xml") as site,
    ):
        settings = allowing(demo_sqlite.model_copy(update={"smtp_url": mailbox.url}), robots.url("wecom"),
                            mailbox.url, site.url())  # fmt: skip
        with get_database(settings).session() as session:
            session.add_all([
                AlertRoute(company_id=company, name="品牌部钉钉群", channel=AlertChannel.dingtalk,
                           target=robots.url("dingtalk", "pr"), secret="SECdemo", worst_grade=4),
                AlertRoute(company_id=company, name="总经理邮箱", channel=AlertChannel.email,
                           target="gm@anju.example", worst_grade=2),
            ])  # fmt: skip
        start_worker(settings)
        source_id = add_source(settings, key="xizi", kind="rss", url=site.url("/rss/community.xml"),
                               authority="media", city="杭州")  # fmt: skip
        run = crawl(settings, source_id)
        assert run.stats["anju/stored"] == 3  # 8801, 8797, 8760: all 翠湖花园
        with get_database(settings).session() as session:
            alerts = list(session.scalars(select(Alert)))
        assert alerts, "a graded event raises an alert"
        robots.wait_for(len(alerts), timeout=20)
        crawl(settings, source_id)  # nothing new: no alert again
    with get_database(settings).session() as session:
        assert session.scalar(select(func.count(Alert.id))) == len(alerts)
    message = robots.messages[0]
    assert message.kind == "dingtalk" and "sign" in message.query
    assert "舆情" in message.body["markdown"]["title"]
    assert "翠湖花园" in message.body["markdown"]["text"]
    severe = [a for a in alerts if a.grade <= 2]
    assert len(mailbox.mails) == len(severe)
    if severe:
        assert mailbox.recipients[0] == ["gm@anju.example"]


def test_anju_crawl_runs_one_source_from_the_command_line(demo_sqlite: Settings) -> None:
    with CrawlSite("generic") as site:
        allowed = allowing(demo_sqlite, site.url())
        add_source(allowed, key="news", kind="generic", url=site.url("/"), config=GENERIC)
        env = settings_env(allowed) | {"ANJU_CRAWL_POLITE": "false"}
        done = subprocess.run([sys.executable, "-m", "anju.cli", "crawl", "news"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "入库 2" in done.stdout and "跳过 2" in done.stdout
        dry = subprocess.run([sys.executable, "-m", "anju.cli", "crawl", "news", "--dry-run"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "共抓到" in dry.stdout
        unknown = subprocess.run([sys.executable, "-m", "anju.cli", "crawl", "nope"], env=env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
    assert unknown.returncode == 1 and "没有采集源「nope」" in unknown.stderr


def test_crawls_run_as_jobs_once_per_source(demo_sqlite: Settings, start_worker: Any) -> None:
    from crawlers.tasks import queue_crawl

    with CrawlSite("generic") as site:
        settings = allowing(demo_sqlite.model_copy(update={"crawl_polite": False}), site.url())
        source_id = add_source(settings, key="news", kind="generic", url=site.url("/"), config=GENERIC)
        with get_database(settings).session() as session:
            assert service.due_sources(session=session) == [source_id]  # never run yet
        # Asked twice (the schedule and a "run now" click) before a worker is free: one job.
        assert queue_crawl(source_id=source_id, settings=settings) == queue_crawl(
            source_id=source_id, settings=settings
        )
        assert redis.Redis.from_url(settings.redis_url or "").llen("rq:queue:low") == 1
        start_worker(settings)

        def finished() -> bool:
            with get_database(settings).session() as session:
                status = session.scalar(select(CrawlRun.status).where(CrawlRun.source_id == source_id))
            return status in {RunStatus.finished, RunStatus.failed}

        wait_for(finished, timeout=90, message="the crawl job to finish")
    assert set(stored(settings)) == {"1201.html", "1202.html"}
    with get_database(settings).session() as session:
        assert service.due_sources(session=session) == []  # ran just now; due again in 30 minutes


def test_sources_import_from_yaml_all_or_nothing(demo_sqlite: Settings) -> None:
    from crawlers.errors import BadSourceFile

    good = """
sources:
  - key: cuihu-tieba
    name: 翠湖花园吧
    kind: tieba
    url: https://tieba.baidu.com/
    authority: forum
    community: 翠湖花园
    config: {forums: [翠湖花园], max_pages: 2}
  - key: weibo-anju
    name: 微博搜索 安居物业
    kind: weibo
    url: https://m.weibo.cn/
    authority: self_media
    config: {keywords: [安居物业, 翠湖花园]}
"""
    with get_database(demo_sqlite).session() as session:
        created, updated = service.import_yaml(
            session=session,
            company_id=company_id(demo_sqlite),
            text=good,
            policy=outbound_policy(demo_sqlite),
        )
    assert created == ["cuihu-tieba", "weibo-anju"] and updated == []
    bad = good.replace("kind: weibo", "kind: douyin")
    with (
        pytest.raises(BadSourceFile, match="第 2 个采集源的 kind 有误"),
        get_database(demo_sqlite).session() as s,
    ):
        service.import_yaml(session=s, company_id=company_id(demo_sqlite), text=bad,
                            policy=outbound_policy(demo_sqlite))  # fmt: skip
    with (
        pytest.raises(BadSourceFile, match=r"YAML 格式错误第 \d 行"),
        get_database(demo_sqlite).session() as s,
    ):
        service.import_yaml(session=s, company_id=company_id(demo_sqlite), text="sources:\n  - key: [\n",
                            policy=outbound_policy(demo_sqlite))  # fmt: skip
    with (
        pytest.raises(BadSourceFile, match="没有名为「南山苑」的小区"),
        get_database(demo_sqlite).session() as s,
    ):
        service.import_yaml(session=s, company_id=company_id(demo_sqlite),
                            text=good.replace("community: 翠湖花园", "community: 南山苑"),
                            policy=outbound_policy(demo_sqlite))  # fmt: skip
    with get_database(demo_sqlite).session() as session:
        sources = service.list_sources(session=session, company_id=company_id(demo_sqlite))
        assert [s.key for s in sources] == ["cuihu-tieba", "weibo-anju"]  # the failed imports changed nothing
        assert sources[0].community_id is not None


def test_two_processes_share_one_crawl_through_redis(demo_sqlite: Settings) -> None:
    """crawl_distributed: the run's frontier is in Redis; each page is fetched by one process."""
    import threading

    one_at_a_time = {"CONCURRENT_REQUESTS_PER_DOMAIN": 1, "CONCURRENT_REQUESTS": 1}
    with CrawlSite("generic") as site:
        settings = allowing(demo_sqlite.model_copy(update={"crawl_distributed": True}), site.url())
        for page in ("1201", "1202", "1203", "1204", "1205"):
            site.slow(f"/news/2026/11/{page}.html", 1.0)  # each process has one in flight at a time
        # No article is served before both processes are up (each reads robots.txt first): on a
        # loaded machine the second one may take seconds to start.
        site.hold("/news/2026/", lambda paths: paths.count("/robots.txt") >= 2)
        source_id = add_source(settings, key="news", kind="generic", url=site.url("/"), config=GENERIC)
        with get_database(settings).session() as session:
            source = session.get(service.Source, source_id)
            assert source is not None
            run_id = service.start_run(session=session, source=source).id
        results: dict[str, Any] = {}

        def leader() -> None:
            results["leader"] = service._crawl(settings=settings, spec=spec, run_id=run_id, collect=False,
                                               overrides={**FAST, **one_at_a_time})  # fmt: skip

        with get_database(settings).session() as session:
            spec = service.spec_of(session.get(service.Source, source_id))  # type: ignore[arg-type]
        thread = threading.Thread(target=leader)
        thread.start()
        # The leader's child is forked before this thread opens a session: SQLite state must never
        # cross a fork, and a child forked while another thread had a connection open could lose
        # a commit (seen here: a stored post missing).
        wait_for(lambda: "/robots.txt" in site.paths(), message="the leader's crawl to start")
        joined = service.join_run(settings=settings, source_id=source_id, run_id=run_id,
                                  overrides={**FAST, **one_at_a_time})  # fmt: skip
        thread.join(120)
        hits = site.paths()
    details = [p for p in hits if p.startswith("/news/2026/")]
    assert sorted(details) == sorted(set(details)) and len(details) == 5  # each page once, in all
    other = results["leader"][0]
    # Exactly one of them sent the start requests; both fetched pages from the shared queue.
    assert {other["anju/distributed/first"], joined["anju/distributed/first"]} == {True, False}
    fetched = [s.get("downloader/response_status_count/200", 0) for s in (other, joined)]
    assert min(fetched) >= 2 and sum(fetched) == 8  # 2 × robots.txt, the list, 5 articles
    assert set(stored(settings)) == {"1201.html", "1202.html"}


EVIL_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>某论坛</title><link>https://bbs.example/</link>
<item><title>翠湖花园电梯又坏了，物业不管</title><link>javascript:alert(document.cookie)</link>
  <guid>evil-1</guid><description>翠湖花园3栋电梯停了一天，物业推诿。</description></item>
<item><title>翠湖花园垃圾堆了三天没人清</title><link> JaVaScRiPt:alert(1)</link>
  <guid>evil-2</guid><description>翠湖花园北门垃圾站臭气熏天，投诉无果。</description></item>
<item><title>翠湖花园停车费乱收</title><link>data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==</link>
  <guid>evil-3</guid><description>翠湖花园地下车库临停收费翻倍，业主不满。</description></item>
<item><title>翠湖花园绿化被毁</title><link>https://bbs.example/t/1)[确认收到](https://evil.example/phish</link>
  <guid>evil-4</guid><description>翠湖花园中心花园草坪被挖，业主质疑物业。</description></item>
</channel></rss>"""


def test_feed_links_that_are_not_web_addresses_are_never_stored(demo: Settings) -> None:
    """A feed controls its items' links: javascript: or data: would run in the PR officer's browser
    on 查看原文, and a ")" would add a link of the attacker's to the robot message."""
    with CrawlSite("rss") as site:
        site.serve("/rss/evil.xml", EVIL_FEED, "application/rss+xml; charset=utf-8")
        allowed = allowing(demo, site.url())
        source_id = add_source(allowed, key="evil", kind="rss", url=site.url("/rss/evil.xml"),
                               authority="media", city="杭州")  # fmt: skip
        run = crawl(allowed, source_id)
    assert run.stats["anju/stored"] == 4, run.stats
    with get_database(demo).session() as session:
        urls = {p.external_id: p.url for p in session.scalars(select(Post))}
    assert urls["evil-1"] == urls["evil-2"] == urls["evil-3"] == ""
    assert urls["evil-4"] == "https://bbs.example/t/1%29%5B确认收到%5D%28https://evil.example/phish"
    assert not any("script" in u.lower() or u.startswith("data:") for u in urls.values())
