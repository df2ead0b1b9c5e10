"""The hand-off in two browsers at once: a resident on the web chat page asks for a person, an
agent logged into the console sees the case arrive live, claims it and replies; the resident sees
the reply, gets the survey when the case is resolved and answers it with a tap."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from anju.demo import DEMO_PASSWORD
from core.settings import Settings
from tests.browser.test_login_page import log_in
from tests.conftest import LiveServer


@pytest.fixture
def live(demo_kb: Settings) -> Iterator[LiveServer]:
    with LiveServer(demo_kb) as server:
        yield server


def test_resident_asks_for_a_person_agent_claims_replies_and_resolves(
    live: LiveServer, new_page: Callable[..., Page]
) -> None:
    agent = new_page()
    agent.goto(f"{live.url}/console")
    log_in(agent, "agent", DEMO_PASSWORD)
    expect(agent).to_have_url(f"{live.url}/console")
    expect(agent.locator("#live")).to_have_attribute("data-live", "1")
    expect(agent.locator("#list")).to_contain_text("暂无案件")

    resident = new_page(mobile=True)
    resident.goto(f"{live.url}/chat/cuihu")
    resident.locator("#text").fill("阳台漏水好几天了，物业一直没人管，我要投诉")
    resident.locator("#send").click()
    expect(resident.locator(".msg[data-action='human']").last).to_contain_text("转接人工客服")

    # The case appears in the agent's queue by itself (live stream), 投诉 marked 重要.
    item = agent.locator("#list li[data-case-id]").first
    expect(item).to_contain_text("投诉", timeout=3000)
    expect(item).to_contain_text("重要")
    item.click()
    expect(agent.locator("#messages")).to_contain_text("阳台漏水好几天了")
    agent.get_by_role("button", name="接手", exact=True).click()
    expect(agent.locator("#detail")).to_contain_text("处理人：客服小林")

    agent.locator("#reply-text").fill("您好，我是客服小林，已安排工程部今天下午上门查看漏水。")
    agent.locator("#reply-send").click()
    expect(agent.locator("#messages .m.agent").last).to_contain_text("已安排工程部")

    # The reply reaches the resident's open page without a reload.
    expect(resident.locator(".msg.agent").last).to_contain_text("已安排工程部今天下午上门", timeout=3000)

    # The resident writes again: the assistant stays silent, the agent sees the message live.
    before = resident.locator(".msg").count()
    resident.locator("#text").fill("好的，几点来？")
    resident.locator("#send").click()
    expect(agent.locator("#messages")).to_contain_text("好的，几点来？", timeout=3000)
    expect(resident.locator(".msg")).to_have_count(before + 1)  # only the resident's own bubble

    agent.locator("#note-text").fill("住户下午在家")
    agent.get_by_role("button", name="添加备注").click()
    expect(agent.locator("#events")).to_contain_text("住户下午在家")
    agent.get_by_role("button", name="办结", exact=True).click()
    expect(agent.locator("#detail")).to_contain_text("状态：已解决")

    # The survey arrives on the resident's page; a tap answers it.
    survey = resident.locator(".msg[data-action='survey']").last
    expect(survey).to_contain_text("满意度回访", timeout=3000)
    survey.locator("button[data-score='5']").click()
    expect(resident.locator(".msg").last).to_contain_text("感谢您的评价")
    agent.get_by_role("button", name="已办结", exact=True).click()
    expect(agent.locator("#list li[data-case-id]").first).to_be_visible()
    agent.locator("#list li[data-case-id]").first.click()
    expect(agent.locator("#detail")).to_contain_text("回访：5 分")
    expect(agent.locator("#detail")).to_contain_text("状态：已关闭")


def test_a_resident_cannot_open_the_console(live: LiveServer, new_page: Callable[..., Page]) -> None:
    page = new_page()
    page.goto(f"{live.url}/console")
    expect(page).to_have_url(f"{live.url}/login?next=/console")
    log_in(page, "pr", DEMO_PASSWORD)  # the PR role has no console
    expect(page.locator("body")).not_to_contain_text("客服工作台 · ")
    assert page.evaluate("() => fetch('/api/cases').then(r => r.status)") == 403


def test_a_live_reload_keeps_the_agents_draft_and_other_cases_show_new_messages_in_place(
    live: LiveServer, new_page: Callable[..., Page]
) -> None:
    """While the agent types a reply, the resident writes again: the case reloads live and the
    draft stays. A message in another case updates that row's line and marks it unread, without
    reloading the lists."""
    residents = []
    for text in ("楼道灯坏了好几天了，转人工", "物业费发票怎么开，转人工"):
        page = new_page(mobile=True)
        page.goto(f"{live.url}/chat/cuihu")
        page.locator("#text").fill(text)
        page.locator("#send").click()
        expect(page.locator(".msg[data-action='human']").last).to_be_visible()
        residents.append(page)

    agent = new_page()
    agent.goto(f"{live.url}/console")
    log_in(agent, "agent", DEMO_PASSWORD)
    expect(agent.locator("#list li[data-case-id]")).to_have_count(2)
    ids = {
        "lamp": agent.locator("#list li", has_text="楼道灯").get_attribute("data-case-id"),
        "invoice": agent.locator("#list li", has_text="发票").get_attribute("data-case-id"),
    }
    lamp = agent.locator(f"#list li[data-case-id='{ids['lamp']}']")  # rows by case: their text changes
    invoice = agent.locator(f"#list li[data-case-id='{ids['invoice']}']")
    lamp.click()
    expect(agent.locator("#messages")).to_contain_text("楼道灯坏了")
    agent.locator("#reply-text").fill("您好，电工下午")  # typing, not sent yet
    lists_loaded = agent.evaluate(
        "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/cases?')).length"
    )

    residents[0].locator("#text").fill("三楼和四楼都不亮")
    residents[0].locator("#send").click()
    expect(agent.locator("#messages")).to_contain_text("三楼和四楼都不亮", timeout=3000)
    expect(agent.locator("#reply-text")).to_have_value("您好，电工下午")

    residents[1].locator("#text").fill("要开增值税专用发票")
    residents[1].locator("#send").click()
    expect(invoice.locator(".sum")).to_contain_text("要开增值税专用发票", timeout=3000)
    expect(invoice).to_have_class(re.compile(r"\bunread\b"))
    expect(lamp).not_to_have_class(re.compile(r"\bunread\b"))  # the case on screen is read
    expect(lamp.locator(".sum")).to_contain_text("三楼和四楼都不亮")
    agent.wait_for_timeout(1200)  # a reload would have happened by now
    reloaded = agent.evaluate(
        "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/cases?')).length"
    )
    assert reloaded == lists_loaded  # the messages changed no list: none was fetched again

    invoice.click()
    expect(invoice).not_to_have_class(re.compile(r"\bunread\b"))
    lamp.click()
    expect(agent.locator("#reply-text")).to_have_value("您好，电工下午")  # kept per case
