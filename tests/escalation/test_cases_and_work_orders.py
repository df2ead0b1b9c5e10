"""Cases from other channels and the rest of the agent's work: an agent's reply goes out through
the resident app's signed webhook; work orders move through 发起-分配-执行-核验-完成 with notes,
photos and a hand-off between departments; call-backs are listed and done; the periodic sweep
catches a breach whose timer was lost and sends idle cases back to the queue; bad input gets a
clear error and changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from channels.models import InboundMessage
from channels.service import process_inbound
from conversations.models import Channel
from core.db import get_database, utcnow
from core.settings import Settings
from escalation import queue, timers
from escalation.models import Case, CaseEvent, CaseEventKind, CaseStatus
from escalation.sla import BusinessHours
from tests.channels import test_app_channel as app
from tests.conftest import LiveServer, wait_for
from tests.escalation.test_console_flow import handed_over, say

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_an_agent_reply_reaches_the_app_through_its_signed_webhook(
    demo_kb: Settings, start_worker: Any
) -> None:
    backend = app.FakeAppBackend()
    try:
        settings = app.configured(demo_kb, backend)
        start_worker(settings)
        with LiveServer(settings) as live, live.client() as client, live.login("agent") as agent:
            assert app.post(client, app.message("我要投诉，电梯天天坏", user_id="app-42")).status_code == 202
            wait_for(lambda: backend.replies(), message="the assistant's hand-off reply")
            case_id = backend.replies()[0]["case_id"]
            assert case_id and backend.replies()[0]["action"] == "human"
            sent = agent.post(
                f"/api/cases/{case_id}/reply", json={"text": "您好，维保单位今天下午到场检修。"}
            )
            assert sent.status_code == 201
            reply = wait_for(
                lambda: [r for r in backend.replies() if r["action"] == "agent"], message="the reply"
            )[0]
            assert reply["reply"] == "您好，维保单位今天下午到场检修。" and reply["user_id"] == "app-42"
            assert reply["case_id"] == case_id and reply["community"] == "cuihu"

            # The resident writes again in the app: no assistant reply while the agent holds it.
            count = len(backend.replies())
            assert app.post(client, app.message("好的谢谢，大概几点？", user_id="app-42")).status_code == 202
            wait_for(lambda: "大概几点" in agent.get(f"/api/cases/{case_id}").text, message="the follow-up")
            assert len(backend.replies()) == count
    finally:
        backend.close()


def test_a_phone_case_is_answered_by_calling_back(demo_kb: Settings) -> None:
    from tests.channels import test_phone as phone

    settings = demo_kb.model_copy(update={"phone_channel_secret": phone.SECRET})
    with LiveServer(settings) as live, live.client() as client, live.login("agent") as agent:
        call = phone.call(
            call_id=f"c-{uuid.uuid4().hex[:8]}",
            utterances=[
                phone.said("customer", 0, "我要投诉，你们保安天天睡觉"),
                phone.said("agent", 5000, "好的，我们核实后给您回电"),
            ],
        )
        assert phone.post(client, call).status_code == 202
        with get_database(settings).session(readonly=True) as session:
            inbound_id = session.scalar(select(InboundMessage.id))
        process_inbound(settings, inbound_id)  # what the worker does, run here
        [case] = agent.get("/api/cases").json()
        assert case["channel"] == "phone"
        refused = agent.post(f"/api/cases/{case['id']}/reply", json={"text": "您好"})
        assert refused.status_code == 422 and "回电" in refused.json()["error"]["message"]
        [task] = agent.get("/api/callbacks").json()
        assert task["case_id"] == case["id"] and task["phone"] == phone.CALLER
        done = agent.post(
            f"/api/callbacks/{task['id']}/done", json={"status": "已回电", "note": "已道歉并安排巡查"}
        )
        assert done.json()["status"] == "已回电"
        assert agent.get("/api/callbacks").json() == []
        detail = agent.get(f"/api/cases/{case['id']}").json()
        assert detail["case"]["first_response_at"] is not None
        assert any("已道歉并安排巡查" in e["text"] for e in detail["events"])
        # Resolved: the survey is by phone, and the agent records the score the resident gave.
        agent.post(f"/api/cases/{case['id']}/resolve", json={}).raise_for_status()
        scored = agent.post(f"/api/cases/{case['id']}/survey", json={"score": 4, "comment": "电话里说满意"})
        assert scored.json()["score"] == 4
        assert agent.post(f"/api/cases/{case['id']}/survey", json={"score": 4}).status_code == 409


def test_a_work_order_goes_through_its_flow_with_notes_photos_and_a_hand_off(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent:
        session_id = uuid.uuid4().hex
        turn = say(resident, session_id, "3栋1单元502卫生间漏水了")
        assert turn["action"] == "work_order"
        order_id = turn["work_order_id"]
        [listed] = [o for o in agent.get("/api/work-orders").json() if o["id"] == order_id]
        assert listed["status"] == "待派单" and listed["department"] == "工程"

        skip = agent.post(f"/api/work-orders/{order_id}/move", json={"to": "处理中"})
        assert skip.status_code == 409  # 待派单 cannot jump to 处理中
        nobody = agent.post(f"/api/work-orders/{order_id}/move", json={"to": "已派单"})
        assert nobody.status_code == 422  # dispatching needs someone to do it
        move = lambda to, **kw: agent.post(f"/api/work-orders/{order_id}/move", json={"to": to, **kw})  # noqa: E731
        assert move("已派单", assignee_name="水电工 老周").json()["order"]["assignee"] == "水电工 老周"
        assert move("处理中").status_code == 200
        photo = agent.post(
            f"/api/work-orders/{order_id}/photos", files={"photo": ("after.png", PNG, "image/png")}
        )
        assert photo.status_code == 201
        name = photo.json()["events"][-1]["photos"][0]
        assert agent.get(f"/api/work-orders/{order_id}/photos/{name}").content == PNG
        not_a_photo = agent.post(
            f"/api/work-orders/{order_id}/photos", files={"photo": ("x.png", b"hello", "image/png")}
        )
        assert not_a_photo.status_code == 422
        assert move("待核验").status_code == 200
        assert move("处理中").status_code == 422  # a failed check needs its reason
        assert move("处理中", note="还在渗水").status_code == 200
        assert move("待核验").status_code == 200
        done = move("已完成", note="闭水试验通过").json()
        assert done["order"]["status"] == "已完成" and done["order"]["done_at"]
        handed = agent.post(
            f"/api/work-orders/{order_id}/hand-off", json={"department": "客服", "note": "请回访住户"}
        )
        assert handed.json()["order"]["department"] == "客服"
        texts = [e["text"] for e in handed.json()["events"]]
        assert any("工程 → 客服" in t for t in texts) and any("还在渗水" in t for t in texts)
        said = resident.get(
            "/api/chat/history", params={"community": "cuihu", "session_id": session_id}
        ).json()
        told = [m for m in said if m["sender"] == "system"]
        assert told and f"工单 {order_id}" in told[-1]["text"]


def test_an_agent_dispatches_a_work_order_from_a_case(demo: Settings) -> None:
    with LiveServer(demo) as live, live.login("agent") as agent:
        _, case_id = handed_over(live, "我要投诉，地下车库的灯坏了一周了")
        made = agent.post(
            f"/api/cases/{case_id}/work-orders",
            json={"category": "工程", "description": "地下车库 B2 照明损坏", "building": "车库"},
        )
        assert made.status_code == 201 and made.json()["case_id"] == case_id
        detail = agent.get(f"/api/cases/{case_id}").json()
        assert [o["id"] for o in detail["work_orders"]] == [made.json()["id"]]
        assert any(e["kind"] == "work_order" for e in detail["events"])
        assert (
            agent.post(
                f"/api/cases/{case_id}/work-orders", json={"category": "水电", "description": "x"}
            ).status_code
            == 422
        )


def test_bad_input_gets_a_clear_error_and_changes_nothing(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.login("agent") as agent:
        _, case_id = handed_over(live)
        assert agent.get("/api/cases/424242").status_code == 404
        assert agent.post("/api/cases/424242/claim").status_code == 404
        assert agent.get("/api/cases", params={"view": "everything"}).status_code == 422
        assert agent.post(f"/api/cases/{case_id}/reply", json={"text": "   "}).status_code == 422
        assert agent.post(f"/api/cases/{case_id}/reply", json={"text": "x" * 2001}).status_code == 422
        assert agent.post(f"/api/cases/{case_id}/priority", json={"priority": "超级"}).status_code == 422
        assert (
            agent.post(
                f"/api/cases/{case_id}/transfer", json={"note": "转", "agent_id": 1, "skill": "客服"}
            ).status_code
            == 422
        )
        agent.post(f"/api/cases/{case_id}/resolve", json={}).raise_for_status()
        again = agent.post(f"/api/cases/{case_id}/resolve", json={})
        assert again.status_code == 409 and "重新打开" in again.json()["error"]["message"]
        assert agent.post(f"/api/cases/{case_id}/reply", json={"text": "在吗"}).status_code == 409
        assert agent.post(f"/api/cases/{case_id}/reopen", json={"reason": ""}).status_code == 422
        reopened = agent.post(f"/api/cases/{case_id}/reopen", json={"reason": "住户来电说还没解决"})
        assert reopened.json()["status"] == "处理中" and reopened.json()["reopen_count"] == 1
        assert agent.put("/api/communities/1/duty-chain", json=[{"name": "无联系方式"}]).status_code == 403
        assert agent.get("/api/reports/csat", params={"by": "weather"}).status_code in (403, 422)


def test_the_sweep_fires_a_lost_breach_and_returns_idle_cases_to_the_queue(demo: Settings) -> None:
    settings = demo.model_copy(update={"case_idle_minutes": 10})
    with LiveServer(settings) as live, live.login("agent") as agent:
        _, idle = handed_over(live)
        _, lost = handed_over(live)
        agent.post(f"/api/cases/{idle}/claim").raise_for_status()
        later = utcnow() + timedelta(minutes=45)  # past the 咨询 first response (30 min) and the idle limit
        with get_database(settings).session() as session:
            breached = timers.sweep_sla(session=session, settings=settings, now=later)
        assert set(breached) == {idle, lost}  # without any timer job having run
        with get_database(settings).session() as session:
            assert timers.sweep_sla(session=session, settings=settings, now=later) == []  # once only
            released = queue.release_idle(session=session, settings=settings, now=later)
        assert released == [idle]
        with get_database(settings).session(readonly=True) as session:
            case = session.get(Case, idle)
            assert case is not None and case.status is CaseStatus.open and case.assignee_id is None
            kinds = session.scalars(select(CaseEvent.kind).where(CaseEvent.case_id == idle)).all()
            assert CaseEventKind.released in kinds and CaseEventKind.breach in kinds
        assert [c["id"] for c in agent.get("/api/cases", params={"view": "mine"}).json()] == []


def test_business_hours_start_the_clock_at_the_next_opening() -> None:
    from datetime import UTC, datetime

    hours = BusinessHours.parse("08:00-20:00")
    evening = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)  # 21:30 in Beijing
    assert not hours.is_open(evening)
    assert hours.clock_start(evening) == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00 the next day
    early = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)  # 06:00 in Beijing
    assert hours.clock_start(early) == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    noon = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    assert hours.clock_start(noon) == noon
    assert BusinessHours.parse("00:00-24:00").is_open(evening)


def test_channel_of_the_case_is_shown(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.login("agent") as agent:
        _, case_id = handed_over(live)
        assert agent.get(f"/api/cases/{case_id}").json()["case"]["channel"] == Channel.web.value


def test_an_agent_reply_to_a_wechat_resident_goes_out_as_a_customer_service_message(
    demo_kb: Settings, start_worker: Any
) -> None:
    from tests.channels import test_wechat as wx

    api = wx.FakeWechatApi()
    try:
        settings = wx.configured(demo_kb, api, passive=0.15)
        wx.worker_ready(settings, start_worker)
        with LiveServer(settings) as live, live.client() as wechat, live.login("agent") as agent:
            assert (
                wx.push(wechat, wx.text_xml("我要投诉，门口垃圾堆了三天", openid="oWx42")).status_code == 200
            )
            case = wait_for(lambda: agent.get("/api/cases").json(), message="the case")[0]
            assert case["channel"] == "wechat"
            agent.post(
                f"/api/cases/{case['id']}/reply", json={"text": "您好，保洁已在清运。"}
            ).raise_for_status()
            sent = wait_for(
                lambda: [m for m in api.sent if "保洁已在清运" in json.dumps(m, ensure_ascii=False)],
                message="the customer-service message",
            )
            assert sent[0]["touser"] == "oWx42" and sent[0]["msgtype"] == "text"
    finally:
        api.close()


def test_work_order_photos_up_to_the_documented_5_mb(demo_kb: Settings) -> None:
    """The README promises photos up to 5 MB: a 4.5 MB phone photo is taken, 5.5 MB is refused with
    413 and a Chinese reason, and nothing of it is stored."""
    jpeg = lambda size: b"\xff\xd8\xff\xe0" + b"\0" * (size - 4)  # noqa: E731
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent:
        order_id = say(resident, uuid.uuid4().hex, "3栋1单元502卫生间漏水了")["work_order_id"]
        upload = lambda content: agent.post(  # noqa: E731
            f"/api/work-orders/{order_id}/photos", files={"photo": ("leak.jpg", content, "image/jpeg")}
        )
        taken = upload(jpeg(4_500_000))
        assert taken.status_code == 201, taken.text
        name = taken.json()["events"][-1]["photos"][0]
        assert len(agent.get(f"/api/work-orders/{order_id}/photos/{name}").content) == 4_500_000
        too_big = upload(jpeg(5_500_000))
        assert too_big.status_code == 413
        assert too_big.json()["error"]["message"] == "照片不能超过 5 MB"
        photos = [p for e in agent.get(f"/api/work-orders/{order_id}").json()["events"] for p in e["photos"]]
        assert photos == [name]
    folder = demo_kb.data_dir / "uploads" / "work_orders" / str(order_id)
    assert [p.name for p in folder.iterdir()] == [name]
