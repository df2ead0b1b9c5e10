"""The resident's web chat page in headless Chromium, as a phone inside WeChat would show it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from core.settings import Settings
from tests.conftest import LiveServer


@pytest.fixture
def chat_server(demo_kb: Settings) -> Iterator[LiveServer]:
    with LiveServer(demo_kb) as server:
        yield server


def test_resident_asks_reports_an_emergency_and_asks_for_a_person(
    chat_server: LiveServer, mobile_page: Page
) -> None:
    page = mobile_page
    page.goto(f"{chat_server.url}/chat/cuihu")
    expect(page.locator("header h1")).to_contain_text("翠湖花园")

    # A quick-question chip: the answer comes with an expandable citation.
    page.get_by_role("button", name="物业费怎么交").click()
    answer = page.locator(".msg[data-action='answer']").last
    expect(answer).to_contain_text("生活缴费")
    citation = answer.locator("details.cite").first
    expect(citation.locator("p")).not_to_be_visible()
    citation.locator("summary").click()
    expect(citation.locator("p")).to_be_visible()
    expect(citation.locator("summary")).to_contain_text("居民常见问题")

    # Typed text: a repair is registered.
    page.locator("#text").fill("5栋2单元楼道灯坏了")
    page.locator("#send").click()
    expect(page.locator(".msg[data-action='work_order']").last).to_contain_text("工单")

    # An emergency: the banner with the duty phone appears.
    expect(page.locator("#emergency")).not_to_be_visible()
    page.locator("#text").fill("厨房一股煤气味 好冲")
    page.keyboard.press("Enter")
    expect(page.locator(".msg[data-action='emergency']").last).to_contain_text("0571-8800-1234")
    expect(page.locator("#emergency")).to_be_visible()
    expect(page.locator("#duty-phone")).to_have_attribute("href", "tel:057188001234")

    # 转人工 after an emergency: the conversation is already with a person, the message joins the case.
    page.get_by_role("button", name="转人工").click()
    expect(page.locator(".msg[data-action='human']").last).to_contain_text("紧急事件")

    # A reload restores the conversation of this session.
    page.reload()
    expect(page.locator(".msg[data-action='answer']").first).to_contain_text("生活缴费")
    expect(page.locator(".msg[data-action='human']")).to_have_count(1)


def test_failed_send_says_so_and_keeps_the_page_usable(chat_server: LiveServer, mobile_page: Page) -> None:
    page = mobile_page
    page.goto(f"{chat_server.url}/chat/cuihu")
    unavailable = '{"error": {"message": "服务暂时不可用"}}'
    page.route("**/api/chat", lambda route: route.fulfill(status=503, body=unavailable))
    page.locator("#text").fill("物业几点上班")
    page.locator("#send").click()
    expect(page.locator(".msg.system").last).to_contain_text("发送失败")
    page.unroute("**/api/chat")
    page.locator("#text").fill("物业几点上班")
    page.locator("#send").click()
    expect(page.locator(".msg[data-action='answer']").last).to_contain_text("8:30")
