"""SLA timers and emergency paging with a real rq worker (and its scheduler) and a fake group
robot speaking WeCom's protocol over HTTP: policies shortened to seconds, a reminder and a breach
fire and reach the supervisors, a resolved case's timers stop, an emergency nobody acknowledges
climbs the duty chain, and one acknowledged through the page's link stops there."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from core.db import get_database
from core.settings import RobotSetting, Settings
from escalation.models import Case, CaseEvent, CaseEventKind
from tests.conftest import LiveServer, wait_for
from tests.escalation.test_console_flow import say
from tests.robots import FakeRobot
from tests.services import allowing


@pytest.fixture
def robots() -> Iterator[FakeRobot]:
    with FakeRobot() as fake:
        yield fake


def events(settings: Settings, case_id: int, kind: CaseEventKind) -> list[CaseEvent]:
    with get_database(settings).session(readonly=True) as session:
        return list(
            session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.kind == kind))
        )


def load(settings: Settings, case_id: int) -> Case:
    with get_database(settings).session(readonly=True) as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case


def test_reminder_and_breach_fire_and_stop_when_the_case_is_resolved(
    demo: Settings, robots: FakeRobot, start_worker
) -> None:  # type: ignore[no-untyped-def]
    settings = allowing(  # the fake robot on 127.0.0.1 by its host:port, nothing else internal
        demo.model_copy(
            update={"supervisor_robots": [RobotSetting(kind="wecom", url=robots.url("wecom", "boss"))]}
        ),
        robots.url("wecom"),
    )
    start_worker(settings)
    with LiveServer(settings) as live, live.login("supervisor") as boss, live.login("agent") as agent, \
            live.client() as resident:  # fmt: skip
        policy = {"first_response_minutes": 0.05, "resolve_minutes": 0.2, "remind_before_minutes": 0.02}
        assert boss.put("/api/sla-policies/咨询", json=policy).status_code == 200  # 3 s / 12 s / 1.2 s

        late = say(resident, uuid.uuid4().hex, "转人工")["case_id"]
        served = say(resident, uuid.uuid4().hex, "转人工")["case_id"]
        agent.post(f"/api/cases/{served}/reply", json={"text": "您好，马上为您处理"}).raise_for_status()
        agent.post(f"/api/cases/{served}/resolve", json={}).raise_for_status()

        wait_for(lambda: events(settings, late, CaseEventKind.reminder), timeout=15, message="the reminder")
        wait_for(lambda: events(settings, late, CaseEventKind.breach), timeout=15, message="the breach")
        [notice] = robots.wait_for(1, timeout=15)
        content = notice.body["markdown"]["content"]
        assert "首次响应超时" in content and f"案件 {late}" in content
        case = load(settings, late)
        assert case.response_breached_at is not None and case.needs_supervisor
        assert case.response_breached_at >= case.first_response_due
        breached = boss.get("/api/cases", params={"view": "breached"}).json()
        assert [c["id"] for c in breached] == [late]

        # Past the resolved case's resolution due time: its timers stopped with it.
        wait_for(
            lambda: events(settings, late, CaseEventKind.breach)[1:], timeout=20, message="the resolve breach"
        )
        time.sleep(1.5)
        assert events(settings, served, CaseEventKind.breach) == []
        assert events(settings, served, CaseEventKind.reminder) == []
        assert all(f"案件 {served}" not in m.body["markdown"]["content"] for m in robots.messages)
        report = boss.get("/api/reports/sla", params={"by": "category"}).json()
        row = next(r for r in report if r["key"] == "咨询")
        assert row["cases"] == 2 and row["breaches"] == 2 and row["response_rate"] == 1.0


def test_priority_change_recomputes_due_times(demo: Settings) -> None:
    with LiveServer(demo) as live, live.login("agent") as agent, live.client() as resident:
        case_id = say(resident, uuid.uuid4().hex, "转人工")["case_id"]
        before = load(demo, case_id)
        raised = agent.post(f"/api/cases/{case_id}/priority", json={"priority": "紧急", "note": "老人独居"})
        assert raised.status_code == 200
        after = load(demo, case_id)
        assert after.priority.value == "紧急" and after.sla_version == before.sla_version + 1
        assert after.first_response_due - after.created_at <= before.first_response_due - before.created_at
        assert (
            after.first_response_due - after.created_at
        ).total_seconds() == 5 * 60  # an emergency's 5 minutes


def test_an_unacknowledged_emergency_climbs_the_duty_chain_and_an_acknowledged_one_stops(
    demo_kb: Settings, robots: FakeRobot, start_worker
) -> None:  # type: ignore[no-untyped-def]
    settings = allowing(
        demo_kb.model_copy(
            update={"supervisor_robots": [RobotSetting(kind="wecom", url=robots.url("wecom", "boss"))]}
        ),
        robots.url("wecom"),
    )
    start_worker(settings)
    # Robot URLs make the server post: an admin sets them (a supervisor edits people and phones).
    with LiveServer(settings) as live, live.login("admin") as boss, live.client() as resident:
        cuihu = next(c for c in boss.get("/api/communities").json() if c["code"] == "cuihu")["id"]
        chain = [
            {"name": "值班工程师", "robot_kind": "wecom", "robot_url": robots.url("wecom", "duty"),
             "ack_minutes": 0.05},
            {"name": "项目经理", "robot_kind": "wecom", "robot_url": robots.url("wecom", "manager"),
             "phone": "13900001234", "ack_minutes": 0.05},
        ]  # fmt: skip
        saved = boss.put(f"/api/communities/{cuihu}/duty-chain", json=chain)
        assert saved.status_code == 200 and saved.json()[1]["phone"] == "139****1234"

        turn = say(resident, uuid.uuid4().hex, "电梯突然停了，我被关在里面出不来")
        assert turn["action"] == "emergency"
        case_id = turn["case_id"]
        pages = robots.wait_for(3, timeout=20)
        tokens = [m.token for m in pages]
        assert tokens[:3] == ["duty", "manager", "boss"], tokens
        first = pages[0].body
        text = first.get("markdown", {}).get("content") or first.get("text", {}).get("content")
        assert "电梯困人" in text and "/ack/" in text
        assert "13900001234" in pages[1].body["text"]["mentioned_mobile_list"]  # @ the manager by mobile
        assert "紧急事件无人确认" in pages[2].body["markdown"]["content"]
        levels = [e.data.get("level") for e in events(settings, case_id, CaseEventKind.paged)]
        assert levels == [0, 1, 2]
        assert load(settings, case_id).needs_supervisor

        seen = len(robots.messages)
        second = say(resident, uuid.uuid4().hex, "楼下着火了，好多烟")["case_id"]
        page = robots.wait_for(seen + 1, timeout=15)[seen]
        content = page.body.get("markdown", {}).get("content") or page.body["text"]["content"]
        link = content[content.index("/ack/") :].split(")")[0].split()[0]
        with live.client() as duty:
            assert duty.get(link).status_code == 200
            assert "已确认" in duty.post(link).text
            assert duty.get("/ack/1.forged").status_code == 404
        time.sleep(4)  # past the first step's 3 s
        assert len(robots.messages) == seen + 1  # nobody else was paged
        acknowledged = load(settings, second)
        assert acknowledged.acknowledged_by == "值班工程师" and acknowledged.first_response_at is not None
