"""A conversation's life across its cases, through real HTTP, as a resident and agents live it:
an emergency during an open complaint is its own case, the assistant keeps out of a conversation
a person holds, a survey is answered once and its comment is kept, and what the chat page shows
again after a reload (tags, the emergency banner, an answered survey) comes from the history."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from core.settings import Settings
from tests.conftest import LiveServer


def say(client: httpx.Client, session_id: str, text: str) -> dict[str, Any]:
    response = client.post("/api/chat", json={"community": "cuihu", "session_id": session_id, "text": text})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def history(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    response = client.get("/api/chat/history", params={"community": "cuihu", "session_id": session_id})
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def case_of(staff: httpx.Client, case_id: int) -> dict[str, Any]:
    response = staff.get(f"/api/cases/{case_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_emergency_during_an_open_complaint_is_its_own_case(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("supervisor") as boss:
        session_id = uuid.uuid4().hex
        complaint = say(resident, session_id, "我要投诉，门岗保安态度太差了，还骂人")
        assert complaint["action"] == "human"
        complaint_id = complaint["case_id"]

        fire = say(resident, session_id, "楼道里着火了，好多烟")
        assert fire["action"] == "emergency" and fire["emergency"] == "火灾"
        emergency_id = fire["case_id"]
        assert emergency_id != complaint_id

        guard = case_of(boss, complaint_id)["case"]
        assert guard["category"] == "投诉" and guard["status"] == "待处理"  # not raised to 紧急
        assert "保安" in guard["summary"] and "着火" not in guard["summary"]
        emergency = case_of(boss, emergency_id)
        assert emergency["case"]["category"] == "紧急" and emergency["case"]["emergency_kind"] == "火灾"
        assert emergency["case"]["linked_case_id"] == complaint_id
        assert emergency["case"]["channel"] == "web"
        # the agent on the complaint sees that an emergency was raised beside it
        assert any(str(emergency_id) in e["text"] for e in case_of(boss, complaint_id)["events"])

        # Resolving the emergency leaves the complaint open, and surveys the emergency alone.
        boss.post(f"/api/cases/{emergency_id}/claim").raise_for_status()
        boss.post(f"/api/cases/{emergency_id}/resolve", json={"note": "已扑灭"}).raise_for_status()
        assert case_of(boss, complaint_id)["case"]["status"] == "待处理"
        surveys = [m for m in history(resident, session_id) if m["action"] == "survey"]
        assert len(surveys) == 1 and surveys[0]["case_id"] == emergency_id
        assert f"紧急情况（案件编号 {emergency_id}）" in surveys[0]["text"]
        assert say(resident, session_id, "5")["case_id"] == emergency_id
        assert case_of(boss, emergency_id)["case"]["status"] == "已关闭"
        assert case_of(boss, complaint_id)["case"]["status"] == "待处理"

        # The complaint still holds the conversation: the resident's next words join it.
        later = say(resident, session_id, "保安的事什么时候给我答复")
        assert later["case_id"] == complaint_id
        assert "什么时候给我答复" in case_of(boss, complaint_id)["case"]["summary"]

        # Resolving the complaint sends its own survey.
        boss.post(f"/api/cases/{complaint_id}/claim").raise_for_status()
        boss.post(f"/api/cases/{complaint_id}/reply", json={"text": "已约谈保安队长"}).raise_for_status()
        boss.post(f"/api/cases/{complaint_id}/resolve", json={}).raise_for_status()
        surveys = [m for m in history(resident, session_id) if m["action"] == "survey"]
        assert [s["case_id"] for s in surveys] == [emergency_id, complaint_id]


def test_the_assistant_keeps_out_while_a_person_holds_the_conversation(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent:
        session_id = uuid.uuid4().hex
        handed = say(resident, session_id, "转人工")
        case_id = handed["case_id"]
        assert handed["reply"]  # the hand-over itself is said

        # Waiting in the queue: one acknowledgement, then silence.
        first = say(resident, session_id, "我想问一下停车位的事")
        assert first["action"] == "human" and "转给人工客服" in first["reply"]
        for text in ("在吗", "好的谢谢", "我的车位号是B-102"):
            quiet = say(resident, session_id, text)
            assert quiet["reply"] == "" and quiet["action"] == "human" and quiet["case_id"] == case_id

        # An agent holds it: silence, and every message reaches the case.
        agent.post(f"/api/cases/{case_id}/claim").raise_for_status()
        agent.post(f"/api/cases/{case_id}/reply", json={"text": "您好，我来帮您看车位"}).raise_for_status()
        for text in ("好的", "谢谢你", "多少钱一个月"):
            assert say(resident, session_id, text)["reply"] == ""
        said = [m["text"] for m in case_of(agent, case_id)["messages"] if m["sender"] == "resident"]
        assert "我的车位号是B-102" in said and "多少钱一个月" in said

        # An emergency is still recognised and raised, as a case of its own.
        gas = say(resident, session_id, "家里厨房煤气味很重")
        assert gas["action"] == "emergency" and gas["case_id"] != case_id
        assert say(resident, session_id, "我已经开窗了")["case_id"] == gas["case_id"]

        said = [m for m in history(resident, session_id) if m["sender"] == "assistant"]
        assert len([m for m in said if m["action"] == "human"]) == 2  # the hand-over and one acknowledgement


def test_a_survey_is_answered_once_and_a_comment_after_a_low_score_is_kept(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent:
        session_id = uuid.uuid4().hex
        case_id = say(resident, session_id, "我要投诉，楼道垃圾三天没人清")["case_id"]
        agent.post(f"/api/cases/{case_id}/claim").raise_for_status()
        agent.post(f"/api/cases/{case_id}/reply", json={"text": "已安排保洁"}).raise_for_status()
        agent.post(f"/api/cases/{case_id}/resolve", json={}).raise_for_status()

        survey = history(resident, session_id)[-1]
        assert survey["action"] == "survey" and survey["survey_answered"] is False

        low = say(resident, session_id, "1")
        assert "主管" in low["reply"] and "写下" in low["reply"]  # asks what went wrong
        comment = say(resident, session_id, "保洁根本没来，还说处理好了")
        assert "意见" in comment["reply"]
        detail = case_of(agent, case_id)
        assert detail["surveys"][-1]["score"] == 1
        assert detail["surveys"][-1]["comment"] == "保洁根本没来，还说处理好了"
        assert detail["case"]["needs_supervisor"] and detail["case"]["status"] == "待处理"

        # A second tap on the score (an old page) is thanked, not routed anywhere.
        again = say(resident, session_id, "5")
        assert "评过分" in again["reply"] and again["action"] != "emergency"
        assert case_of(agent, case_id)["surveys"][-1]["score"] == 1

        # After a reload the page renders the survey as answered, with its score.
        survey = next(m for m in history(resident, session_id) if m["action"] == "survey")
        assert survey["survey_answered"] is True and survey["survey_score"] == 1


def test_the_history_keeps_the_tags_and_the_emergency_while_its_case_is_open(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("supervisor") as boss:
        session_id = uuid.uuid4().hex
        order = say(resident, session_id, "3栋2单元1102卫生间水管漏水了")
        assert order["action"] == "work_order"
        lift = say(resident, session_id, "电梯困人了，我被关在5栋电梯里")
        assert lift["action"] == "emergency"
        shown = {m["id"]: m for m in history(resident, session_id)}
        by_action = {m["action"]: m for m in shown.values() if m["sender"] == "assistant"}
        assert by_action["work_order"]["work_order_id"] == order["work_order_id"]
        emergency = by_action["emergency"]
        assert emergency["case_id"] == lift["case_id"] and emergency["emergency"] == lift["emergency"]
        assert emergency["case_active"] is True  # the page shows the banner again after a reload

        boss.post(f"/api/cases/{lift['case_id']}/claim").raise_for_status()
        boss.post(f"/api/cases/{lift['case_id']}/resolve", json={}).raise_for_status()
        emergency = next(m for m in history(resident, session_id) if m["action"] == "emergency")
        assert emergency["case_active"] is False and emergency["emergency"] == lift["emergency"]
