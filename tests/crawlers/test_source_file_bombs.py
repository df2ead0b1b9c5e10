"""A sources YAML file an attacker builds (issue 19): "billion laughs" anchors and deep nesting are
refused with a reason in the request, fast, and nothing is stored — never 387 million values
written into a JSON column, never a RecursionError's 500."""

from __future__ import annotations

import time

from core.settings import Settings
from tests.conftest import LiveServer
from tests.crawlers.test_crawl_pipeline import demo_sqlite  # noqa: F401  (fixture)

IMPORT = "/api/crawl/sources/import"
HEAD = (
    "sources:\n- key: bomb\n  name: 炸弹\n  kind: rss\n  url: https://news.example.com/feed.xml\n  config:\n"
)


def _laughs(levels: int = 9) -> str:
    """Nine anchors, each listing the previous nine times: 400 bytes, 9^9 strings expanded."""
    lines = ['    a0: &a0 ["哈","哈","哈","哈","哈","哈","哈","哈","哈"]']
    for level in range(1, levels):
        lines.append(f"    a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    return HEAD + "\n".join(lines) + "\n"


def test_yaml_bombs_are_refused_fast_and_store_nothing(demo_sqlite: Settings) -> None:  # noqa: F811
    laughs = _laughs()
    deep = HEAD + "    nested: " + "[" * 5000 + "]" * 5000 + "\n"
    merge = HEAD + "    base: &base {headers: {User-Agent: anju}}\n    page: {<<: *base, max_pages: 2}\n"
    assert len(laughs) < 1024
    with LiveServer(demo_sqlite) as server, server.login("admin") as admin:
        started = time.perf_counter()
        refused = admin.post(IMPORT, content=laughs.encode())
        elapsed = time.perf_counter() - started
        nested = admin.post(IMPORT, files={"file": ("sources.yaml", deep.encode())})
        assert admin.get("/api/crawl/sources").json() == []
        fine = admin.post(IMPORT, content=merge.encode())  # an anchor used as YAML users do: fine
        stored = admin.get("/api/crawl/sources").json()
    assert refused.status_code == 422, refused.text
    assert (
        refused.json()["error"]["message"]
        == "采集源配置文件展开后过大（锚点/别名层层引用），请直接写出各项配置"
    )
    assert elapsed < 5, elapsed
    assert nested.status_code == 422 and nested.json()["error"]["message"] == "采集源配置文件嵌套层数过多"
    assert fine.status_code == 200, fine.text
    assert [s["key"] for s in stored] == ["bomb"]
    assert stored[0]["config"]["page"] == {"headers": {"User-Agent": "anju"}, "max_pages": 2}
