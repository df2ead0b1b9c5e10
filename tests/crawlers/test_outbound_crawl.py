"""Crawls aimed inside, as an attacker with an admin account (or a site that redirects) would aim
them: sources that point at loopback, private or metadata addresses in any spelling are refused on
save; a source stored earlier, links on a page, a feed's 302 and robots.txt's redirect are refused
at crawl time; nothing reaches the internal listener and nothing of it shows in 试采集. Demo mode
crawls exactly its own demo site and nothing else of the API."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from sqlalchemy import select

from core.db import get_database
from core.outbound import REFUSED, is_public, literal_ip, outbound_policy
from core.settings import Mode, Settings
from crawlers import service
from crawlers.models import CrawlRun, Source, SourceAuthority, SourceKind
from crawlers.schemas import SourceIn
from org.models import Company
from sentiment.models import Post
from tests.conftest import LiveServer, wait_for
from tests.crawl_site import CrawlSite
from tests.services import allowing

FAST = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "DOWNLOAD_DELAY_JITTER": 0, "RETRY_TIMES": 0}
SECRET = "redis-password=hunter2"
# The generic spider as the attacker configured it: the whole page as the post's text.
WHOLE_PAGE = {
    "list": {"item": "html", "link": "xpath:string(//a/@href)"},
    "detail": {"title": "xpath:string(.)", "content": "xpath:string(.)", "required": ["content"]},
}
INTERNAL_PAGE = f"""<html><body><h1>内部管理页 安居物业</h1><p>{SECRET}</p>
<a href="/secret.html">again</a></body></html>"""


@pytest.fixture
def demo_sqlite(sqlite_settings: Settings) -> Settings:
    from anju.demo import seed_demo

    with get_database(sqlite_settings).session() as session:
        seed_demo(session, residents_per_community=2, knowledge=False)
    return sqlite_settings


def source(key: str, url: str, kind: str = "generic", config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A source as the admin page sends it."""
    return {"key": key, "name": key, "kind": kind, "url": url, "config": config or {}}


def company_id(settings: Settings) -> int:
    with get_database(settings).session() as session:
        return int(session.scalars(select(Company.id)).one())


def stored_before(settings: Settings, *, key: str, url: str, kind: str = "generic",
                  config: dict[str, Any] | None = None) -> int:  # fmt: skip
    """A source row written straight to the database: saved before this check existed, or its
    name resolved to a public address when it was saved and to an internal one now."""
    with get_database(settings).session() as session:
        source = Source(company_id=company_id(settings), key=key, name=key, kind=SourceKind(kind), url=url,
                        authority=SourceAuthority.forum, config=config or {}, enabled=True,
                        interval_minutes=30)  # fmt: skip
        session.add(source)
        session.flush()
        return source.id


def crawl(settings: Settings, source_id: int) -> CrawlRun:
    run = service.run_source(settings=settings, source_id=source_id, overrides=FAST)
    assert isinstance(run, CrawlRun)
    return run


def posts(settings: Settings) -> list[Post]:
    with get_database(settings).session() as session:
        found = list(session.scalars(select(Post)))
        session.expunge_all()
    return found


def internal_spellings(port: int) -> list[str]:
    """Loopback and other internal targets, as an attacker writes them to get past a filter."""
    return [
        f"http://127.0.0.1:{port}/secret.html",
        f"http://2130706433:{port}/secret.html",  # decimal
        f"http://0x7f.1:{port}/secret.html",  # hex, short form
        f"http://127.1:{port}/secret.html",
        f"http://0177.0.0.1:{port}/secret.html",  # octal
        f"http://[::1]:{port}/secret.html",
        f"http://[::ffff:127.0.0.1]:{port}/secret.html",  # IPv4-mapped IPv6
        f"http://localhost:{port}/secret.html",
        f"http://admin.localhost:{port}/secret.html",
        f"http://0.0.0.0:{port}/secret.html",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
        "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6
        "http://10.0.0.5:8000/v1/models",
        "http://192.168.1.1/",
        "http://224.0.0.1/",
    ]


def test_an_admin_cannot_save_a_source_that_points_inside(server: LiveServer) -> None:
    with CrawlSite("generic") as internal, server.login("admin") as admin:
        internal.serve("/secret.html", INTERNAL_PAGE)
        port = port_of(internal)
        for n, url in enumerate([*internal_spellings(port), f"{server.url}/api/communities"]):
            made = admin.post("/api/crawl/sources", json=source(f"x{n}", url, config=WHOLE_PAGE))
            assert made.status_code == 422, (url, made.text)
            assert made.json()["error"]["message"] == f"url 有误：{REFUSED}", url
        public = "https://news.example.com/"  # a name that does not resolve here: checked again at crawl time
        inside_start = {**WHOLE_PAGE, "start_urls": [f"http://127.0.0.1:{port}/secret.html"]}
        made = admin.post("/api/crawl/sources", json=source("s", public, config=inside_start))
        assert (
            made.status_code == 422
            and made.json()["error"]["message"] == f"config.start_urls 有误：{REFUSED}"
        )
        proxied = {**WHOLE_PAGE, "proxy": "http://127.0.0.1:6379"}
        made = admin.post("/api/crawl/sources", json=source("p", public, config=proxied))
        assert made.status_code == 422 and made.json()["error"]["message"] == f"config.proxy 有误：{REFUSED}"
        yaml = f"sources:\n  - {{key: y, name: y, kind: rss, url: 'http://[::1]:{port}/feed.xml'}}\n"
        imported = admin.post("/api/crawl/sources/import", content=yaml.encode())
        assert imported.status_code == 422
        assert imported.json()["error"]["message"] == f"第 1 个采集源的 url 有误：{REFUSED}"
        # An update of an existing source is checked the same way.
        made = admin.post(
            "/api/crawl/sources", json={"key": "ok", "name": "ok", "kind": "rss", "url": public}
        )
        assert made.status_code == 201
        moved = admin.put("/api/crawl/sources/ok", json={"key": "ok", "name": "ok", "kind": "rss",
                                                         "url": "http://169.254.169.254/"})  # fmt: skip
        assert moved.status_code == 422
        assert [s["url"] for s in admin.get("/api/crawl/sources").json()] == [public]
    assert internal.paths() == []  # nothing was even asked


def test_a_preview_never_fetches_or_shows_an_internal_page(demo_sqlite: Settings, start_worker: Any) -> None:
    with CrawlSite("generic") as internal, CrawlSite("generic") as site:
        internal.serve("/secret.html", INTERNAL_PAGE)
        port = port_of(internal)
        links = [*internal_spellings(port)[:10], "file:///etc/passwd", "/ok.html"]
        host = socket.gethostname()  # on most machines /etc/hosts points it at 127.0.x.1
        name_inside = resolves_inside(host)
        if name_inside:  # a name only DNS knows is internal: GuardedResolver refuses it
            links.append(f"http://{host}:{port}/secret.html")
        rows = "".join(f'<li class="i"><a href="{link}">帖子</a></li>' for link in links)
        site.serve("/list.html", f"<html><body><ul>{rows}</ul></body></html>")
        site.serve(
            "/ok.html",
            "<html><body><h1>安居物业电梯又坏了</h1><p>翠湖花园3栋电梯停了两天。</p></body></html>",
        )
        settings = allowing(demo_sqlite.model_copy(update={"crawl_polite": False}), site.url())
        listing = {"start_urls": ["/list.html"], "list": {"item": "li.i", "link": "a::attr(href)"},
                   "detail": {"title": "h1::text", "content": "p::text"}}  # fmt: skip
        start_worker(settings)
        with LiveServer(settings) as live, live.login("admin") as admin:
            made = admin.post("/api/crawl/sources", json=source("links", site.url("/"), config=listing))
            assert made.status_code == 201, made.text
            stored_before(settings, key="inside", url=internal.url("/secret.html"), config=WHOLE_PAGE)
            previews = {}
            for key in ("inside", "links"):
                assert admin.post(f"/api/crawl/sources/{key}/preview").status_code == 202

                def finished(key: str = key) -> dict[str, Any] | None:
                    state = admin.get(f"/api/crawl/sources/{key}/preview").json()
                    return state if state["status"] in ("finished", "failed") else None

                previews[key] = wait_for(finished, timeout=120, message=f"the preview of {key}")
    inside, linked = previews["inside"], previews["links"]
    assert inside["status"] == "finished" and inside["posts"] == [] and inside["pages"] == 0
    assert any("内网或本机地址" in note and "已拒绝" in note for note in inside["notes"]), inside["notes"]
    assert [p["url"] for p in linked["posts"]] == [site.url("/ok.html")]  # the crawl itself works
    refused = next(n for n in linked["notes"] if "内网或本机地址" in n)
    assert refused.startswith(f"{11 + name_inside} 个请求")  # ten spellings, file://, the name
    assert SECRET not in f"{inside} {linked}"
    assert internal.paths() == []  # not one request reached the internal listener


def test_a_feed_that_redirects_inside_and_a_robots_txt_that_does_are_not_followed(
    demo_sqlite: Settings,
) -> None:
    with CrawlSite("rss", feed="xizi_minsheng.rss.xml") as internal, CrawlSite("rss", feed="x") as site:
        site.redirect("/robots.txt", internal.url("/robots.txt"))
        site.redirect("/feed.xml", internal.url("/feed.xml"))
        site.redirect("/feed2.xml", f"http://localhost:{port_of(internal)}/feed.xml")
        settings = allowing(demo_sqlite, site.url())
        with get_database(settings).session() as session:
            saved, _ = service.save_source(session=session, company_id=company_id(settings),
                                            data=SourceIn(key="feed", name="feed", kind="rss",
                                                          url=site.url("/feed.xml")),
                                            policy=outbound_policy(settings))  # fmt: skip
            first = saved.id
        run = crawl(settings, first)
        again = crawl(settings, stored_before(settings, key="feed2", kind="rss", url=site.url("/feed2.xml")))
    assert internal.paths() == []
    assert run.stats["anju/outbound_refused"] == 1  # the feed's 302
    assert run.stats["anju/outbound_refused_robotstxt"] == 1  # robots.txt's 302
    assert again.stats["anju/outbound_refused"] == 1  # the 302 to a localhost name
    assert run.stats["downloader/response_status_count/302"] == 2  # the two 302s, nothing after them
    assert "response_received_count" not in run.stats
    assert posts(settings) == []


def test_demo_mode_crawls_its_own_demo_site_and_nothing_else_of_the_api(demo_sqlite: Settings) -> None:
    from anju.demo import seed_demo_opinion

    live = LiveServer(demo_sqlite)
    # What the worker of `anju up` sees: the API on this port, demo mode.
    crawler = demo_sqlite.model_copy(update={"port": live.port})
    assert crawler.mode is Mode.demo and crawler.base_url == live.url
    with live:
        with get_database(crawler).session() as session:
            seed_demo_opinion(session, company_id(crawler), live.url)
            demo_news = session.scalar(select(Source.id).where(Source.key == "demo-news"))
        assert demo_news is not None
        news = crawl(crawler, demo_news)
        api = crawl(crawler, stored_before(crawler, key="api", url=f"{live.url}/api/communities",
                                           config=WHOLE_PAGE))  # fmt: skip
        dotted = crawl(crawler, stored_before(crawler, key="dots", url=f"{live.url}/demo-site/%2e%2e/readyz",
                                              config=WHOLE_PAGE))  # fmt: skip
        production = crawler.model_copy(update={"mode": Mode.production})
        elsewhere = crawl(production, demo_news)
    assert news.stats["response_received_count"] >= 1 and "anju/outbound_refused" not in news.stats
    assert news.stats.get("anju/stored", 0) >= 1, news.stats
    for refused in (api, dotted, elsewhere):
        assert refused.stats["anju/outbound_refused"] == 1 and "response_received_count" not in refused.stats


def port_of(site: CrawlSite) -> int:
    return int(site.url().rsplit(":", 1)[1].strip("/"))


def resolves_inside(name: str) -> bool:
    try:
        found = literal_ip(socket.gethostbyname(name))
    except OSError:
        return False
    return found is not None and not is_public(found)
