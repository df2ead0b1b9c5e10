"""The opinion feed API over real HTTP: filters and who sees what, one event with its posts and
chart series, the workflow with notes, the CSV export, alerts acknowledged in the feed and by the
robot message's signed link, alert routes with their secrets hidden, and the sources API."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import timedelta
from typing import Any

import redis
from rq import Queue
from sqlalchemy import select

from accounts import service as accounts_service
from accounts.models import Role
from anju.demo import DEMO_PASSWORD
from core.db import get_database, utcnow
from core.live import channel, company_topic
from crawlers.models import CrawlRun, RunStatus, Source
from org import service as org_service
from sentiment.alerts import ack_token
from sentiment.models import Alert, AlertRoute, Event, EventKind, EventLog, EventStatus
from tests.conftest import LiveServer
from tests.sentiment.factories import PostSpec, community, demo_company, make_alert, make_event


def _seed_feed(server: LiveServer) -> dict[str, int]:
    """Four events of the demo company (one per community, one company-wide internal warning)
    and one of another company."""
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
                PostSpec("翠湖花园电梯又困人了，物业推诿", hours_ago=0.5),
                PostSpec("电梯困人半小时没人来", hours_ago=2, platform="tieba"),
            ],
        )
        fees = make_event(
            session,
            company_id=company.id,
            community_id=jinjiang.id,
            grade=3,
            title="锦江苑停车费上涨引不满",
            status=EventStatus.handling,
            posts=[PostSpec("锦江苑停车费一下涨了一倍", platform="tieba", hours_ago=48, matched=["锦江苑"])],
        )
        news = make_event(
            session,
            company_id=company.id,
            community_id=binjiang.id,
            grade=4,
            title="滨江壹号绿化改造获好评",
            status=EventStatus.handled,
            posts=[
                PostSpec(
                    "滨江壹号绿化改造完成",
                    sentiment="pos",
                    score=0.7,
                    platform="rss:news.example.com",
                    hours_ago=240,
                    matched=["滨江壹号"],
                )
            ],
        )
        internal = make_event(
            session,
            company_id=company.id,
            grade=None,
            title="漏水投诉激增",
            kind=EventKind.internal,
            topic="漏水",
            hours_ago=120,
        )
        other_company = org_service.create_company(session=session, code="other", name="别家物业")
        other = make_event(session, company_id=other_company.id, grade=1, title="别家物业的事件")
        return {
            "lift": lift.id,
            "fees": fees.id,
            "news": news.id,
            "internal": internal.id,
            "other": other.id,
            "cuihu": cuihu.id,
            "jinjiang": jinjiang.id,
            "company": company.id,
        }


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["items"]]


def test_the_feed_filters_pages_and_shows_only_what_the_user_may_see(server: LiveServer) -> None:
    ids = _seed_feed(server)
    lift, fees, news, internal = ids["lift"], ids["fees"], ids["news"], ids["internal"]
    with server.login("pr") as pr:
        everything = pr.get("/api/opinion/events")
        assert _ids(everything) == [
            lift,
            fees,
            internal,
            news,
        ]  # newest activity first; not the other company's
        first = everything.json()["items"][0]
        assert first["grade_label"] == "Ⅰ级" and first["community"] == "翠湖花园"
        assert first["platform_labels"] == ["贴吧", "微博"] and first["post_count"] == 2
        assert first["status_label"] == "新"
        assert everything.json()["total"] == 4

        assert _ids(pr.get("/api/opinion/events", params={"grade": 1})) == [lift]
        assert _ids(pr.get("/api/opinion/events", params={"grade_max": 3})) == [lift, fees]
        assert _ids(pr.get("/api/opinion/events", params={"graded": "true"})) == [lift, fees, news]
        assert _ids(pr.get("/api/opinion/events", params={"community_id": ids["jinjiang"]})) == [fees]
        assert _ids(pr.get("/api/opinion/events", params={"platform": "tieba"})) == [lift, fees]
        assert _ids(pr.get("/api/opinion/events", params={"platform": "rss"})) == [news]
        since = (utcnow() - timedelta(days=3)).isoformat()
        assert _ids(pr.get("/api/opinion/events", params={"since": since})) == [lift, fees]
        assert _ids(pr.get("/api/opinion/events", params=[("status", "new"), ("status", "handling")])) == [
            lift,
            fees,
            internal,
        ]
        assert _ids(pr.get("/api/opinion/events", params={"status": "handled"})) == [news]
        assert _ids(pr.get("/api/opinion/events", params={"kind": "internal"})) == [internal]
        assert _ids(pr.get("/api/opinion/events", params={"q": "停车"})) == [fees]
        assert _ids(pr.get("/api/opinion/events", params={"q": "100%"})) == []
        page = pr.get("/api/opinion/events", params={"limit": 2, "offset": 2})
        assert _ids(page) == [internal, news] and page.json()["total"] == 4

        bad = pr.get("/api/opinion/events", params={"grade": 5})
        assert bad.status_code == 422
        reversed_range = pr.get(
            "/api/opinion/events",
            params={"since": utcnow().isoformat(), "until": (utcnow() - timedelta(days=1)).isoformat()},
        )
        assert reversed_range.status_code == 422
        assert reversed_range.json()["error"]["message"] == "起始时间应早于结束时间"

        options = pr.get("/api/opinion/filters").json()
        assert [c["label"] for c in options["communities"]] == ["翠湖花园", "锦江苑", "滨江壹号"]
        assert {"value": "rss:news.example.com", "label": "订阅·news.example.com"} in options["platforms"]

        missing = pr.get("/api/opinion/events/999999")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "没有这个舆情事件"
        assert pr.get(f"/api/opinion/events/{ids['other']}").status_code == 404  # another company's

    # A PR officer of one community: that community and the company-wide warning.
    with get_database(server.settings).session() as session:
        accounts_service.create_user(
            session=session,
            company_id=ids["company"],
            username="pr-cuihu",
            password=DEMO_PASSWORD,
            role=Role.pr,
            community_ids=[ids["cuihu"]],
        )
    with server.login("pr-cuihu") as scoped:
        assert _ids(scoped.get("/api/opinion/events")) == [lift, internal]
        assert scoped.get(f"/api/opinion/events/{fees}").status_code == 404
        assert scoped.post(f"/api/opinion/events/{fees}/notes", json={"text": "看看"}).status_code == 404

    # Supervisors and admins read the feed too; agents do not.
    for username in ("supervisor", "admin"):
        with server.login(username) as staff:
            assert len(_ids(staff.get("/api/opinion/events"))) == 4
    with server.login("agent") as agent:
        for path in (
            "/api/opinion/events",
            f"/api/opinion/events/{lift}",
            "/api/opinion/events.csv",
            f"/api/opinion/events/{lift}/series",
            "/api/opinion/stream",
            "/api/opinion/filters",
        ):
            response = agent.get(path)
            assert response.status_code == 403, path
            assert response.json()["error"]["message"] == "您的角色无权执行此操作"
        assert (
            agent.post(f"/api/opinion/events/{lift}/status", json={"status": "confirmed"}).status_code == 403
        )
    with server.client() as anonymous:
        assert anonymous.get("/api/opinion/events").status_code == 401


def test_an_event_shows_its_posts_timeline_alerts_and_chart_series(server: LiveServer) -> None:
    now = utcnow().replace(minute=30, second=0, microsecond=0)
    with get_database(server.settings).session() as session:
        company = demo_company(session)
        cuihu = community(session, "cuihu")
        event = make_event(
            session,
            company_id=company.id,
            community_id=cuihu.id,
            grade=2,
            title="翠湖花园 3 栋漏水",
            now=now,
            reasons=["负面情绪强烈", "两个平台同时出现"],
            posts=[
                PostSpec("3栋漏水三天没人管，电话 13812345678", hours_ago=3, risk_reasons=["涉及漏水"]),
                PostSpec("楼上漏水物业推诿", hours_ago=1, platform="tieba", matched=["翠湖花园", "3栋"]),
                PostSpec("师傅来修了，还算及时", sentiment="pos", score=0.6, hours_ago=1),
            ],
        )
        make_alert(session, event=event)
        long = make_event(
            session,
            company_id=company.id,
            community_id=cuihu.id,
            grade=4,
            title="翠湖花园停车难",
            now=now,
            posts=[PostSpec("停车难", hours_ago=24 * 5), PostSpec("还是停车难", hours_ago=2)],
        )
        event_id, long_id = event.id, long.id

    with server.login("pr") as pr:
        detail = pr.get(f"/api/opinion/events/{event_id}").json()
        assert detail["event"]["reasons"] == ["负面情绪强烈", "两个平台同时出现"]
        assert detail["event"]["unacknowledged_alerts"] == 1
        assert detail["post_total"] == 3
        texts = [p["text"] for p in detail["posts"]]
        assert texts[-1].startswith("3栋漏水三天没人管")  # the oldest last
        assert "13812345678" not in json.dumps(detail, ensure_ascii=False)  # personal data masked
        oldest = detail["posts"][-1]
        assert oldest["sentiment"] == "neg" and oldest["risk_reasons"] == ["涉及漏水"]
        assert oldest["matched"] == ["翠湖花园"] and oldest["platform_label"] == "微博"
        assert oldest["sentiment_words"] == ["推诿"]
        assert [entry["kind"] for entry in detail["logs"]] == ["created", "alert"]
        assert detail["alerts"][0]["grade_label"] == "Ⅱ级" and detail["alerts"][0]["acknowledged_at"] is None
        assert detail["transitions"] == ["confirmed"]

        series = pr.get(f"/api/opinion/events/{event_id}/series").json()
        assert series["unit"] == "hour"
        points = series["points"]
        assert [(p["posts"], p["neg"], p["neu"], p["pos"]) for p in points] == [
            (1, 1, 0, 0),
            (0, 0, 0, 0),
            (2, 1, 0, 1),
        ]
        assert points[0]["mean_score"] == -0.8 and points[1]["mean_score"] is None
        assert points[2]["mean_score"] == -0.1
        assert points[0]["at"].endswith("+08:00") and points[0]["label"].endswith(":00")

        daily = pr.get(f"/api/opinion/events/{long_id}/series").json()
        assert daily["unit"] == "day"
        assert sum(p["posts"] for p in daily["points"]) == 2 and len(daily["points"]) in (5, 6)
        assert pr.get("/api/opinion/events/999999/series").status_code == 404


def _listen(server: LiveServer, company_id: int) -> Any:
    pubsub = redis.Redis.from_url(server.settings.effective_redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel(server.settings, company_topic(company_id)))
    return pubsub


def _published(pubsub: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            seen.append(json.loads(message["data"]))
            deadline = min(deadline, time.monotonic() + 0.3)
    return seen


def test_the_workflow_moves_one_step_at_a_time_with_notes(server: LiveServer) -> None:
    ids = _seed_feed(server)
    lift = ids["lift"]
    with get_database(server.settings).session() as session:
        event = session.get(Event, lift)
        assert event is not None
        alert_id = make_alert(session, event=event).id
    pubsub = _listen(server, ids["company"])
    with server.login("pr") as pr:
        skipped = pr.post(f"/api/opinion/events/{lift}/status", json={"status": "handled"})
        assert skipped.status_code == 409
        assert skipped.json()["error"]["message"].startswith("事件当前为「新」，不能改为「已处置」")
        unknown = pr.post(f"/api/opinion/events/{lift}/status", json={"status": "closed"})
        assert unknown.status_code == 422

        confirmed = pr.post(
            f"/api/opinion/events/{lift}/status", json={"status": "confirmed", "note": "已联系项目经理"}
        )
        assert confirmed.status_code == 200, confirmed.text
        body = confirmed.json()
        assert body["event"]["status"] == "confirmed" and body["transitions"] == ["handling"]
        status_log = [e for e in body["logs"] if e["kind"] == "status"][-1]
        assert (
            status_log["text"] == "状态：新 → 已确认。已联系项目经理"
            and status_log["staff"] == "品牌专员陈晨"
        )
        # Confirming the event acknowledged its alert: nobody needs paging any more.
        assert body["alerts"][0]["acknowledged_by"] == "品牌专员陈晨"
        assert body["event"]["unacknowledged_alerts"] == 0
        assert {"type": "opinion", "event_ids": [lift], "community_id": ids["cuihu"]} in _published(pubsub)

        assert pr.post(f"/api/opinion/events/{lift}/status", json={"status": "handling"}).status_code == 200
        note = pr.post(f"/api/opinion/events/{lift}/notes", json={"text": "已安排维保单位全面检修"})
        assert (
            note.status_code == 201
            and note.json()["kind"] == "note"
            and note.json()["staff"] == "品牌专员陈晨"
        )
        assert pr.post(f"/api/opinion/events/{lift}/notes", json={"text": ""}).status_code == 422
        assert pr.post(f"/api/opinion/events/{lift}/notes", json={"text": "   "}).status_code == 422
        done = pr.post(
            f"/api/opinion/events/{lift}/status", json={"status": "handled", "note": "已回应"}
        ).json()
        assert done["event"]["status_label"] == "已处置" and done["transitions"] == ["handling"]

        again = pr.post(f"/api/opinion/events/{lift}/status", json={"status": "handling"})
        assert again.status_code == 422 and again.json()["error"]["message"] == "重新处置请填写原因"
        reopened = pr.post(
            f"/api/opinion/events/{lift}/status", json={"status": "handling", "note": "又有新帖"}
        )
        assert reopened.json()["event"]["status"] == "handling"

        timeline = pr.get(f"/api/opinion/events/{lift}").json()["logs"]
        assert [e["text"] for e in timeline if e["kind"] in ("status", "note")] == [
            "状态：新 → 已确认。已联系项目经理",
            "状态：已确认 → 处置中",
            "已安排维保单位全面检修",
            "状态：处置中 → 已处置。已回应",
            "状态：已处置 → 处置中。又有新帖",
        ]
    with get_database(server.settings).session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.acknowledged_at is not None
        refused = session.scalars(
            select(EventLog).where(EventLog.event_id == lift, EventLog.kind == "status")
        )
        assert len(list(refused)) == 4  # the refused changes left nothing behind
    pubsub.close()


def test_csv_export_carries_the_filters_and_opens_in_excel(server: LiveServer) -> None:
    ids = _seed_feed(server)
    with get_database(server.settings).session() as session:
        make_event(
            session,
            company_id=ids["company"],
            community_id=ids["cuihu"],
            grade=4,
            title='=HYPERLINK("http://evil.example")',
            hours_ago=300,
        )
    with server.login("pr") as pr:
        response = pr.get("/api/opinion/events.csv")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in response.headers["content-disposition"]
        assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert rows[0] == [
            "事件编号",
            "等级",
            "标题",
            "社区",
            "平台",
            "帖子数",
            "负面数",
            "状态",
            "首次发现",
            "最近更新",
            "研判理由",
        ]
        assert len(rows) == 6
        lift = rows[1]
        assert lift[:8] == [
            str(ids["lift"]),
            "Ⅰ级",
            "翠湖花园电梯困人视频热传",
            "翠湖花园",
            "贴吧、微博",
            "2",
            "2",
            "新",
        ]
        assert lift[10] == "涉及电梯困人（安全事故）；微博转发 1200 次"
        assert rows[3][3] == "全公司" and rows[3][1] == "未定级"
        assert rows[5][2].startswith("'=HYPERLINK")  # not run as a formula

        filtered = pr.get("/api/opinion/events.csv", params={"grade_max": 3, "status": "handling"})
        rows = list(csv.reader(io.StringIO(filtered.content.decode("utf-8-sig"))))
        assert [r[0] for r in rows[1:]] == [str(ids["fees"])]
        assert rows[1][7] == "处置中"


def test_alerts_are_acknowledged_in_the_feed_and_by_the_signed_link(server: LiveServer) -> None:
    ids = _seed_feed(server)
    with get_database(server.settings).session() as session:
        lift, fees = session.get(Event, ids["lift"]), session.get(Event, ids["fees"])
        assert lift is not None and fees is not None
        in_feed = make_alert(session, event=lift).id
        by_link = make_alert(session, event=fees).id
    with server.login("pr") as pr:
        acked = pr.post(f"/api/opinion/alerts/{in_feed}/ack")
        assert acked.status_code == 200
        assert acked.json()["acknowledged_by"] == "品牌专员陈晨" and acked.json()["acknowledged_at"]
        assert pr.post(f"/api/opinion/alerts/{in_feed}/ack").status_code == 200  # twice is harmless
        assert pr.post("/api/opinion/alerts/999999/ack").status_code == 404
        logs = pr.get(f"/api/opinion/events/{ids['lift']}").json()["logs"]
        assert [e["text"] for e in logs if e["kind"] == "ack"] == ["确认收到Ⅰ级（红）预警（舆情页面）"]
    with server.login("agent") as agent:
        assert agent.post(f"/api/opinion/alerts/{by_link}/ack").status_code == 403

    token = ack_token(server.settings, by_link)
    with server.client() as anyone:  # no login: the link is the credential
        page = anyone.get(f"/opinion/ack/{token}")
        assert page.status_code == 200
        assert "锦江苑停车费上涨引不满" in page.text and "<button" in page.text and "确认收到" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        with get_database(server.settings).session() as session:
            alert = session.get(Alert, by_link)
            assert alert is not None and alert.acknowledged_at is None  # looking is not acknowledging

        done = anyone.post(f"/opinion/ack/{token}")
        assert done.status_code == 200 and "已确认收到" in done.text and "<button" not in done.text
        assert "已确认收到" in anyone.get(f"/opinion/ack/{token}").text

        for bad in (f"{by_link}.{'0' * 32}", "garbage", f"{in_feed}.{token.partition('.')[2]}"):
            assert anyone.get(f"/opinion/ack/{bad}").status_code == 404
            refused = anyone.post(f"/opinion/ack/{bad}")
            assert refused.status_code == 404 and "确认链接无效" in refused.text
    with get_database(server.settings).session() as session:
        alert = session.get(Alert, by_link)
        assert alert is not None and alert.acknowledged_at is not None and alert.acknowledged_by is None
        texts = session.scalars(
            select(EventLog.text).where(EventLog.event_id == ids["fees"], EventLog.kind == "ack")
        )
        assert list(texts) == ["确认收到Ⅲ级（黄）预警（预警消息链接）"]


def test_admins_configure_alert_routes_and_never_get_the_secrets_back(server: LiveServer) -> None:
    webhook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0f1e2d3c-aaaa-bbbb-cccc-9d8e7f6a5b4c"
    with server.login("admin") as admin:
        created = admin.post(
            "/api/opinion/alert-routes",
            json={
                "name": "品牌部群",
                "channel": "wecom",
                "target": webhook,
                "secret": "SECsupersecretvalue9876",
                "worst_grade": 2,
                "escalation": True,
            },
        )
        assert created.status_code == 201, created.text
        route = created.json()
        assert route["target"] == "qyapi.weixin.qq.com/…5b4c" and route["secret"] == "****9876"
        listed = admin.get("/api/opinion/alert-routes")
        for text in (created.text, listed.text, admin.get(f"/api/opinion/alert-routes/{route['id']}").text):
            assert "0f1e2d3c" not in text and "supersecret" not in text

        # An edit without the credentials keeps them; an empty secret removes it.
        edited = admin.put(
            f"/api/opinion/alert-routes/{route['id']}",
            json={"name": "品牌部值班群", "channel": "wecom", "worst_grade": 3},
        )
        assert edited.status_code == 200 and edited.json()["name"] == "品牌部值班群"
        with get_database(server.settings).session() as session:
            stored = session.get(AlertRoute, route["id"])
            assert (
                stored is not None and stored.target == webhook and stored.secret == "SECsupersecretvalue9876"
            )
            assert stored.worst_grade == 3 and stored.escalation is False
        cleared = admin.put(
            f"/api/opinion/alert-routes/{route['id']}",
            json={"name": "品牌部值班群", "channel": "wecom", "secret": ""},
        )
        assert cleared.json()["secret"] is None

        mail = admin.post(
            "/api/opinion/alert-routes",
            json={"name": "总经理邮箱", "channel": "email", "target": "gm@example.com, pr@example.com"},
        )
        assert mail.status_code == 201 and mail.json()["target"] == "gm@example.com,pr@example.com"
        bad_mail = admin.post(
            "/api/opinion/alert-routes", json={"name": "x", "channel": "email", "target": "nobody"}
        )
        assert bad_mail.status_code == 422 and "邮箱" in bad_mail.json()["error"]["message"]
        bad_hook = admin.post(
            "/api/opinion/alert-routes", json={"name": "x", "channel": "dingtalk", "target": "ftp://x"}
        )
        assert bad_hook.status_code == 422 and "Webhook" in bad_hook.json()["error"]["message"]
        assert (
            admin.post(
                "/api/opinion/alert-routes",
                json={"name": "x", "channel": "wecom", "target": webhook, "community_id": 999999},
            ).status_code
            == 404
        )
        assert (
            admin.post(
                "/api/opinion/alert-routes",
                json={"name": "x", "channel": "wecom", "target": webhook, "worst_grade": 5},
            ).status_code
            == 422
        )

        assert admin.delete(f"/api/opinion/alert-routes/{mail.json()['id']}").status_code == 204
        assert admin.get(f"/api/opinion/alert-routes/{mail.json()['id']}").status_code == 404
        assert [r["name"] for r in admin.get("/api/opinion/alert-routes").json()] == ["品牌部值班群"]
    with server.login("pr") as pr:
        assert pr.get("/api/opinion/alert-routes").status_code == 403
        assert (
            pr.post(
                "/api/opinion/alert-routes", json={"name": "x", "channel": "wecom", "target": webhook}
            ).status_code
            == 403
        )


SOURCES_YAML = """\
sources:
  - key: cuihu-tieba
    name: 翠湖花园吧
    kind: tieba
    url: https://tieba.baidu.com
    config: {forums: [翠湖花园]}
    community: 翠湖花园
  - key: city-news
    name: 城市新闻
    kind: rss
    url: https://news.example.com/feed.xml
    authority: media
"""


def test_admins_manage_sources_and_run_them_now(server: LiveServer) -> None:
    source = {
        "key": "weibo-brand",
        "name": "微博品牌词",
        "kind": "weibo",
        "url": "https://m.weibo.cn",
        "authority": "self_media",
        "config": {"keywords": ["安居物业"], "cookies": "SUB=abc123secret"},
    }
    with server.login("admin") as admin:
        created = admin.post("/api/crawl/sources", json=source)
        assert created.status_code == 201, created.text
        assert created.json()["config"] == {"keywords": ["安居物业"], "cookies": "******"}
        assert admin.post("/api/crawl/sources", json=source).status_code == 409
        assert admin.post("/api/crawl/sources", json={**source, "key": "bad key!"}).status_code == 422

        # What GET gave, sent back with a change: the hidden cookie stays.
        changed = {**created.json(), "interval_minutes": 60}
        updated = admin.put("/api/crawl/sources/weibo-brand", json=changed)
        assert updated.status_code == 200 and updated.json()["interval_minutes"] == 60
        with get_database(server.settings).session() as session:
            stored = session.scalars(select(Source).where(Source.key == "weibo-brand")).one()
            assert stored.config["cookies"] == "SUB=abc123secret"
            source_id = stored.id
        assert (
            admin.put("/api/crawl/sources/weibo-brand", json={**changed, "key": "renamed"}).status_code == 422
        )
        assert admin.put("/api/crawl/sources/nope", json={**changed, "key": "nope"}).status_code == 404

        imported = admin.post(
            "/api/crawl/sources/import",
            content=SOURCES_YAML.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert imported.status_code == 200, imported.text
        assert imported.json() == {"created": ["cuihu-tieba", "city-news"], "updated": []}
        again = admin.post(
            "/api/crawl/sources/import", files={"file": ("sources.yaml", SOURCES_YAML.encode())}
        )
        assert again.json() == {"created": [], "updated": ["cuihu-tieba", "city-news"]}
        listed = admin.get("/api/crawl/sources").json()
        assert [s["key"] for s in listed] == ["city-news", "cuihu-tieba", "weibo-brand"]
        assert listed[1]["community"] == "翠湖花园"

        broken = SOURCES_YAML.replace("kind: rss", "kind: telegram").replace("cuihu-tieba", "another")
        refused = admin.post("/api/crawl/sources/import", content=broken.encode())
        assert refused.status_code == 422
        assert refused.json()["error"]["message"].startswith("第 2 个采集源的 kind 有误")
        not_yaml = admin.post("/api/crawl/sources/import", content=b"sources: [unclosed")
        assert not_yaml.status_code == 422 and "YAML 格式错误" in not_yaml.json()["error"]["message"]
        assert "another" not in [s["key"] for s in admin.get("/api/crawl/sources").json()]  # all or nothing

        queued = admin.post("/api/crawl/sources/weibo-brand/run")
        assert queued.status_code == 202 and queued.json()["job_id"] == f"crawl-{source_id}"
        low = Queue("low", connection=redis.Redis.from_url(server.settings.effective_redis_url))
        assert f"crawl-{source_id}" in low.job_ids
        assert admin.post("/api/crawl/sources/weibo-brand/run").json()["job_id"] == f"crawl-{source_id}"
        assert low.count == 1  # asking twice queues one crawl
        assert admin.post("/api/crawl/sources/nope/run").status_code == 404

    with get_database(server.settings).session() as session:
        session.add(
            CrawlRun(
                source_id=source_id,
                status=RunStatus.finished,
                finished_at=utcnow(),
                stats={"response_received_count": 7, "anju/stored": 3, "anju/skipped_irrelevant": 4},
            )
        )
    with server.login("pr") as pr:  # PR staff read sources and runs, and change nothing
        runs = pr.get("/api/crawl/sources/weibo-brand/runs").json()
        assert [(r["status"], r["pages"], r["stored"], r["skipped"]) for r in runs] == [("finished", 7, 3, 4)]
        assert pr.get("/api/crawl/sources/weibo-brand").json()["last_run"]["stored"] == 3
        assert pr.put("/api/crawl/sources/weibo-brand", json=changed).status_code == 403
        assert pr.post("/api/crawl/sources/weibo-brand/run").status_code == 403
        assert pr.post("/api/crawl/sources/import", content=SOURCES_YAML.encode()).status_code == 403
        assert pr.delete("/api/crawl/sources/weibo-brand").status_code == 403
    with server.login("agent") as agent:
        assert agent.get("/api/crawl/sources").status_code == 403

    with server.login("admin") as admin:
        assert admin.delete("/api/crawl/sources/weibo-brand").status_code == 204
        gone = admin.get("/api/crawl/sources/weibo-brand")
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "没有采集源「weibo-brand」"


def test_the_page_needs_a_login_and_a_feed_role(server: LiveServer) -> None:
    with server.client() as browser:
        first = browser.get("/opinion?event=5")
        assert first.status_code == 303 and first.headers["location"] == "/login?next=/opinion%3Fevent%3D5"
        browser.post("/login", data={"username": "agent", "password": DEMO_PASSWORD, "next": "/opinion"})
        assert browser.get("/opinion").status_code == 403
    with server.client() as browser:
        browser.post("/login", data={"username": "pr", "password": DEMO_PASSWORD, "next": "/opinion"})
        page = browser.get("/opinion")
        assert page.status_code == 200 and "舆情监测" in page.text
        assert browser.get("/static/vendor/chart.umd.min.js").status_code == 200


def test_an_expired_or_malformed_alert_link_acknowledges_nothing(server: LiveServer) -> None:
    from tests.escalation.test_ack_links import BAD_TOKENS

    ids = _seed_feed(server)
    with get_database(server.settings).session() as session:
        fees = session.get(Event, ids["fees"])
        assert fees is not None
        alert_id = make_alert(session, event=fees).id
    hours = server.settings.ack_link_hours
    stale = ack_token(server.settings, alert_id, issued_at=utcnow() - timedelta(hours=hours, minutes=1))
    with server.client() as anyone:
        for method in ("GET", "POST"):
            page = anyone.request(method, f"/opinion/ack/{stale}")
            assert page.status_code == 410 and page.headers["content-type"].startswith("text/html")
            assert "确认链接已过期" in page.text and "/login?next=/opinion" in page.text
            assert "锦江苑" not in page.text  # nothing of the event either
        for bad in BAD_TOKENS:
            refused = anyone.post(f"/opinion/ack/{bad}")
            assert refused.status_code == 404, (bad[:40], refused.status_code)
            assert "确认链接无效" in refused.text
    with get_database(server.settings).session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.acknowledged_at is None
