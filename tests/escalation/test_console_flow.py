"""The hand-off as agents and residents live it, through real HTTP: a resident on the web chat
asks for a person, an agent claims the case and replies, the resident sees the reply while the
assistant stays silent, the case is resolved, and the survey answer closes (or reopens) it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.conftest import LiveServer


def say(client: httpx.Client, session_id: str, text: str, community: str = "cuihu") -> dict[str, Any]:
    response = client.post("/api/chat", json={"community": community, "session_id": session_id, "text": text})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def history(client: httpx.Client, session_id: str, community: str = "cuihu") -> list[dict[str, Any]]:
    response = client.get("/api/chat/history", params={"community": community, "session_id": session_id})
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def handed_over(live: LiveServer, text: str = "转人工") -> tuple[str, int]:
    session_id = uuid.uuid4().hex
    with live.client() as resident:
        turn = say(resident, session_id, text)
    assert turn["action"] == "human" and turn["case_id"]
    return session_id, turn["case_id"]


def test_resident_asks_for_a_person_agent_claims_replies_resolves_and_the_survey_closes_it(
    demo_kb: Settings,
) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent:
        session_id = uuid.uuid4().hex
        say(resident, session_id, "物业费在哪交")
        turn = say(resident, session_id, "我要找人工客服")
        assert turn["action"] == "human"
        case_id = turn["case_id"]

        queue = agent.get("/api/cases", params={"view": "queue"}).json()
        assert [c["id"] for c in queue] == [case_id]
        assert queue[0]["status"] == "待处理" and queue[0]["channel"] == "web"

        detail = agent.get(f"/api/cases/{case_id}").json()
        said = [m["text"] for m in detail["messages"]]
        assert (
            "物业费在哪交" in said and "我要找人工客服" in said
        )  # the whole history, not just the last line
        answer = next(m for m in detail["messages"] if m["sender"] == "assistant" and m["citations"])
        assert answer["citations"][0]["document"]  # what the assistant already said, with its source

        claimed = agent.post(f"/api/cases/{case_id}/claim").json()
        assert claimed["status"] == "处理中" and claimed["assignee"] == "客服小林"
        assert agent.get("/api/cases", params={"view": "queue"}).json() == []
        assert [c["id"] for c in agent.get("/api/cases", params={"view": "mine"}).json()] == [case_id]

        sent = agent.post(
            f"/api/cases/{case_id}/reply", json={"text": "您好，我是客服小林，物业费可以在服务中心缴纳。"}
        )
        assert sent.status_code == 201
        agent_lines = [m for m in history(resident, session_id) if m["sender"] == "agent"]
        assert agent_lines and agent_lines[-1]["text"].startswith("您好，我是客服小林")

        # While the agent holds the conversation the assistant says nothing.
        quiet = say(resident, session_id, "好的，那停车费呢？")
        assert quiet["reply"] == "" and quiet["action"] == "human"
        case = agent.get(f"/api/cases/{case_id}").json()["case"]
        assert case["waiting_since"] is not None  # the resident waits for the agent now

        agent.post(f"/api/cases/{case_id}/notes", json={"text": "住户还问了停车费，已口头说明"})
        resolved = agent.post(f"/api/cases/{case_id}/resolve", json={"note": "已答复"}).json()
        assert resolved["status"] == "已解决"
        survey = history(resident, session_id)[-1]
        assert survey["sender"] == "system" and "1–5" in survey["text"]

        thanks = say(resident, session_id, "5分 回复很快")
        assert "感谢" in thanks["reply"]
        detail = agent.get(f"/api/cases/{case_id}").json()
        assert detail["case"]["status"] == "已关闭"
        assert detail["surveys"][0]["score"] == 5 and detail["surveys"][0]["comment"] == "回复很快"
        kinds = [e["kind"] for e in detail["events"]]
        for kind in (
            "created",
            "claimed",
            "replied",
            "note",
            "resolved",
            "survey_sent",
            "survey_answered",
            "closed",
        ):
            assert kind in kinds

        # The assistant answers again once the case is closed.
        back = say(resident, session_id, "物业费在哪交")
        assert back["action"] == "answer"


def test_a_low_score_reopens_the_case_for_a_supervisor(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent, \
            live.login("supervisor") as boss:  # fmt: skip
        session_id = uuid.uuid4().hex
        case_id = say(resident, session_id, "我要投诉，楼道垃圾三天没人清")["case_id"]
        agent.post(f"/api/cases/{case_id}/claim").raise_for_status()
        agent.post(f"/api/cases/{case_id}/reply", json={"text": "已安排保洁处理"}).raise_for_status()
        agent.post(f"/api/cases/{case_id}/resolve", json={}).raise_for_status()
        reply = say(resident, session_id, "1 根本没人来")
        assert "主管" in reply["reply"] and reply["action"] == "human"
        case = agent.get(f"/api/cases/{case_id}").json()["case"]
        assert case["status"] == "待处理" and case["needs_supervisor"] and case["reopen_count"] == 1
        assert case_id in [c["id"] for c in boss.get("/api/cases", params={"view": "breached"}).json()]
        csat = boss.get("/api/reports/csat", params={"by": "agent"}).json()
        assert csat[0]["key"] == "客服小林" and csat[0]["average"] == 1 and csat[0]["low"] == 1


def test_claim_cap_transfer_and_assignment(demo_kb: Settings) -> None:
    settings = demo_kb.model_copy(update={"agent_max_open_cases": 1})
    with LiveServer(settings) as live, live.login("agent") as agent, live.login("agent2") as colleague, \
            live.login("supervisor") as boss:  # fmt: skip
        _, first = handed_over(live)
        _, second = handed_over(live, "我要投诉保安态度差")
        queue = agent.get("/api/cases").json()
        assert [c["id"] for c in queue] == [second, first]  # 投诉 (重要) before a question (一般)
        agent.post(f"/api/cases/{first}/claim").raise_for_status()
        refused = agent.post(f"/api/cases/{second}/claim")
        assert refused.status_code == 409 and "1 个" in refused.json()["error"]["message"]
        taken = colleague.post(f"/api/cases/{first}/claim")
        assert taken.status_code == 409 and "客服小林" in taken.json()["error"]["message"]
        assert colleague.post(f"/api/cases/{first}/reply", json={"text": "插话"}).status_code == 403

        no_note = agent.post(f"/api/cases/{first}/transfer", json={"note": " ", "skill": "客服"})
        assert no_note.status_code == 422
        moved = agent.post(
            f"/api/cases/{first}/transfer", json={"note": "住户要找工程部", "skill": "工程"}
        ).json()
        assert moved["status"] == "待处理" and moved["skill"] == "工程" and moved["assignee"] is None

        assert agent.post(f"/api/cases/{second}/assign", json={"agent_id": 1}).status_code == 403
        agents = {a["name"]: a["agent_id"] for a in boss.get("/api/console/workload").json()}
        given = boss.post(
            f"/api/cases/{second}/assign", json={"agent_id": agents["客服小周"], "note": "你来"}
        )
        assert given.json()["assignee"] == "客服小周"
        timeline = boss.get(f"/api/cases/{first}").json()["events"]
        assert any("住户要找工程部" in e["text"] for e in timeline if e["kind"] == "transferred")


def test_roles_and_communities_are_checked(demo_kb: Settings) -> None:
    with LiveServer(demo_kb) as live, live.login("agent") as agent, live.login("pr") as pr, \
            live.client() as anonymous:  # fmt: skip
        _, case_id = handed_over(live)
        with live.client() as resident:
            other = say(resident, uuid.uuid4().hex, "转人工", community="binjiang")["case_id"]
        assert anonymous.get("/api/cases").status_code == 401
        assert pr.get("/api/cases").status_code == 403
        assert pr.get(f"/api/cases/{case_id}").status_code == 403
        assert agent.get(f"/api/cases/{other}").status_code == 404  # 滨江壹号 is not the agent's
        assert other not in [c["id"] for c in agent.get("/api/cases", params={"view": "active"}).json()]
        assert agent.post(f"/api/cases/{other}/claim").status_code == 404
        assert agent.get("/api/cases/999999").status_code == 404
        assert agent.post(f"/api/cases/{case_id}/reply", json={"text": ""}).status_code == 422
        assert agent.get("/api/reports/sla").status_code == 403
        policy = {"first_response_minutes": 1, "resolve_minutes": 2, "remind_before_minutes": 0}
        assert agent.put("/api/sla-policies/投诉", json=policy).status_code == 403


@pytest.mark.parametrize("text", ["5", "５", "4分 师傅很准时", "二分，太慢了"])
def test_survey_answers_people_write(text: str) -> None:
    from escalation.surveys import parse_survey_answer

    parsed = parse_survey_answer(text)
    assert parsed is not None and 1 <= parsed[0] <= 5


@pytest.mark.parametrize("text", ["5栋2单元", "谢谢", "", "10"])
def test_what_is_not_a_survey_answer(text: str) -> None:
    from escalation.surveys import parse_survey_answer

    assert parse_survey_answer(text) is None


def test_the_queue_follows_every_change_and_a_message_reaches_the_row_without_a_reload(
    demo_kb: Settings,
) -> None:
    """Lists are built once per change for all consoles of a scope: a claim is seen by the very
    next read, and a resident's message travels with its row's new line (masked) in the event."""
    import json
    import threading
    import time

    with LiveServer(demo_kb) as live, live.login("agent") as agent:
        session_id, case_id = handed_over(live)
        other_id = handed_over(live, "我要投诉，楼上天天装修")[1]
        events: list[dict[str, Any]] = []
        ready = threading.Event()

        def listen() -> None:
            with agent.stream("GET", "/api/console/stream", timeout=30) as stream:
                kind = ""
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                        ready.set()
                    elif line.startswith("data:") and kind == "case":
                        events.append(json.loads(line[5:]))
                        if events[-1].get("what") == "claimed":
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert ready.wait(10)
        queue = agent.get("/api/cases", params={"view": "queue"}).json()
        assert {c["id"] for c in queue} == {case_id, other_id}
        again = agent.get("/api/cases", params={"view": "queue"})
        assert again.json() == queue  # the same list, served again

        with live.client() as resident:
            say(resident, session_id, "我的电话是13812345678，麻烦尽快联系我")
        deadline = time.monotonic() + 5
        while not any(e["what"] == "message" for e in events) and time.monotonic() < deadline:
            time.sleep(0.05)
        message = next(e for e in events if e["what"] == "message")
        assert message["case_id"] == case_id
        assert message["summary"].startswith("住户：我的电话是138****5678")  # the row's line, masked

        assert agent.post(f"/api/cases/{other_id}/claim").status_code == 200
        assert [c["id"] for c in agent.get("/api/cases", params={"view": "queue"}).json()] == [case_id]
        listener.join(10)
        time.sleep(2.1)  # a cached list lives at most 2 s: the message's line is there now
        [row] = agent.get("/api/cases", params={"view": "queue"}).json()
        assert row["summary"] == message["summary"]
