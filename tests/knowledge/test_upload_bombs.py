"""Uploads an attacker builds, against the real service (issue 19, finding 3 and the parser 5xx of
finding 6): bombs whose zip directory gives them away are refused in the request with the reason;
everything else is parsed by a real rq worker, and a file that cannot be parsed fails once with
its reason, while the version before it keeps answering residents."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from rq import Worker
from rq.command import send_kill_horse_command
from sqlalchemy import func, select

from core.db import get_database
from core.queue import get_queue
from core.redis import get_redis
from core.settings import Settings
from knowledge import service
from knowledge.models import FaqEntry, KnowledgeSource, Passage
from tests import bombs
from tests.conftest import LiveServer, wait_for

SOURCES = "/api/knowledge/sources"
RENOVATION = [
    "# 装修管理规定",
    "## 一、装修押金",
    "业主办理装修手续时需缴纳装修押金 3000 元，装修验收合格后 15 个工作日内全额退还。",
    "## 二、施工时间",
    "工作日上午 8:00 至 12:00、下午 14:00 至 18:00 可以施工，法定节假日不得进行产生噪音的施工。",
]
QUESTION = "装修押金要交多少钱"


@pytest.fixture
def demo(demo: Settings) -> Settings:
    """The demo company without the demo knowledge base: these tests count sources."""
    with get_database(demo).session() as session:
        for source in service.list_sources(session=session, company_id=1):
            service.delete_source(session=session, source_id=source.id, company_id=1)
    return demo


def _upload(client: httpx.Client, name: str, content: bytes) -> httpx.Response:
    return client.post(SOURCES, files={"file": (name, content)})


def _replace(client: httpx.Client, source_id: int, name: str, content: bytes) -> httpx.Response:
    return client.put(f"{SOURCES}/{source_id}", files={"file": (name, content)})


def _parsed(client: httpx.Client, source_id: int, timeout: float = 120) -> dict[str, Any]:
    """The source once its latest upload is parsed or failed (a worker must be running)."""
    return wait_for(
        lambda: (s := client.get(f"{SOURCES}/{source_id}").json())["status"] != "parsing" and s,
        timeout=timeout,
        interval=0.3,
        message=f"source {source_id} to be parsed",
    )


def _counts(settings: Settings) -> tuple[int, int, int]:
    with get_database(settings).session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (KnowledgeSource, Passage, FaqEntry)
        )


def _index_current(client: httpx.Client) -> dict[str, Any]:
    return wait_for(
        lambda: (i := client.get("/api/knowledge/index").json())["index"] and not i["stale"] and i,
        timeout=180,
        interval=0.5,
        message="the re-index",
    )


def _ask(server: LiveServer, text: str = QUESTION) -> dict[str, Any]:
    with server.client() as resident:
        body = {"community": "cuihu", "session_id": f"upload-{uuid.uuid4().hex}", "text": text}
        response = resident.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_bombs_their_zip_directory_declares_are_refused_in_the_request(server: LiveServer) -> None:
    good = bombs.docx(RENOVATION)
    big = bombs.zero_bomb(good, "word/document.xml", 200 * bombs.MB)  # finding 3: ~200 KB → 200 MB
    dense = bombs.zero_bomb(good, "word/media/image1.png", 40 * bombs.MB)  # under the size limit
    listing = bombs.many_entries(good, 3000)
    strings = bombs.shared_strings_bomb(300 * bombs.MB)  # an FAQ table, as the 3 MB xlsx bomb
    dense_strings = bombs.shared_strings_bomb(50 * bombs.MB)
    assert max(map(len, (big, dense, listing, strings, dense_strings))) < 1024 * 1024
    with server.login("admin") as admin:
        refused = {
            name: _upload(admin, name, content)
            for name, content in (
                ("装修管理规定.docx", big),
                ("装修图片.docx", dense),
                ("很多部件.docx", listing),
                ("常见问题.xlsx", strings),
                ("常见问题2.xlsx", dense_strings),
                ("旧版文档.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4096),
                ("不是压缩包.xlsx", b"PK\x03\x04 not really a zip"),
                ("不是PDF.pdf", b"<html>not a pdf</html>"),
            )
        }
        status = {name: (r.status_code, r.json()["error"]["message"]) for name, r in refused.items()}
    code, message = status["装修管理规定.docx"]  # 200 MB of zeros beside the template's own parts
    assert code == 413 and message.startswith("docx 文件解压后有 20")
    assert message.endswith(" MB（上限 64 MB），不予解析；请删去多余的图片或拆分后上传")
    assert status["装修图片.docx"][0] == 422 and "压缩比异常" in status["装修图片.docx"][1]
    assert "疑似压缩炸弹" in status["装修图片.docx"][1]
    assert status["很多部件.docx"] == (413, "docx 文件包含的部件过多（上限 1000 个），不予解析")
    assert status["常见问题.xlsx"][0] == 413 and "xlsx 文件解压后有 300 MB" in status["常见问题.xlsx"][1]
    assert status["常见问题2.xlsx"][0] == 422 and "压缩比异常" in status["常见问题2.xlsx"][1]
    assert status["旧版文档.docx"][0] == 422 and "旧版 Office 格式" in status["旧版文档.docx"][1]
    assert status["不是压缩包.xlsx"][0] == 422 and "已损坏" in status["不是压缩包.xlsx"][1]
    assert status["不是PDF.pdf"] == (422, "pdf 文件已损坏或不是 PDF 文件")
    assert _counts(server.settings) == (0, 0, 0)  # nothing stored
    assert get_queue("low", settings=server.settings).count == 0  # nothing queued


def test_a_huge_zip_listing_is_refused_before_it_is_read(server: LiveServer) -> None:
    """80,000 empty entries (8 MB of directory): refused from the end record's count, without the
    request reading every entry (which takes zipfile about a second per 150,000)."""
    listing = bombs.many_entries(bombs.docx(RENOVATION), 80_000)
    assert len(listing) < server.settings.max_upload_bytes
    with server.login("admin") as admin:
        started = time.perf_counter()
        refused = _upload(admin, "目录炸弹.docx", listing)
        elapsed = time.perf_counter() - started
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["message"] == "docx 文件包含的部件过多（上限 1000 个），不予解析"
    assert elapsed < 5, elapsed  # upload included; the check itself reads 22 bytes
    assert _counts(server.settings) == (0, 0, 0)


def test_files_that_fail_to_parse_fail_once_with_their_reason_and_the_old_version_keeps_answering(
    server: LiveServer, start_worker: Any
) -> None:
    settings = server.settings
    start_worker(settings)
    good = bombs.docx(RENOVATION)
    with server.login("admin") as admin:
        first = _upload(admin, "装修管理规定.docx", good)
        assert first.status_code == 202, first.text
        accepted = first.json()
        assert accepted["created"] is True and accepted["parse_job_id"]
        assert accepted["source"]["status"] == "parsing" and accepted["source"]["version"] == 0
        source_id = accepted["source"]["id"]
        v1 = _parsed(admin, source_id)
        assert (v1["status"], v1["version"], v1["error"], v1["title"]) == ("ready", 1, None, "装修管理规定")
        assert [p["section"] for p in v1["passages"]] == ["一、装修押金", "二、施工时间"]
        _index_current(admin)
        answer = _ask(server)
        assert answer["action"] == "answer", answer
        assert "3000" in answer["reply"] and answer["citations"][0]["document"] == "装修管理规定"

        document_xml = bombs.part(good, "word/document.xml")
        attacks = [
            (
                "实体炸弹.docx",
                bombs.rezip(good, {"word/document.xml": bombs.entity_bomb(document_xml)}),
                "docx 文件中含有 XML 文档类型声明（DTD/实体），Word 和 Excel 保存的文件不会有，"
                "出于安全原因不予解析",
            ),
            (
                "格式错误.docx",
                bombs.rezip(good, {"word/document.xml": document_xml[: len(document_xml) // 2]}),
                "docx 文件已损坏或不是 Word 文档",
            ),
            (  # the directory says 1 KB, the part inflates to 50 MB: zipfile stops at 1 KB
                "谎报大小.docx",
                bombs.lying_sizes(good, "word/document.xml", 50 * bombs.MB, 1024),
                "docx 文件已损坏或不是 Office 文档（无法作为压缩包读取）",
            ),
            (
                "压缩炸弹.pdf",
                bombs.pdf_bomb(),
                "pdf 中有数据解压后超过 16 MB（上限），疑似压缩炸弹，不予解析",
            ),
            (
                "扫描件.pdf",
                bombs.pdf_with_content(b"q Q\n"),
                "文件里没有可读取的文字（扫描件需要先做文字识别）",
            ),
        ]
        queue = get_queue("low", settings=settings)
        for name, content, reason in attacks:
            replaced = _replace(admin, source_id, name, content)
            assert replaced.status_code == 202, (name, replaced.text)
            pending = replaced.json()["source"]
            assert (pending["status"], pending["version"], pending["pending_filename"]) == (
                "parsing",
                1,
                name,
            )
            failed = _parsed(admin, source_id)
            assert (failed["status"], failed["error"]) == ("failed", reason), name
            assert (failed["version"], failed["title"], failed["pending_filename"]) == (
                1,
                "装修管理规定",
                name,
            )
            assert failed["passages"] == v1["passages"]  # nothing of version 1 lost
            job = queue.fetch_job(replaced.json()["parse_job_id"])
            assert job is not None  # the file failed, the job did not: it ends "finished", not retried
            wait_for(lambda j=job: j.get_status(refresh=True) == "finished", message=f"{name}'s job to end")
        assert get_queue("low", settings=settings).failed_job_registry.count == 0

        answer = _ask(server)  # the index was never touched: version 1 still answers
        assert "3000" in answer["reply"] and answer["citations"][0]["document"] == "装修管理规定"

        fixed = bombs.docx([line.replace("3000", "5000") for line in RENOVATION])
        assert _replace(admin, source_id, "装修管理规定-2026.docx", fixed).status_code == 202
        v2 = _parsed(admin, source_id)
        assert (v2["status"], v2["version"], v2["error"], v2["pending_filename"]) == ("ready", 2, None, None)
        assert "5000" in v2["passages"][0]["text"]
        _index_current(admin)
        assert "5000" in _ask(server)["reply"]

        # a brand-new upload that fails serves nothing and does not make the index stale
        bomb = _upload(admin, "另一个.docx", bombs.rezip(good, {"word/document.xml": b"<w:document"}))
        assert bomb.status_code == 202
        never = _parsed(admin, bomb.json()["source"]["id"])
        assert (never["status"], never["version"], never["passages"]) == ("failed", 0, [])
        assert admin.get("/api/knowledge/index").json()["stale"] is False


def test_the_admin_page_shows_parsing_and_failed_uploads(server: LiveServer, start_worker: Any) -> None:
    from tests.knowledge.test_knowledge_api import _page_login

    start_worker(server.settings)
    good = bombs.docx(RENOVATION)
    with server.login("admin") as admin:
        source_id = _upload(admin, "装修管理规定.docx", good).json()["source"]["id"]
        _parsed(admin, source_id)
        broken = bombs.rezip(good, {"word/document.xml": b"<w:document"})
        _replace(admin, source_id, "新版装修规定.docx", broken)
        _parsed(admin, source_id)
    with _page_login(server, "admin") as page:
        html = page.get("/admin/knowledge").text
    assert 'data-status="failed"' in html
    assert "解析失败：docx 文件已损坏或不是 Word 文档" in html
    assert "文件：新版装修规定.docx；仍在使用 v1" in html and "2 个段落" in html


def test_faq_tables_that_cannot_be_read_fail_with_the_line_or_the_reason(
    server: LiveServer, start_worker: Any
) -> None:
    start_worker(server.settings)
    header = "问题,相似问题,答案,分类,适用小区\n"
    long_field = (
        f"{header}快递放在哪里,,南门快递柜,生活服务,全部\n装修押金,{'押' * 200 * 1024},3000 元,,全部\n"
    )
    runaway_quote = f'{header}快递放在哪里,"快递柜,南门快递柜,生活服务,全部\n{"x" * 200 * 1024}\n'
    good = header + "快递放在哪里,,南门快递柜,生活服务,全部\n,没写问题,这一行没有问题。,其他,全部\n"
    too_long = "CSV 第 3 行有超过 128 KB 的单元格（常见原因：引号没有成对），请检查后再导入"
    broken = bombs.rezip(bombs.xlsx([["问题", "答案"]]), {"xl/workbook.xml": b"<wb"})
    cases = [
        ("超长单元格.csv", long_field.encode(), too_long),
        ("引号不成对.csv", runaway_quote.encode(), too_long),
        ("只有表头.csv", header.encode(), "表格里只有表头，没有问答"),
        (
            "百万空行.xlsx",
            bombs.row_gap_bomb(),
            "单个文件最多 50000 行（含空行），请删除多余的空行或拆分后导入",
        ),
        ("坏表格.xlsx", broken, "无法读取 XLSX 文件，文件可能已损坏"),
    ]
    with server.login("admin") as admin:
        ids = {}
        for name, content, _ in cases:
            accepted = _upload(admin, name, content)
            assert accepted.status_code == 202, (name, accepted.text)
            ids[name] = accepted.json()["source"]["id"]
        for name, _, reason in cases:
            failed = _parsed(admin, ids[name])
            assert (failed["status"], failed["error"], failed["version"]) == ("failed", reason, 0), name
        table = _upload(admin, "常见问题.csv", good.encode()).json()["source"]["id"]
        ready = _parsed(admin, table)
    assert (ready["status"], ready["faq_entry_count"]) == ("ready", 1)
    assert ready["row_errors"] == [{"row": 3, "column": "问题", "message": "问题不能为空"}]
    assert _counts(server.settings)[2] == 1  # the one good entry, nothing of the failed tables


def test_a_parse_over_its_cpu_budget_fails_as_too_slow(demo: Settings, start_worker: Any) -> None:
    settings = demo.model_copy(update={"upload_parse_timeout_seconds": 2})
    start_worker(settings)
    with LiveServer(settings) as server, server.login("admin") as admin:
        accepted = _upload(admin, "十万指令.pdf", bombs.slow_pdf(pages=2))
        assert accepted.status_code == 202, accepted.text
        failed = _parsed(admin, accepted.json()["source"]["id"], timeout=90)
    assert failed["status"] == "failed"
    assert failed["error"] == "解析超时（超过 2 秒），文件可能过于复杂，请拆分后重新上传"


def test_a_file_that_kills_its_worker_is_failed_after_two_attempts_not_retried_forever(
    server: LiveServer, start_worker: Any
) -> None:
    settings = server.settings
    start_worker(settings)
    connection = get_redis(settings)

    def attempts(source_id: int) -> int:
        with get_database(settings).session() as session:
            return session.get(KnowledgeSource, source_id).parse_attempts  # type: ignore[union-attr]

    with server.login("admin") as admin:
        accepted = _upload(admin, "杀死进程.pdf", bombs.slow_pdf(pages=4))  # ~25 s a page
        source_id = accepted.json()["source"]["id"]
        job = get_queue("low", settings=settings).fetch_job(accepted.json()["parse_job_id"])
        assert job is not None
        for attempt in (1, 2):  # the kernel's OOM killer, as rq's own kill-horse command sends it
            wait_for(lambda n=attempt: attempts(source_id) == n, timeout=60, message=f"attempt {attempt}")
            [worker] = Worker.all(connection=connection)
            send_kill_horse_command(connection, worker.name)
        failed = _parsed(admin, source_id, timeout=90)
    assert failed["status"] == "failed"
    assert failed["error"] == "解析多次中断（超时或内存不足），文件可能过于复杂，请检查或拆分后重新上传"
    assert attempts(source_id) == 3
    assert wait_for(lambda: job.get_status(refresh=True) == "finished", message="the job to end")
    queue = get_queue("low", settings=settings)
    assert queue.count == 0 and queue.scheduled_job_registry.count == 0  # no retry left behind
