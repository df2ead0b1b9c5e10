"""What the admin's settings page relies on: a source that cannot crawl is refused when saved (not
found out at its first run), and 试采集 shows what a source finds now, with what the store would
make of each post, without storing anything or marking any page read."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from core.db import get_database
from core.settings import Settings
from crawlers.middlewares import seen_key
from crawlers.models import CrawlRun
from sentiment.models import Post
from tests.conftest import LiveServer, wait_for
from tests.crawl_site import CrawlSite
from tests.crawlers.test_crawl_pipeline import GENERIC, demo_sqlite  # noqa: F401  (fixture)
from tests.services import allowing


def source(**fields: Any) -> dict[str, Any]:
    return {"key": "s1", "name": "测试源", "kind": "weibo", "url": "https://m.weibo.cn/",
            "authority": "self_media", **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "weibo", "config": {}}, "config.keywords 有误：请至少填写一个搜索关键词"),
        ({"kind": "tousu", "config": {"keywords": ["  "]}}, "config.keywords 有误"),
        ({"kind": "tieba", "config": {"forums": []}}, "config.forums 有误：请至少填写一个贴吧名"),
        ({"kind": "liuyan", "config": {"fid": ""}}, "config.fid 有误"),
        ({"kind": "weibo", "config": {"keywords": ["安居物业"], "max_pages": 500}}, "config.max_pages 有误"),
        ({"kind": "generic", "config": {"list": {"item": "li"}}}, "config.list.link 有误"),
        (
            {"kind": "generic", "config": {"list": {"link": "a::attr(href"}}},
            "config.list.link 选择器无法解析",
        ),
        (
            {
                "kind": "generic",
                "config": {"list": {"link": "a::attr(href)"}, "detail": {"content": "xpath://p["}},
            },
            "config.detail.content 选择器无法解析",
        ),
    ],
)
def test_a_source_that_cannot_crawl_is_refused_with_the_field_named(
    demo_sqlite: Settings,  # noqa: F811
    fields: dict[str, Any],
    message: str,
) -> None:
    with LiveServer(demo_sqlite) as server, server.login("admin") as admin:
        refused = admin.post("/api/crawl/sources", json=source(**fields))
        assert refused.status_code == 422, refused.text
        assert message in refused.json()["error"]["message"]
        assert admin.get("/api/crawl/sources").json() == []

        # The same mistake in a YAML file names the entry; nothing of the file is stored.
        good = "  - {key: ok, name: 好的, kind: rss, url: 'https://news.example.com/feed.xml'}\n"
        kind = fields["kind"]
        bad = f"  - {{key: bad, name: 坏的, kind: {kind}, url: 'https://x.example.com/', config: {{}}}}\n"
        imported = admin.post("/api/crawl/sources/import", content=("sources:\n" + good + bad).encode())
        assert imported.status_code == 422
        assert imported.json()["error"]["message"].startswith("第 2 个采集源的 config.")
        assert admin.get("/api/crawl/sources").json() == []


def test_preview_shows_what_a_source_finds_and_stores_nothing(
    demo_sqlite: Settings,  # noqa: F811
    start_worker: Any,
) -> None:
    with CrawlSite("generic") as site:
        # our own fixture server: allowed by its host:port, nothing else internal
        settings = allowing(demo_sqlite.model_copy(update={"crawl_polite": False}), site.url())
        with LiveServer(settings) as server, server.login("admin") as admin:
            made = admin.post("/api/crawl/sources", json=source(
                key="binjiang", name="滨江民声网", kind="generic", url=site.url("/"), authority="media",
                city="武汉", config=GENERIC))  # fmt: skip
            assert made.status_code == 201, made.text
            assert admin.get("/api/crawl/sources/binjiang/preview").json()["status"] == "none"
            assert admin.post("/api/crawl/sources/nope/preview").status_code == 404

            start_worker(settings)
            asked = admin.post("/api/crawl/sources/binjiang/preview")
            assert asked.status_code == 202 and asked.json()["status"] in ("queued", "started", "finished")

            def finished() -> dict[str, Any] | None:
                state = admin.get("/api/crawl/sources/binjiang/preview").json()
                return state if state["status"] in ("finished", "failed") else None

            state = wait_for(finished, timeout=90, message="the preview job to finish")
            assert state["status"] == "finished" and state["error"] is None, state
            posts = state["posts"]
            by_page = {p["url"].rsplit("/", 1)[-1]: p for p in posts}
            assert set(by_page) == {"1201.html", "1202.html", "1203.html"} and state["pages"] == 7
            fee = by_page["1202.html"]
            assert fee["relevant"] and "安居物业" in fee["matched"] and fee["sentiment"] == "neu"
            assert fee["published_at"].startswith("2026-11-23T01:05") and fee["title"]
            market = by_page["1203.html"]  # news of a market nearby: not about us, not kept
            assert not market["relevant"] and market["sentiment"] is None
            assert "1 个页面被该网站的 robots.txt 禁止采集" in state["notes"]
            assert "2 个页面无法解析（内容为空、被截断，或选择器没有选中内容）" in state["notes"]

            # Nothing stored, no run recorded, no page marked read: the scheduled crawl sees it all.
            with get_database(settings).session() as session:
                assert session.scalar(select(func.count(Post.id))) == 0
                assert session.scalar(select(func.count(CrawlRun.id))) == 0
            source_id = admin.get("/api/crawl/sources/binjiang").json()["id"]
            assert redis.Redis.from_url(settings.effective_redis_url).scard(seen_key(source_id)) == 0

    with LiveServer(settings) as server, server.login("pr") as pr:
        assert pr.get("/api/crawl/sources/binjiang/preview").status_code == 403  # admins configure


def test_preview_explains_a_source_that_finds_nothing(
    demo_sqlite: Settings,  # noqa: F811
    start_worker: Any,
) -> None:
    with CrawlSite("generic") as site:
        # our own fixture server: allowed by its host:port, nothing else internal
        settings = allowing(demo_sqlite.model_copy(update={"crawl_polite": False}), site.url())
        with LiveServer(settings) as server, server.login("admin") as admin:
            made = admin.post("/api/crawl/sources", json=source(
                key="moved", name="改版的网站", kind="generic", url=site.url("/"),
                config={"start_urls": ["/old/index.html"], "list": {"link": "a::attr(href)"}}))  # fmt: skip
            assert made.status_code == 201, made.text
            start_worker(settings)
            admin.post("/api/crawl/sources/moved/preview")

            def finished() -> dict[str, Any] | None:
                state = admin.get("/api/crawl/sources/moved/preview").json()
                return state if state["status"] in ("finished", "failed") else None

            state = wait_for(finished, timeout=90, message="the preview job to finish")
            assert state["posts"] == []
            assert any("HTTP 404" in note for note in state["notes"]), state["notes"]
