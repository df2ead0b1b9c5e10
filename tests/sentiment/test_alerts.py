"""Alert delivery rules a PR officer relies on: an upgrade alerts again, a failed robot is retried
alone, the hourly limit folds Ⅲ/Ⅳ into a digest (never Ⅰ/Ⅱ), and an unacknowledged Ⅰ/Ⅱ alert
escalates while an acknowledged one does not."""

from __future__ import annotations

from sqlalchemy import select

from core.db import get_database
from core.settings import Settings
from sentiment import alerts
from sentiment.models import Alert, AlertChannel, AlertRoute, EventLog
from tests.conftest import LiveServer
from tests.robots import FakeRobot
from tests.sentiment.factories import PostSpec, community, demo_company, make_event
from tests.services import allowing

LIFT = PostSpec(text="翠湖花园3栋电梯困人二十分钟，物业电话打不通", title="电梯困人")


def routes(session, company_id: int, robots: FakeRobot) -> None:  # type: ignore[no-untyped-def]
    session.add_all([
        AlertRoute(company_id=company_id, name="品牌部群", channel=AlertChannel.wecom,
                   target=robots.url("wecom", "pr"), worst_grade=4),
        AlertRoute(company_id=company_id, name="总经理群", channel=AlertChannel.feishu,
                   target=robots.url("feishu", "gm"), worst_grade=1, escalation=True),
    ])  # fmt: skip
    session.flush()


def test_an_upgrade_alerts_again_and_a_failed_robot_is_retried_alone(demo: Settings) -> None:
    with FakeRobot() as robots, get_database(demo).session() as session:
        demo = allowing(demo, robots.url("wecom"))  # the fake robot, on 127.0.0.1
        company = demo_company(session)
        routes(session, company.id, robots)
        event = make_event(session, company_id=company.id, title="翠湖花园电梯困人",
                           community_id=community(session, "cuihu").id, grade=3, posts=[LIFT])  # fmt: skip
        first = alerts.raise_alert(session=session, event=event)
        assert first is not None and alerts.raise_alert(session=session, event=event) is None  # same grade
        assert alerts.deliver(session=session, settings=demo, alert=first) == []
        assert [m.token for m in robots.wait_for(1)] == ["pr"]  # Ⅲ: not the Ⅰ-only group

        event.grade = 1  # the story grew
        upgraded = alerts.raise_alert(session=session, event=event)
        assert upgraded is not None and upgraded.grade == 1
        robots.fail_next(1, status=500)  # the first robot of this delivery fails
        errors = alerts.deliver(session=session, settings=demo, alert=upgraded)
        assert len(errors) == 1 and "品牌部群" in errors[0]
        assert len(upgraded.delivered) == 1  # the other group has it
        assert alerts.deliver(session=session, settings=demo, alert=upgraded) == []  # the retry
        messages = robots.wait_for(3)
        assert sorted(m.token for m in messages[1:]) == ["gm", "pr"]  # each group once
        assert "Ⅰ级" in messages[-1].body["markdown"]["content"] or "Ⅰ级" in str(messages[-1].body)


def test_the_hourly_limit_folds_minor_alerts_into_a_digest_but_never_severe_ones(demo: Settings) -> None:
    with FakeRobot() as robots, get_database(demo).session() as session:
        settings = allowing(demo.model_copy(update={"alert_rate_per_hour": 1}), robots.url("wecom"))
        company = demo_company(session)
        routes(session, company.id, robots)
        minor = [
            alerts.raise_alert(session=session, event=make_event(
                session, company_id=company.id, title=f"小事{i}", grade=4, posts=[LIFT]))
            for i in range(3)
        ]  # fmt: skip
        severe = alerts.raise_alert(session=session, event=make_event(
            session, company_id=company.id, title="高空坠物", grade=2, posts=[LIFT]))  # fmt: skip
        for alert in [*minor, severe]:
            assert alert is not None
            alerts.deliver(session=session, settings=settings, alert=alert)
        assert [a.held_back for a in minor] == [False, True, True]  # type: ignore[union-attr]
        assert severe is not None and not severe.held_back
        assert alerts.send_digest(session=session, settings=settings, company_id=company.id) == 2
        assert alerts.send_digest(session=session, settings=settings, company_id=company.id) == 0
        bodies = [str(m.body) for m in robots.wait_for(3)]  # the first minor, the severe, the digest
        assert sum("汇总" in b for b in bodies) == 1 and any("高空坠物" in b for b in bodies)


def test_an_unacknowledged_severe_alert_escalates_and_an_acknowledged_one_does_not(demo: Settings) -> None:
    with FakeRobot() as robots, get_database(demo).session() as session:
        demo = allowing(demo, robots.url("wecom"))
        company = demo_company(session)
        routes(session, company.id, robots)
        quiet = alerts.raise_alert(session=session, event=make_event(
            session, company_id=company.id, title="地库水浸", grade=2, posts=[LIFT]))  # fmt: skip
        seen = alerts.raise_alert(session=session, event=make_event(
            session, company_id=company.id, title="电梯困人", grade=2, posts=[LIFT]))  # fmt: skip
        assert quiet is not None and seen is not None
        assert alerts.acknowledge(session=session, alert=seen, staff_id=None, via="（测试）")
        assert alerts.escalate(session=session, settings=demo, alert=seen) is None
        assert alerts.escalate(session=session, settings=demo, alert=quiet) == []
        [message] = robots.wait_for(1)
        assert message.token == "gm" and "未确认" in str(message.body)
        assert quiet.escalated_at is not None
        logs = session.scalars(select(EventLog.text).where(EventLog.event_id == quiet.event_id)).all()
        assert any("未确认，已升级通知" in text for text in logs)
        assert session.scalar(select(Alert.acknowledged_at).where(Alert.id == seen.id)) is not None


def test_the_link_in_an_alert_acknowledges_only_with_its_own_signature(demo: Settings) -> None:
    import pytest

    from core.errors import NotFound

    with get_database(demo).session() as session:
        company = demo_company(session)
        alert = alerts.raise_alert(session=session, event=make_event(
            session, company_id=company.id, title="电梯困人", grade=1, posts=[LIFT]))  # fmt: skip
        assert alert is not None
        token = alerts.ack_token(demo, alert.id)
        assert alerts.alert_for_token(session=session, settings=demo, token=token).id == alert.id
        tampered = token[:-1] + ("1" if token[-1] == "0" else "0")  # always another last character
        with pytest.raises(NotFound):
            alerts.alert_for_token(session=session, settings=demo, token=tampered)


def test_admins_add_the_names_we_are_known_by_and_posts_with_them_are_kept(server) -> None:  # type: ignore[no-untyped-def]
    from sentiment.relevance import build_watchlist, judge

    with get_database(server.settings).session() as session:
        cuihu = community(session, "cuihu").id
    with server.login("admin") as admin:
        made = admin.post("/api/opinion/watch-terms", json={"term": "翠湖小区", "community_id": cuihu})
        assert made.status_code == 201, made.text
        brand = admin.post("/api/opinion/watch-terms", json={"term": "安居生活", "kind": "company"})
        assert brand.status_code == 201
        twice = admin.post("/api/opinion/watch-terms", json={"term": "安居生活", "kind": "company"})
        assert twice.status_code == 409 and "已存在" in twice.json()["error"]["message"]
        lonely = admin.post("/api/opinion/watch-terms", json={"term": "西湖边", "kind": "address"})
        assert lonely.status_code == 422
    with server.login("pr") as pr:
        assert {t["term"] for t in pr.get("/api/opinion/watch-terms").json()} == {"翠湖小区", "安居生活"}
        assert pr.post("/api/opinion/watch-terms", json={"term": "x小区"}).status_code == 403
    with get_database(server.settings).session() as session:
        watchlist = build_watchlist(session=session, company_id=demo_company(session).id)
    assert judge("安居生活App又崩了，缴费缴不了", watchlist).relevant
    alias = judge("杭州翠湖小区的电梯又坏了", watchlist)
    assert alias.relevant and "翠湖小区" in alias.matched
    with server.login("admin") as admin:
        assert admin.delete(f"/api/opinion/watch-terms/{brand.json()['id']}").status_code == 204
        assert admin.delete("/api/opinion/watch-terms/99999").status_code == 404


def test_an_admin_sends_a_test_message_to_each_route_and_reads_why_one_failed(demo: Settings) -> None:
    with (
        FakeRobot(dingtalk_secret="SEC-right") as robots,
        LiveServer(allowing(demo, robots.url("wecom"))) as server,
        server.login("admin") as admin,
    ):
        with get_database(server.settings).session() as session:
            cuihu = community(session, "cuihu").id

        def route(**fields):  # type: ignore[no-untyped-def]
            made = admin.post("/api/opinion/alert-routes", json=fields)
            assert made.status_code == 201, made.text
            return made.json()["id"]

        brand = route(name="品牌部群", channel="wecom", target=robots.url("wecom", "pr"), worst_grade=2,
                      community_id=cuihu, escalation=True)  # fmt: skip
        wrong = route(name="总经理钉钉群", channel="dingtalk", target=robots.url("dingtalk", "gm"),
                      secret="SEC-wrong")  # fmt: skip
        mail = route(name="总经理邮箱", channel="email", target="gm@anju.example")

        sent = admin.post(f"/api/opinion/alert-routes/{brand}/test")
        assert sent.status_code == 200 and sent.json() == {"delivered": True, "error": None}
        [message] = robots.wait_for(1)
        text = message.body["markdown"]["content"]
        assert message.token == "pr" and "【测试】" in text and "品牌部群" in text
        assert "翠湖花园" in text and "Ⅱ级" in text and "升级通知" in text  # what this route receives

        refused = admin.post(f"/api/opinion/alert-routes/{wrong}/test").json()
        assert refused["delivered"] is False
        assert "总经理钉钉群" in refused["error"] and "310000" in refused["error"]  # the platform's code
        no_server = admin.post(f"/api/opinion/alert-routes/{mail}/test").json()  # ANJU_SMTP_URL unset
        assert no_server == {"delivered": False, "error": "未配置邮件服务器（ANJU_SMTP_URL）"}
        robots.fail_next(1, status=502)
        down = admin.post(f"/api/opinion/alert-routes/{brand}/test").json()
        assert down["delivered"] is False and "HTTP 502" in down["error"]
        assert admin.post("/api/opinion/alert-routes/99999/test").status_code == 404
        assert len(robots.messages) == 1  # only the one that went through
        with server.login("pr") as pr:
            assert pr.post(f"/api/opinion/alert-routes/{brand}/test").status_code == 403
