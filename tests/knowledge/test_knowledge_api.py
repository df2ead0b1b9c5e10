"""The knowledge-base admin API and page over real HTTP: upload, list, read, replace, delete;
bad uploads; roles and community scope; the re-index queued in Redis and run by a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from accounts import service as accounts_service
from accounts.models import Role
from anju.demo import DEMO_PASSWORD
from core.db import get_database
from core.queue import get_queue
from core.settings import Settings
from knowledge import service
from knowledge.models import KnowledgeSource
from org import service as org_service
from tests.conftest import LiveServer, run_burst_worker, wait_for

LIFT = """# 电梯困人应急处置规程

## 一、接警
值班人员接到电梯困人报警后，应立即通过对讲安抚被困人员，告知救援正在进行，并记录报警时间。

## 二、救援
维保单位应在 30 分钟内到场，物业工程人员先行到场确认轿厢位置，严禁非专业人员自行撬门。
""".encode()

LIFT_V2 = """# 电梯困人应急处置规程

## 一、接警与安抚
值班人员 1 分钟内回应报警，全程保持与被困人员通话。

## 二、救援时限
维保单位 20 分钟内到场。

## 三、事后回访
次日由客服回访被困住户。
""".encode()

FAQ = """问题,相似问题,答案,分类,适用小区,生效日期
快递放在哪里,快递柜在哪|快递代收,快递统一放在小区南门的智能快递柜，超时未取可到物业前台领取。,生活服务,全部,
翠湖花园游泳池几点开放,游泳池开放时间,6 月至 9 月开放，每天 9:00–21:00。,配套设施,翠湖花园,2026-06-01
,没写问题,这一行没有问题。,其他,全部,
装修押金多少,,装修押金为 3000 元，验收合格后退还。,装修,火星小区,
""".encode()

SOURCES = "/api/knowledge/sources"


@pytest.fixture
def demo(demo: Settings) -> Settings:
    """The demo company without the demo knowledge base it may seed: these tests count sources."""
    with get_database(demo).session() as session:
        for source in service.list_sources(session=session, company_id=1):
            service.delete_source(session=session, source_id=source.id, company_id=1)
    return demo


def _ids(settings: Settings, *codes: str) -> list[int]:
    with get_database(settings).session() as session:
        return [org_service.get_community_by_code(session=session, code=c).id for c in codes]


def _source_count(settings: Settings) -> int:
    with get_database(settings).session() as session:
        return session.scalar(select(func.count()).select_from(KnowledgeSource)) or 0


def _upload(client: httpx.Client, name: str, content: bytes, **data: object) -> httpx.Response:
    return client.post(SOURCES, files={"file": (name, content)}, data=data)


def _parsed(client: httpx.Client, source_id: int) -> dict[str, object]:
    """The source once a worker parsed (or failed) its latest upload."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (s := client.get(f"{SOURCES}/{source_id}").json())["status"] != "parsing" and s,
        timeout=120,
        interval=0.3,
        message=f"source {source_id} to be parsed",
    )


def test_admin_uploads_lists_reads_replaces_and_deletes(server: LiveServer, start_worker: Any) -> None:
    settings = server.settings
    [cuihu] = _ids(settings, "cuihu")
    with server.login("admin") as admin:
        doc = _upload(admin, "电梯困人.md", LIFT)
        assert doc.status_code == 202, doc.text  # stored; a worker parses it
        uploaded = doc.json()
        assert uploaded["created"] is True and uploaded["parse_job_id"]
        source = uploaded["source"]
        assert (source["kind"], source["title"], source["filename"]) == (
            "document",
            "电梯困人",
            "电梯困人.md",
        )
        assert (source["status"], source["version"], source["passage_count"]) == ("parsing", 0, 0)
        assert source["pending_filename"] == "电梯困人.md" and source["error"] is None

        faq = _upload(admin, "常见问题.csv", FAQ)
        assert faq.status_code == 202, faq.text
        table = faq.json()
        assert table["source"]["kind"] == "faq" and table["source"]["status"] == "parsing"

        # each upload queued its parse on the "low" queue; the re-index comes after the parse
        queue = get_queue("low", settings=settings)
        assert queue.job_ids == [uploaded["parse_job_id"], table["parse_job_id"]]
        job = queue.fetch_job(uploaded["parse_job_id"])
        assert job is not None and job.func_name == "knowledge.tasks.parse_source"
        assert job.kwargs["source_id"] == source["id"]

        # the same file with the same scope again, even before it is parsed: nothing new
        again = _upload(admin, "电梯困人（副本）.md", LIFT)
        assert again.status_code == 200
        assert again.json()["created"] is False and again.json()["source"]["id"] == source["id"]
        assert again.json()["parse_job_id"] is None

        start_worker(settings)
        parsed = _parsed(admin, source["id"])
        assert (parsed["status"], parsed["version"], parsed["title"]) == ("ready", 1, "电梯困人应急处置规程")
        assert (parsed["passage_count"], parsed["size_bytes"], parsed["pending_filename"]) == (
            2,
            len(LIFT),
            None,
        )
        assert [p["section"] for p in parsed["passages"]] == ["一、接警", "二、救援"]
        assert "严禁非专业人员自行撬门" in parsed["passages"][1]["text"]
        entries = _parsed(admin, table["source"]["id"])
        assert entries["faq_entry_count"] == 2
        errors = {(e["row"], e["column"]): e["message"] for e in entries["row_errors"]}
        assert errors == {(4, "问题"): "问题不能为空", (5, "适用小区"): "找不到小区“火星小区”"}
        entries = entries["faq_entries"]
        assert [e["question"] for e in entries] == ["快递放在哪里", "翠湖花园游泳池几点开放"]
        assert entries[0]["similar"] == ["快递柜在哪", "快递代收"] and entries[0]["communities"] == []
        assert entries[1]["communities"] == [{"id": cuihu, "name": "翠湖花园"}]
        assert (entries[1]["category"], entries[1]["effective_from"]) == ("配套设施", "2026-06-01")

        listed = admin.get(SOURCES).json()
        assert [(s["title"], s["kind"], s["status"]) for s in listed] == [
            ("电梯困人应急处置规程", "document", "ready"),
            ("常见问题", "faq", "ready"),
        ]

        # replace: same id, version 2 once parsed, the old passages gone, the scope kept
        scoped = _upload(admin, "电梯困人.md", LIFT, community_ids=str(cuihu)).json()["source"]
        _parsed(admin, scoped["id"])
        replaced = admin.put(f"{SOURCES}/{scoped['id']}", files={"file": ("电梯困人-2026版.md", LIFT_V2)})
        assert replaced.status_code == 202, replaced.text
        assert replaced.json()["source"]["version"] == 1 and replaced.json()["parse_job_id"]
        body = _parsed(admin, scoped["id"])
        assert (body["id"], body["version"], body["filename"]) == (scoped["id"], 2, "电梯困人-2026版.md")
        assert body["communities"] == [{"id": cuihu, "name": "翠湖花园"}] and not body["all_communities"]
        assert [p["section"] for p in body["passages"]] == ["一、接警与安抚", "二、救援时限", "三、事后回访"]
        wrong_kind = admin.put(f"{SOURCES}/{scoped['id']}", files={"file": ("问答.csv", FAQ)})
        assert wrong_kind.status_code == 422 and "类型需与原文件一致" in wrong_kind.json()["error"]["message"]

        deleted = admin.delete(f"{SOURCES}/{source['id']}")
        assert deleted.status_code == 204 and deleted.headers["x-index-job-id"]
        assert admin.get(f"{SOURCES}/{source['id']}").status_code == 404
        assert admin.delete(f"{SOURCES}/{source['id']}").status_code == 404
        assert [s["id"] for s in admin.get(SOURCES).json()] == [table["source"]["id"], scoped["id"]]


def test_bad_uploads_are_refused_with_a_clear_message_and_store_nothing(demo: Settings) -> None:
    small = Settings(**{**demo.model_dump(), "max_upload_bytes": 4096})
    with get_database(demo).session() as session:
        other = org_service.create_company(session=session, code="other", name="别家物业")
        elsewhere = org_service.create_community(
            session=session, company_id=other.id, code="elsewhere", name="别家小区"
        ).id
    with LiveServer(small) as live, live.login("admin") as admin:
        too_big = _upload(admin, "大文件.md", "# 标题\n".encode() + "物业服务标准。".encode() * 1000)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["message"] == "请求内容过大（上限 4 KB）"
        wrong_type = _upload(admin, "病毒.exe", b"MZ\x90\x00")
        assert wrong_type.status_code == 422
        assert wrong_type.json()["error"]["message"].startswith("不支持的文件类型 .exe")
        empty = _upload(admin, "空白.md", b"")
        assert empty.status_code == 422 and empty.json()["error"]["message"] == "文件是空的"
        # a table without rows is the worker's to find (test_upload_bombs): it reads the rows
        not_ours = _upload(admin, "电梯.md", LIFT, community_ids=str(elsewhere))
        assert not_ours.status_code == 404
        unknown = _upload(admin, "电梯.md", LIFT, community_ids="1,999")
        assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "找不到小区 999"
        both = _upload(admin, "电梯.md", LIFT, community_ids="1", all_communities="true")
        assert both.status_code == 422
        assert get_queue("low", settings=demo).count == 0
    assert _source_count(demo) == 0


def test_only_admins_change_and_readers_see_their_communities(server: LiveServer) -> None:
    settings = server.settings
    cuihu, binjiang = _ids(settings, "cuihu", "binjiang")
    with get_database(settings).session() as session:
        other = org_service.create_company(session=session, code="other", name="别家物业")
        foreign = service.ingest(session=session, company_id=other.id, filename="别家.md", content=LIFT)
        foreign_id = foreign.source.id
        accounts_service.create_user(
            session=session,
            company_id=1,
            username="agent-binjiang",
            password=DEMO_PASSWORD,
            role=Role.agent,
            community_ids=[binjiang],
        )
        # parsed at once (as `anju ingest` does): this test is about who sees what
        everywhere = service.ingest(session=session, company_id=1, filename="电梯困人.md", content=LIFT)
        pool = "# 泳池须知\n泳池仅限滨江壹号业主使用。\n".encode()
        binjiang_only = service.ingest(
            session=session, company_id=1, filename="泳池.md", content=pool, community_ids=[binjiang]
        )
        everywhere_id, binjiang_id = everywhere.source.id, binjiang_only.source.id
    with server.login("admin") as admin:
        assert admin.get(f"{SOURCES}/{foreign_id}").status_code == 404  # another company's
        assert admin.put(f"{SOURCES}/{foreign_id}", files={"file": ("a.md", LIFT_V2)}).status_code == 404
        assert admin.delete(f"{SOURCES}/{foreign_id}").status_code == 404
        missing = admin.get(f"{SOURCES}/9999")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "找不到该知识文件"
        assert admin.put(f"{SOURCES}/9999", files={"file": ("a.md", LIFT_V2)}).status_code == 404
        assert admin.get(SOURCES, params={"community_id": 9999}).status_code == 404
    with server.login("agent") as agent:  # 翠湖花园 and 锦江苑
        refused = _upload(agent, "电梯.md", LIFT_V2)
        assert refused.status_code == 403 and refused.json()["error"]["message"] == "您的角色无权执行此操作"
        assert agent.delete(f"{SOURCES}/{everywhere_id}").status_code == 403
        assert [s["id"] for s in agent.get(SOURCES).json()] == [everywhere_id]
        assert [s["id"] for s in agent.get(SOURCES, params={"community_id": cuihu}).json()] == [everywhere_id]
        assert agent.get(SOURCES, params={"community_id": binjiang}).status_code == 404
        assert agent.get(f"{SOURCES}/{binjiang_id}").status_code == 404
        assert agent.get(f"{SOURCES}/{everywhere_id}").json()["passage_count"] == 2
        assert agent.get("/api/knowledge/index").status_code == 200
    with server.login("agent-binjiang") as agent:
        assert [s["id"] for s in agent.get(SOURCES).json()] == [everywhere_id, binjiang_id]
    with server.login("supervisor") as supervisor:
        assert len(supervisor.get(SOURCES, params={"community_id": binjiang}).json()) == 2
    with server.login("pr") as pr:
        assert pr.get(SOURCES).status_code == 403
    with server.client() as anonymous:
        assert anonymous.get(SOURCES).status_code == 401
    assert _source_count(settings) == 3


def test_a_worker_builds_the_index_the_api_then_reports(server: LiveServer) -> None:
    with server.login("admin") as admin:
        assert admin.get("/api/knowledge/index").json() == {"index": None, "stale": False}
        assert _upload(admin, "电梯困人.md", LIFT).status_code == 202
        assert _upload(admin, "常见问题.csv", FAQ).status_code == 202
        # not parsed yet: nothing for an index to cover (the sources say "parsing")
        assert admin.get("/api/knowledge/index").json() == {"index": None, "stale": False}

        worker = run_burst_worker(server.settings)
        status = admin.get("/api/knowledge/index").json()
        assert status["stale"] is False, worker.stderr[-2000:]
        index = status["index"]
        assert (index["passages"], index["faq_entries"]) == (2, 2)
        assert index["embedding_model"] and index["size_bytes"] > 0 and index["built_at"]
        assert get_queue("low", settings=server.settings).count == 0

        faq_id = admin.get(SOURCES).json()[1]["id"]
        assert admin.delete(f"{SOURCES}/{faq_id}").status_code == 204
        after = admin.get("/api/knowledge/index").json()
        assert after["stale"] is True and after["index"]["id"] == index["id"]  # the old one serves meanwhile


@contextmanager
def _page_login(live: LiveServer, username: str) -> Iterator[httpx.Client]:
    """A browser-like client: logged in through the login form, holding the session cookie."""
    with live.client() as client:
        r = client.post("/login", data={"username": username, "password": DEMO_PASSWORD, "next": "/"})
        assert r.status_code == 303, r.text
        yield client


def test_the_admin_page_lists_sources_and_offers_the_upload_form(server: LiveServer) -> None:
    with get_database(server.settings).session() as session:  # parsed, as `anju ingest` does
        service.ingest(session=session, company_id=1, filename="电梯困人.md", content=LIFT)
        service.ingest(session=session, company_id=1, filename="常见问题.csv", content=FAQ, community_ids=[1])
    with server.login("admin") as api:  # no worker runs here: this one stays "parsing"
        assert _upload(api, "泳池须知.md", "# 泳池须知\n泳池仅限业主使用。\n".encode()).status_code == 202
    with _page_login(server, "admin") as admin:
        workspace = admin.get("/")
        assert 'href="/admin/knowledge"' in workspace.text
        page = admin.get("/admin/knowledge")
        assert page.status_code == 200
        html = page.text
        assert 'id="upload-form"' in html and 'id="upload-file"' in html and "全部小区" in html
        for shown in (
            "电梯困人应急处置规程",
            "常见问题",
            "问答表",
            "文档",
            "2 个段落",
            "2 条问答",
            "翠湖花园",
            "2 行未导入",
            "第 5 行 适用小区：找不到小区“火星小区”",
            "泳池须知",
            "解析中…",
        ):
            assert shown in html, shown
        assert "尚未建立索引" in html and "索引更新中…" in html
        assert html.count('class="delete danger"') == 3
        assert html.count('data-status="ready">') == 2 and html.count('data-status="parsing">') == 1
    with _page_login(server, "agent") as agent:
        assert 'href="/admin/knowledge"' not in agent.get("/").text
        refused = agent.get("/admin/knowledge")
        assert refused.status_code == 403 and "没有权限" in refused.text
        assert "upload-form" not in refused.text
    with server.client() as anonymous:
        r = anonymous.get("/admin/knowledge")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/admin/knowledge"
