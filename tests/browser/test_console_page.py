"""The hand-off in two browsers at once: a resident on the web chat page asks for a person, an
agent logged into the console sees the case arrive live, claims it and replies; the resident sees
the reply, gets the survey when the case is resolved and answers it with a tap."""

from __future__ import annotations

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
