"""The knowledge-base page in Chromium: an admin uploads an FAQ table, sees it parsed by the worker
with the rows left out, sees a broken replacement fail with its reason while version 1 stays, and
deletes it again."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Dialog, Page, expect

from anju.demo import DEMO_PASSWORD
from tests.browser.test_login_page import log_in
from tests.conftest import LiveServer

FAQ = """问题,相似问题,答案,分类,适用小区
快递放在哪里,快递柜在哪|快递代收,快递统一放在小区南门的智能快递柜，超时未取可到物业前台领取。,生活服务,全部
,没写问题,这一行没有问题。,其他,全部
""".encode()


def test_admin_uploads_an_faq_table_and_deletes_it(server: LiveServer, page: Page, start_worker: Any) -> None:
    page.goto(f"{server.url}/admin/knowledge")
    expect(page).to_have_url(f"{server.url}/login?next=/admin/knowledge")
    log_in(page, "admin", DEMO_PASSWORD)
    expect(page).to_have_url(f"{server.url}/admin/knowledge")
    expect(page.get_by_label("适用小区（可多选）")).to_be_disabled()  # 全部小区 by default

    page.get_by_label("文件", exact=True).set_input_files(
        {"name": "快递问答.csv", "mimeType": "text/csv", "buffer": FAQ}
    )
    page.get_by_role("button", name="上传").click()

    report = page.locator("#upload-report")
    expect(report).to_contain_text("已上传《快递问答.csv》，正在后台解析…")
    row = page.locator("#sources tbody tr", has_text="快递问答")  # beside the demo knowledge base
    expect(row).to_have_count(1)
    expect(row).to_contain_text("解析中…")

    start_worker(server.settings)  # the page polls and reloads once the worker has parsed it
    expect(report).to_contain_text("《快递问答》已解析（版本 1，1 条问答）", timeout=60_000)
    expect(report).to_contain_text("第 3 行 问题：问题不能为空")
    expect(row).to_contain_text("问答表")
    expect(row).to_contain_text("全部小区")
    expect(row).to_contain_text("1 行未导入")

    row.locator(".replace-file").set_input_files(
        {
            "name": "快递问答-新.csv",
            "mimeType": "text/csv",
            "buffer": "问题\n".encode(),
        }
    )
    expect(report).to_contain_text("《快递问答-新.csv》解析失败：表格里只有表头，没有问答", timeout=60_000)
    expect(report).to_contain_text("《快递问答》仍使用版本 1。")
    expect(row).to_contain_text("v1")
    expect(row).to_contain_text("1 条问答")

    def accept(dialog: Dialog) -> None:
        assert "确定删除《快递问答》" in dialog.message
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name="删除").click()
    expect(page.locator("#upload-report")).to_contain_text("已删除《快递问答》")
    expect(row).to_have_count(0)
