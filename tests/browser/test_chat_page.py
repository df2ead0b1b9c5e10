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


def test_a_reload_shows_what_the_page_showed_and_the_banner_ends_with_the_emergency(
    chat_server: LiveServer, mobile_page: Page
) -> None:
    """The tags, the emergency banner (with its kind) and an answered survey survive a reload; the
    banner comes down when the emergency's case is resolved, live and after a reload."""
    page = mobile_page
    page.goto(f"{chat_server.url}/chat/cuihu")
    page.locator("#text").fill("3栋2单元1102卫生间水管漏水了")
    page.keyboard.press("Enter")
    expect(page.locator(".msg[data-action='work_order'] .tag").last).to_contain_text("工单")
    page.locator("#text").fill("电梯困人了，我被关在5栋电梯里")
    page.keyboard.press("Enter")
    expect(page.locator("#emergency")).to_be_visible()
    expect(page.locator("#emergency-text")).to_contain_text("电梯困人")

    page.reload()
    expect(page.locator(".msg[data-action='work_order'] .tag").last).to_contain_text("工单")
    expect(page.locator("#emergency")).to_be_visible()
    expect(page.locator("#emergency-text")).to_contain_text("电梯困人")  # the same words as before

    session_id = page.evaluate("localStorage.getItem('anju-chat-session:cuihu')")
    with chat_server.client() as resident, chat_server.login("supervisor") as boss:
        said = resident.get("/api/chat/history", params={"community": "cuihu", "session_id": session_id})
        case_id = next(m["case_id"] for m in said.json() if m["action"] == "emergency")
        boss.post(f"/api/cases/{case_id}/claim").raise_for_status()
        boss.post(f"/api/cases/{case_id}/resolve", json={"note": "已救出"}).raise_for_status()

    survey = page.locator(".msg[data-action='survey']").last
    expect(survey).to_contain_text(f"案件编号 {case_id}")
    expect(page.locator("#emergency")).not_to_be_visible()  # live: the survey ended it
    survey.get_by_role("button", name="5 分").click()
    expect(page.locator(".msg[data-sender='bot']").last).to_contain_text("感谢")

    page.reload()
    expect(page.locator("#emergency")).not_to_be_visible()
    survey = page.locator(".msg[data-action='survey']").last
    expect(survey.locator("button")).to_have_count(0)  # answered: no buttons to press again
    expect(survey).to_contain_text("已评价：5")
