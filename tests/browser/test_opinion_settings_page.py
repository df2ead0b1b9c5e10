"""舆情监测设置 in Chromium: an admin adds a news site as a source (a mistake is refused with the
field named), runs 试采集 on it and reads which posts would be kept, changes and pauses it, adds a
watch term, adds a group robot and sends it a test message, and deletes the source. Other roles
get the no-permission page."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Dialog, Page, expect

from anju.demo import DEMO_PASSWORD
from core.settings import Settings
from tests.browser.test_login_page import log_in
from tests.conftest import LiveServer
from tests.crawl_site import CrawlSite
from tests.crawlers.test_crawl_pipeline import GENERIC
from tests.robots import FakeRobot
from tests.services import allowing


def _accept(expected: str) -> Callable[[Dialog], None]:
    def accept(dialog: Dialog) -> None:
        assert expected in dialog.message
        dialog.accept()

    return accept


def test_admin_sets_up_a_source_previews_it_and_routes_alerts(
    demo: Settings, new_page: Callable[..., Page], start_worker: Any
) -> None:
    with CrawlSite("generic") as site, FakeRobot() as robots:
        # the site and the robot are fixtures on 127.0.0.1: allowed by host:port, nothing else
        settings = allowing(demo.model_copy(update={"crawl_polite": False}), site.url(), robots.url("wecom"))
        with LiveServer(settings) as server:
            start_worker(settings)
            page = new_page()
            page.goto(f"{server.url}/")
            log_in(page, "admin", DEMO_PASSWORD)
            page.get_by_role("link", name="设置舆情监测 →").click()
            expect(page).to_have_url(f"{server.url}/admin/opinion")
            expect(page.locator("#no-sources")).to_contain_text("还没有采集源")

            # A weibo search without keywords cannot crawl: refused, the field named.
            page.get_by_role("button", name="新增采集源").click()
            form = page.locator("#source-form")
            form.get_by_label("名称").fill("滨江民声网 社区新闻")
            form.get_by_label("标识（key）").fill("binjiang-news")
            form.get_by_label("地址").fill(site.url("/"))
            form.get_by_role("button", name="保存").click()
            error = page.locator("#source-error")
            expect(error).to_contain_text("config.keywords 有误：请至少填写一个搜索关键词")

            # As a news site read with selectors.
            form.get_by_label("类型").select_option("generic")
            expect(form.get_by_label("搜索关键词（每行一个）")).to_be_hidden()
            form.get_by_label("来源级别（影响风险研判）").select_option("media")
            form.get_by_label("只关注某个城市（可选）").fill("武汉")
            form.get_by_label("其他配置（JSON，可选）").fill(json.dumps(GENERIC, ensure_ascii=False))
            form.get_by_role("button", name="保存").click()
            row = page.locator("#sources tbody tr", has_text="binjiang-news")
            expect(row).to_contain_text("网站")
            expect(row).to_contain_text("武汉")
            expect(row).to_contain_text("尚未采集")
            expect(page.locator("#source-editor")).to_be_hidden()
            expect(page.locator("#no-sources")).to_be_hidden()

            # 试采集: what the site gives now, what would be kept, nothing stored.
            row.get_by_role("button", name="试采集").click()
            preview = page.locator("#preview")
            expect(preview.locator("#preview-status")).to_contain_text(
                "抓取页面 7 个，找到帖子 3 条", timeout=60_000
            )
            expect(preview.locator("#preview-status")).to_contain_text("其中 2 条与我们有关")
            expect(preview.locator("#preview-notes")).to_contain_text("robots.txt 禁止采集")
            kept = preview.locator(".post", has_text="命中：")
            expect(kept).to_have_count(2)
            # a flat news report of a fee dispute: the reporter's attitude is neutral (issue 20)
            expect(kept.filter(has_text="安居物业")).to_contain_text("中性")
            expect(preview.locator(".post", has_text="与我们无关，不保留")).to_have_count(1)
            expect(row).to_contain_text("尚未采集")

            # Edit: every 60 minutes; then pause it.
            row.get_by_role("button", name="编辑").click()
            expect(form.get_by_label("标识（key）")).to_have_attribute("readonly", "")
            expect(form.get_by_label("其他配置（JSON，可选）")).to_have_value(
                json.dumps(GENERIC, ensure_ascii=False, indent=2)
            )
            form.get_by_label("采集间隔（分钟）").fill("60")
            form.get_by_role("button", name="保存").click()
            expect(row).to_contain_text("60 分钟")
            row.get_by_role("button", name="停用").click()
            expect(row).to_contain_text("已停用")
            expect(row.get_by_role("button", name="启用")).to_be_visible()

            # A watch term for one community.
            terms = page.locator("#term-form")
            terms.get_by_label("监测词").fill("翠湖小区")
            terms.get_by_label("所属小区").select_option(label="翠湖花园")
            terms.get_by_role("button", name="添加").click()
            term = page.locator("#terms tbody tr", has_text="翠湖小区")
            expect(term).to_contain_text("小区 / 别名")
            expect(term).to_contain_text("翠湖花园")

            # A group robot for Ⅱ and worse, and its test message.
            page.get_by_role("button", name="新增接收方").click()
            route_form = page.locator("#route-form")
            route_form.get_by_label("名称").fill("品牌部群")
            route_form.get_by_label("Webhook 地址").fill(robots.url("wecom", "brand"))
            route_form.get_by_label("接收等级").select_option("2")
            route_form.get_by_role("button", name="保存").click()
            route = page.locator("#routes tbody tr", has_text="品牌部群")
            expect(route).to_contain_text("企业微信")
            expect(route).to_contain_text("Ⅱ级及以上")
            expect(route).not_to_contain_text("key=brand")  # the robot's key is a credential
            route.get_by_role("button", name="发送测试").click()
            expect(page.locator("#toast")).to_contain_text("测试消息已送达「品牌部群」")
            [message] = robots.wait_for(1)
            assert message.token == "brand" and "【测试】" in message.body["markdown"]["content"]

            # Delete the source; its row goes.
            page.once("dialog", _accept("确定删除采集源「滨江民声网 社区新闻」"))
            row.get_by_role("button", name="删除").click()
            expect(row).to_have_count(0)

            other = new_page()
            other.goto(f"{server.url}/admin/opinion")
            log_in(other, "pr", DEMO_PASSWORD)
            expect(other.locator("#forbidden")).to_contain_text("没有权限")
