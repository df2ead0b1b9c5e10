"""The resident assistant through real HTTP: cited answers, emergencies, work orders over several
turns, hand-offs with history, community scope, and bad input. Both databases, real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from channels.models import InboundMessage, InboundStatus, OutboundDelivery
from conversations.models import Channel, Conversation, ConversationState, Message, Sender
from core.db import get_database
from core.settings import Settings
from escalation.models import Case, CaseCategory, Priority, WorkOrder
from tests.conftest import LiveServer


@pytest.fixture
def chat(demo_kb: Settings) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with LiveServer(demo_kb) as server, server.client() as client:
        yield server, client


def sid(name: str) -> str:
    """A session id as the page makes them (16+ characters of [A-Za-z0-9_-])."""
    return f"{name}-0123456789abcdef"


def turn(client: httpx.Client, text: str, session_id: str, community: str = "cuihu", **extra: object) -> dict:
    response = client.post(
        "/api/chat", json={"community": community, "session_id": sid(session_id), "text": text, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_question_is_answered_from_the_faq_with_its_citation(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    body = turn(client, "物业费在哪交啊", "s-answer")
    assert body["action"] == "answer"
    assert "生活缴费" in body["reply"]
    assert body["citations"][0] == {
        "document": "居民常见问题",
        "section": "物业费怎么交",
        "snippet": body["citations"][0]["snippet"],
    }
    assert 0 < body["confidence"] <= 1
    assert body["case_id"] is None and body["work_order_id"] is None


def test_standard_passage_answer_cites_document_and_heading(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    body = turn(client, "小区保安多久巡逻一次", "s-standard")
    assert body["action"] == "answer", body
    cited = body["citations"][0]
    assert cited["document"] == "安居物业服务标准（示范）"
    assert "巡逻" in cited["section"] + cited["snippet"]
    assert body["reply"].startswith("根据《安居物业服务标准（示范）》")


def test_emergency_raises_a_case_at_once_with_safety_steps_and_duty_phone(
    chat: tuple[LiveServer, httpx.Client],
) -> None:
    server, client = chat
    body = turn(client, "电梯停了我被关里面了 救命", "s-lift", message_id="lift-1")
    assert body["action"] == "emergency"
    resent = turn(client, "电梯停了我被关里面了 救命", "s-lift", message_id="lift-1")  # a flaky network
    assert {k: resent[k] for k in ("reply", "emergency", "duty_phone", "case_id")} == {
        k: body[k] for k in ("reply", "emergency", "duty_phone", "case_id")
    }
    assert body["emergency"] == "电梯困人"
    assert body["duty_phone"] == "0571-8800-1234"
    assert "0571-8800-1234" in body["reply"]
    assert "警铃" in body["reply"]  # the safety steps come from the knowledge base
    assert body["citations"]
    with get_database(server.settings).session() as session:
        case = session.get(Case, body["case_id"])
        assert case is not None
        assert case.category is CaseCategory.emergency and case.priority is Priority.urgent
        assert case.first_response_due - case.created_at == timedelta(minutes=5)
        assert "电梯停了我被关里面了" in case.summary
        conversation = session.get(Conversation, case.conversation_id)
        assert conversation is not None and conversation.state is ConversationState.human


@pytest.mark.parametrize(
    "text",
    ["厨房一股臭鸡蛋味", "楼下冒黑烟 好像电动车烧起来了", "有人在撬我家门", "楼上掉下来个花盆 差点砸到人"],
)
def test_emergencies_phrased_without_the_standard_words(
    chat: tuple[LiveServer, httpx.Client], text: str
) -> None:
    _, client = chat
    assert turn(client, text, f"s-{uuid.uuid4().hex}")["action"] == "emergency"


def test_procedure_question_is_answered_not_treated_as_emergency(
    chat: tuple[LiveServer, httpx.Client],
) -> None:
    _, client = chat
    body = turn(client, "万一被困在电梯里应该怎么做 想提前了解下", "s-procedure")
    assert body["action"] == "answer"
    assert body["case_id"] is None


def test_repair_over_several_turns(chat: tuple[LiveServer, httpx.Client]) -> None:
    server, client = chat
    first = turn(client, "厨房水管漏水了", "s-repair")
    assert first["action"] == "work_order"
    assert "15 分钟" in first["reply"] and "几栋几单元" in first["reply"]
    second = turn(client, "我在3栋2单元1102", "s-repair")
    assert second["action"] == "work_order"
    assert second["work_order_id"] == first["work_order_id"]
    third = turn(client, "那要多久？", "s-repair")
    assert third["action"] == "answer"
    assert "24 小时" in third["reply"]
    with get_database(server.settings).session() as session:
        order = session.get(WorkOrder, first["work_order_id"])
        assert order is not None
        assert order.category.value == "工程"
        assert (order.building, order.unit, order.room) == ("3栋", "2单元", "1102")
        assert order.status.value == "待派单"
        assert order.resolve_due - order.created_at == timedelta(hours=24)


def test_work_order_with_location_and_category(chat: tuple[LiveServer, httpx.Client]) -> None:
    server, client = chat
    body = turn(client, "5栋1单元楼下垃圾桶满了两天没人清 都臭了", "s-clean")
    assert body["action"] == "work_order"
    with get_database(server.settings).session() as session:
        order = session.get(WorkOrder, body["work_order_id"])
        assert order is not None and order.category.value == "保洁" and order.building == "5栋"


def test_hand_off_carries_the_history_and_the_assistant_then_stays_out(
    chat: tuple[LiveServer, httpx.Client],
) -> None:
    server, client = chat
    turn(client, "停车月卡怎么办理", "s-human")
    handed = turn(client, "转人工", "s-human")
    assert handed["action"] == "human"
    later = turn(client, "我的车牌是浙A12345", "s-human")
    assert later["action"] == "human"
    assert later["case_id"] == handed["case_id"]
    with get_database(server.settings).session() as session:
        case = session.get(Case, handed["case_id"])
        assert case is not None
        assert "停车月卡怎么办理" in case.summary  # the agent sees what came before
        assert "行驶证" in case.summary  # …including the assistant's answer
        assert "浙A12345" in case.summary


def test_complaint_goes_to_a_person_with_the_complaint_sla(chat: tuple[LiveServer, httpx.Client]) -> None:
    server, client = chat
    body = turn(client, "你们物业就是不作为 我要打12345", "s-complaint")
    assert body["action"] == "human"
    assert "48 小时" in body["reply"]
    with get_database(server.settings).session() as session:
        case = session.get(Case, body["case_id"])
        assert case is not None and case.category is CaseCategory.complaint
        assert case.priority is Priority.important


def test_two_failed_turns_hand_over(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    first = turn(client, "量子纠缠实验室的申请表格", "s-fail")
    assert first["action"] == "clarify"
    second = turn(client, "比特币矿机的散热方案", "s-fail")
    assert second["action"] == "human"
    assert second["case_id"] is not None


def test_an_answer_for_one_community_never_reaches_another(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    jinjiang = turn(client, "停车费多少钱一个月", "s-scope-1", community="jinjiang")
    cuihu = turn(client, "停车费多少钱一个月", "s-scope-2", community="cuihu")
    binjiang = turn(client, "物业费多少钱一平", "s-scope-3", community="binjiang")
    assert "150 元" in jinjiang["reply"] and "翠湖" not in jinjiang["reply"]
    assert "200 元" in cuihu["reply"] and "锦江" not in cuihu["reply"]
    assert "3.5 元" in binjiang["reply"]


def test_chitchat_and_empty_text(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    assert turn(client, "谢谢啦👍", "s-chat")["action"] == "chitchat"
    empty = turn(client, "   ", "s-chat")
    assert empty["action"] == "clarify"
    assert "输入" in empty["reply"]


def test_a_resent_message_is_answered_once(chat: tuple[LiveServer, httpx.Client]) -> None:
    server, client = chat
    payload = {"community": "cuihu", "session_id": sid("s-dup"), "text": "楼道灯坏了", "message_id": "m-1"}
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: client.post("/api/chat", json=payload), range(4)))
    ok = [r.json() for r in replies if r.status_code == 200]
    assert ok, [r.text for r in replies]
    assert {r["work_order_id"] for r in ok} == {ok[0]["work_order_id"]}
    again = client.post("/api/chat", json=payload).json()
    assert again["work_order_id"] == ok[0]["work_order_id"]
    with get_database(server.settings).session() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == 1
        said = select(func.count()).select_from(Message).where(Message.sender == Sender.resident)
        assert session.scalar(said) == 1
        # Through the intake like every channel: one stored inbound message, processed, linked.
        inbound = session.scalars(select(InboundMessage)).one()
        assert inbound.channel is Channel.web and inbound.status is InboundStatus.done
        assert inbound.sender == sid("s-dup") and inbound.text == "楼道灯坏了"
        assert inbound.conversation_id == ok[0]["conversation_id"] and inbound.reply_message_id is not None
        assert session.scalar(select(func.count()).select_from(OutboundDelivery)) == 0  # the page has it


def test_bad_input_gets_clear_errors(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    unknown = client.post("/api/chat", json={"community": "nowhere", "session_id": sid("s"), "text": "你好"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "找不到该小区"
    too_long = client.post(
        "/api/chat", json={"community": "cuihu", "session_id": sid("s"), "text": "漏" * 2001}
    )
    assert too_long.status_code == 422
    no_session = client.post("/api/chat", json={"community": "cuihu", "text": "你好"})
    assert no_session.status_code == 422
    guessable = client.post("/api/chat", json={"community": "cuihu", "session_id": "1", "text": "你好"})
    assert guessable.status_code == 422
    not_json = client.post("/api/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert client.get("/chat/nowhere").status_code == 404


def test_history_and_page(chat: tuple[LiveServer, httpx.Client]) -> None:
    _, client = chat
    turn(client, "门禁卡丢了怎么办", "s-history")
    history = client.get(
        "/api/chat/history", params={"community": "cuihu", "session_id": sid("s-history")}
    ).json()
    assert [m["sender"] for m in history] == ["resident", "assistant"]
    assert history[1]["citations"][0]["section"] == "门禁卡丢了怎么办"
    page = client.get("/chat/cuihu")
    assert page.status_code == 200
    assert "翠湖花园" in page.text and "转人工" in page.text and "0571-8800-1234" in page.text


def test_the_api_warms_the_assistant_up_when_it_starts(demo_kb: Settings) -> None:
    from knowledge.retrieval import get_search
    from tests.conftest import wait_for

    settings = demo_kb.model_copy(update={"warm_assistant": True})
    with LiveServer(settings):
        search = get_search(settings)
        wait_for(lambda: bool(search._loaded), timeout=60, message="index loaded in the background")


def test_without_the_embeddings_model_emergencies_and_answers_still_work(
    demo_kb: Settings, tmp_path: Path
) -> None:
    """A model that cannot load must not take the emergency path down with it."""
    from channels.flows.message import take_turn

    broken = demo_kb.model_copy(
        update={"embedding_backend": "sentence-transformers", "embedding_model_path": tmp_path / "missing"}
    )
    emergency = take_turn(
        broken, community="cuihu", session_id=sid("no-model-1"), text="电梯停了我被关里面了"
    )
    assert emergency.action.value == "emergency" and emergency.case_id is not None
    answer = take_turn(broken, community="cuihu", session_id=sid("no-model-2"), text="物业费怎么交")
    assert answer.action.value == "answer" and "生活缴费" in answer.reply


def test_after_an_emergency_more_details_join_the_emergency_case(
    chat: tuple[LiveServer, httpx.Client],
) -> None:
    server, client = chat
    first = turn(client, "楼下着火了 好大的烟", "s-emergency-more")
    assert first["action"] == "emergency"
    assert first["reply"].splitlines()[1] == "请立即拨打 119。"  # the phone comes first
    more = turn(client, "我在5栋2单元702 电话13800001111", "s-emergency-more")
    assert more["case_id"] == first["case_id"]
    assert "紧急事件" in more["reply"] and "0571-8800-1234" in more["reply"]
    with get_database(server.settings).session() as session:
        case = session.get(Case, first["case_id"])
        assert case is not None and "5栋2单元702" in case.summary


def test_flooding_the_chat_is_refused_politely(demo_kb: Settings) -> None:
    settings = demo_kb.model_copy(update={"chat_per_session_per_minute": 3})
    with LiveServer(settings) as server, server.client() as client:
        body = {"community": "cuihu", "session_id": sid("s-flood"), "text": "你好"}
        codes = [client.post("/api/chat", json=body).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        refused = client.post("/api/chat", json=body).json()
        assert "值班电话" in refused["error"]["message"]
        other = client.post("/api/chat", json={**body, "session_id": sid("s-other")})
        assert other.status_code == 200  # per session, not for everyone


def test_chat_still_answers_when_redis_is_unreachable(demo_kb: Settings) -> None:
    """Redis only carries the rate limit and background jobs: a resident is answered without it."""
    from tests import services

    settings = demo_kb.model_copy(update={"redis_url": f"redis://127.0.0.1:{services.free_port()}/0"})
    with LiveServer(settings) as server, server.client() as client:
        body = client.post(
            "/api/chat",
            json={"community": "cuihu", "session_id": sid("s-no-redis"), "text": "电梯停了我被关里面了"},
        )
        assert body.status_code == 200, body.text
        assert body.json()["action"] == "emergency"


def test_a_described_hazard_goes_to_a_person_flagged_and_urgent_without_paging(
    chat: tuple[LiveServer, httpx.Client],
) -> None:
    server, client = chat
    letter = (
        "尊敬的物业领导您好，我是翠湖花园6栋的业主。去年我们单元电梯多次困人，最长一次关了四十多分钟，"
        "维保公司来看过几次也没有彻底解决，请尽快安排检修并给业主一个说法。"
    )
    body = turn(client, letter, "s-hazard")
    assert body["action"] == "human", body
    assert "安全隐患" in body["reply"] and "如果现在就有危险" in body["reply"]
    with get_database(server.settings).session() as session:
        case = session.get(Case, body["case_id"])
        assert case is not None
        assert case.category is CaseCategory.complaint and case.priority is Priority.urgent
        assert case.hazard == "电梯困人"
        assert case.page_level is None  # nobody on duty is woken for last year's entrapments
    with server.login("agent") as agent:
        listed = agent.get("/api/cases").json()
    assert [c["hazard"] for c in listed if c["id"] == body["case_id"]] == ["电梯困人"]


def test_a_repair_inside_a_complaint_registers_the_work_order_and_hands_over_in_one_turn(
    chat: tuple[LiveServer, httpx.Client],
) -> None:
    server, client = chat
    letter = (
        "尊敬的领导：翠湖花园3栋2单元1102楼顶从今年五月开始漏水，我已经多次找物业反映，至今没有人来维修，"
        "卧室墙面已经发霉，请求尽快安排维修，并对物业的不作为给个说法。"
    )
    body = turn(client, letter, "s-repair-complaint")
    assert body["action"] == "human"
    assert body["case_id"] is not None and body["work_order_id"] is not None
    assert "报修工单" in body["reply"] and "人工客服" in body["reply"]
    with get_database(server.settings).session() as session:
        order = session.get(WorkOrder, body["work_order_id"])
        case = session.get(Case, body["case_id"])
        assert order is not None and case is not None
        assert order.case_id == case.id and case.category is CaseCategory.complaint
        assert (order.building, order.unit, order.room) == ("3栋", "2单元", "1102")
    with server.login("agent") as agent:
        detail = agent.get(f"/api/cases/{body['case_id']}").json()
    registered = [e for e in detail["events"] if e["kind"] == "work_order"]
    assert len(registered) == 1, detail["events"]  # the agent sees on the timeline who registered it
    assert str(body["work_order_id"]) in registered[0]["text"] and "自动登记" in registered[0]["text"]
