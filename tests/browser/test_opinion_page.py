"""The PR risk feed in Chromium: a PR officer logs in, sees the events graded by colour, narrows
the list, opens an event (posts, reasons, the volume/sentiment chart), confirms it with a note,
and sees a new event arrive without reloading; a robot message's link opens its event, whose
alert is acknowledged from the page."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from anju.demo import DEMO_PASSWORD
from core.db import get_database
from sentiment.feed import publish_changes
from tests.browser.test_login_page import log_in
from tests.conftest import LiveServer
from tests.sentiment.factories import PostSpec, community, demo_company, make_alert, make_event


def _seed(server: LiveServer) -> dict[str, int]:
    with get_database(server.settings).session() as session:
        company = demo_company(session)
        cuihu, jinjiang, binjiang = (community(session, c) for c in ("cuihu", "jinjiang", "binjiang"))
        lift = make_event(
            session,
            company_id=company.id,
            community_id=cuihu.id,
            grade=1,
            title="翠湖花园电梯困人视频热传",
            reasons=["涉及电梯困人（安全事故）", "微博转发 1200 次"],
            posts=[
                PostSpec("翠湖花园5栋电梯又困人了，打物业电话半小时没人来", hours_ago=0.5),
                PostSpec("电梯困人视频都传疯了，物业还在推诿", hours_ago=1.5, platform="tieba"),
                PostSpec("维保师傅到了，人已经救出来", sentiment="neu", score=0.0, hours_ago=3),
            ],
        )
        make_alert(session, event=lift)
        make_event(
            session,
            company_id=company.id,
            community_id=jinjiang.id,
            grade=3,
            title="锦江苑停车费上涨引不满",
            posts=[PostSpec("锦江苑停车费一下涨了一倍", platform="tieba", hours_ago=5, matched=["锦江苑"])],
        )
        make_event(
            session,
            company_id=company.id,
            community_id=binjiang.id,
            grade=4,
            title="滨江壹号垃圾清运不及时",
            posts=[PostSpec("垃圾两天没人收", hours_ago=30, matched=["滨江壹号"])],
        )
        return {"lift": lift.id, "company": company.id, "cuihu": cuihu.id}


def test_pr_officer_filters_opens_confirms_and_sees_new_events_live(
    server: LiveServer, new_page: Callable[..., Page]
) -> None:
    ids = _seed(server)
    page = new_page()
    page.goto(f"{server.url}/opinion")
    expect(page).to_have_url(f"{server.url}/login?next=/opinion")
    log_in(page, "pr", DEMO_PASSWORD)
    expect(page).to_have_url(f"{server.url}/opinion")
    expect(page.locator("#live")).to_have_attribute("data-live", "1")

    items = page.locator("#events li[data-event-id]")
    expect(items).to_have_count(3)
    badges = page.locator("#events .grade")
    expect(badges).to_have_text(["Ⅰ级", "Ⅲ级", "Ⅳ级"])
    assert badges.first.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(192, 57, 43)"  # 红
    assert badges.last.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(46, 134, 222)"  # 蓝
    expect(items.first).to_contain_text("翠湖花园电梯困人视频热传")
    expect(items.first).to_contain_text("贴吧、微博")
    expect(items.first).to_contain_text("预警未确认")

    page.locator("#f-community").select_option(label="锦江苑")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("锦江苑停车费上涨引不满")
    page.locator("#f-community").select_option("")
    page.locator("#f-grade").select_option("g1")
    expect(items).to_have_count(1)
    # The count alone is already true of the 锦江苑 list still on screen: wait for the new one.
    expect(items.first).to_contain_text("翠湖花园电梯困人视频热传")
    expect(page.locator("#export")).to_have_attribute("href", re.compile(r"events\.csv\?grade=1$"))

    items.first.click()
    expect(page).to_have_url(f"{server.url}/opinion?event={ids['lift']}")
    detail = page.locator("#detail")
    expect(detail.locator("#reasons")).to_contain_text("涉及电梯困人（安全事故）")
    posts = detail.locator("#posts .post")
    expect(posts).to_have_count(3)
    expect(posts.first).to_contain_text("打物业电话半小时没人来")
    expect(posts.first).to_contain_text("负面")
    expect(posts.first).to_contain_text("翠湖花园")  # the matched term
    expect(posts.first.get_by_role("link", name="查看原文")).to_have_attribute(
        "href", re.compile("^https://")
    )
    chart = detail.locator("canvas#chart")
    expect(chart).to_have_attribute("data-points", re.compile("^[34]$"))  # hourly, over 2.5 hours of posts
    assert chart.evaluate("c => Chart.getChart(c) !== undefined && c.width > 0 && c.height > 0")
    assert (
        chart.evaluate("c => Chart.getChart(c).data.datasets.map(d => d.label).join()")
        == "负面,中性,正面,平均情绪"
    )

    page.locator("#note-text").fill("已联系项目经理核实，维保单位在场")
    page.locator("#actions button[data-to='confirmed']").click()
    expect(page.locator("#timeline")).to_contain_text("状态：新 → 已确认。已联系项目经理核实，维保单位在场")
    expect(page.locator("#timeline")).to_contain_text("品牌专员陈晨")
    expect(page.locator("#event-title .status")).to_have_text("已确认")
    expect(page.locator("#actions button[data-to='handling']")).to_be_visible()
    expect(items.first.locator(".status")).to_have_text("已确认")

    # A new Ⅰ event found by the crawl pipeline appears without a reload.
    with get_database(server.settings).session() as session:
        fresh = make_event(
            session,
            company_id=ids["company"],
            community_id=ids["cuihu"],
            grade=1,
            title="翠湖花园地库水浸多车被淹",
            posts=[PostSpec("翠湖花园地库进水了，车都泡了", hours_ago=0.1)],
        )
        fresh_id = fresh.id
    publish_changes(settings=server.settings, company_id=ids["company"], event_ids=[fresh_id])
    expect(items).to_have_count(2, timeout=3000)
    expect(items.first).to_contain_text("翠湖花园地库水浸多车被淹")
    expect(page.locator("#event-title")).to_contain_text("翠湖花园电梯困人视频热传")  # still open


def test_a_robot_message_link_opens_the_event_and_the_alert_is_acknowledged(
    server: LiveServer, new_page: Callable[..., Page]
) -> None:
    ids = _seed(server)
    page = new_page()
    page.goto(f"{server.url}/opinion?event={ids['lift']}")
    log_in(page, "pr", DEMO_PASSWORD)
    expect(page).to_have_url(f"{server.url}/opinion?event={ids['lift']}")
    expect(page.locator("#event-title")).to_contain_text("翠湖花园电梯困人视频热传")
    alert = page.locator("#alerts .alert-row").first
    expect(alert).to_contain_text("Ⅰ级")
    alert.get_by_role("button", name="确认收到").click()
    expect(page.locator("#alerts .alert-row").first).to_contain_text("已确认（品牌专员陈晨")
    expect(page.locator("#timeline")).to_contain_text("确认收到Ⅰ级（红）预警（舆情页面）")
    expect(page.locator("#events li[data-event-id]").first).not_to_contain_text("预警未确认")
