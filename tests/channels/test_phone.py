"""Phone transcripts: a finished call, posted signed by the call centre in our generic JSON or as
Alibaba Cloud's file-transcription result, becomes one conversation; a real rq worker registers
what it asks for (work orders, cases, a call-back); the caller is found in the directory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from channels import phone
from channels.models import InboundMessage, InboundStatus
from channels.schemas import CallTranscriptIn
from channels.signing import signed_headers
from conversations.models import Channel, Conversation, Message, Sender
from core.db import get_database
from core.settings import Settings
from escalation.models import CallbackTask, Case, CaseCategory, WorkOrder
from org import service as org
from org.models import Community, IdentityKind
from tests.channels.test_app_channel import rows
from tests.conftest import LiveServer, wait_for

SECRET = "phone-secret-for-tests-0123456789"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "phone" / "aliyun_filetrans_sample.json"
CALLER = "13900001234"


def configured(settings: Settings) -> Settings:
    return settings.model_copy(update={"phone_channel_secret": SECRET, "inbound_stale_seconds": 1})


def post(client: httpx.Client, payload: dict[str, Any] | bytes, *, secret: str = SECRET) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
    return client.post("/channels/phone/transcripts", content=body, headers=headers)


def call(**fields: Any) -> dict[str, Any]:
    return {
        "call_id": fields.pop("call_id", f"call-{uuid.uuid4().hex[:12]}"),
        "community": "cuihu",
        "caller": f"+86 {CALLER[:3]}-{CALLER[3:7]}-{CALLER[7:]}",
        "started_at": "2026-11-23T09:30:00+08:00",
        "ended_at": "2026-11-23T09:32:10+08:00",
        "agent": "8012",
        **fields,
    }


def said(speaker: str, begin_ms: int, text: str) -> dict[str, Any]:
    return {"speaker": speaker, "begin_ms": begin_ms, "text": text}


def add_caller(settings: Settings) -> int:
    """周建国 of 5栋2单元1203, known by his mobile number."""
    with get_database(settings).session() as session:
        cuihu = session.scalars(select(Community).where(Community.code == "cuihu")).one()
        room = org.ensure_room(session=session, community_id=cuihu.id, building="5栋", unit="2单元",
                               number="1203")  # fmt: skip
        resident = org.create_resident(session=session, community_id=cuihu.id, name="周建国", room=room,
                                       identities=[(IdentityKind.mobile, CALLER)])  # fmt: skip
        return resident.id


def aliyun(sentences: list[tuple[int, int, str]], status: int = 21050000) -> dict[str, Any]:
    """A GetTaskResult response shaped like the published sample, for a two-track recording."""
    return {
        "TaskId": uuid.uuid4().hex,
        "RequestId": str(uuid.uuid4()).upper(),
        "StatusText": "SUCCESS",
        "BizDuration": 9000,
        "SolveTime": 1795400000000,
        "StatusCode": status,
        "Result": {
            "Sentences": [
                {
                    "EndTime": begin + 1800,
                    "SilenceDuration": 0,
                    "BeginTime": begin,
                    "Text": text,
                    "ChannelId": channel,
                    "SpeechRate": 200,
                    "EmotionValue": 6.0,
                }
                for channel, begin, text in sentences
            ]
        },
    }


# --- reading transcripts -----------------------------------------------------------------------


def test_the_published_alibaba_cloud_sample_reads_as_the_callers_words() -> None:
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    [said] = phone.aliyun_utterances(sample)
    assert (said.speaker, said.begin_ms, said.end_ms, said.text) == ("customer", 340, 2365, "北京的天气。")
    [other] = phone.aliyun_utterances(sample, customer_channel=1)
    assert other.speaker == "agent"
    as_string = {**sample, "Result": json.dumps(sample["Result"], ensure_ascii=False)}
    assert phone.aliyun_utterances(as_string) == [said]


def test_alibaba_cloud_tracks_are_put_in_time_order_and_failures_are_clear() -> None:
    response = aliyun([(1, 3000, "第二句"), (0, 0, "第一句"), (1, 3000, "   "), (0, 5000, "第三句")])
    body = CallTranscriptIn.model_validate(call(aliyun=response, customer_channel=1))
    assert [(u.speaker, u.text) for u in phone.utterances(body)] == [
        ("agent", "第一句"), ("customer", "第二句"), ("agent", "第三句")
    ]  # fmt: skip
    assert (
        phone.aliyun_utterances({"StatusCode": 21050003, "StatusText": "SUCCESS_WITH_NO_VALID_FRAGMENT"})
        == []
    )
    with pytest.raises(phone.UnreadableTranscript, match="41050002"):
        phone.aliyun_utterances({"StatusCode": 41050002, "StatusText": "FILE_DOWNLOAD_FAILED"})
    with pytest.raises(phone.UnreadableTranscript, match="第 1 句"):
        phone.aliyun_utterances({"StatusCode": 21050000, "Result": {"Sentences": [{"Text": "x"}]}})


# --- calls end to end --------------------------------------------------------------------------


def test_calls_become_conversations_with_work_orders_cases_and_call_backs(
    demo_kb: Settings, start_worker: Any
) -> None:
    settings = configured(demo_kb)
    resident_id = add_caller(settings)
    start_worker(settings)
    repair = call(
        call_id="c-repair",
        utterances=[
            said("customer", 800, "喂，你好，我家卫生间的灯坏了，麻烦派个师傅来修一下"),
            said("agent", 4200, "好的，请问您家是几栋几单元？"),
            said("customer", 6100, "5栋2单元1203"),
            said("agent", 8000, "已经给您登记了，师傅稍后给您回电话确认上门时间。"),
        ],
    )
    emergency = call(
        call_id="c-lift",
        caller="0571-88001234",  # a landline nobody in the directory has
        customer_channel=1,
        aliyun=aliyun([
            (1, 2100, "电梯困人了！我妈被关在3号楼电梯里出不来了"),
            (0, 0, "您好，翠湖花园物业客服，请问有什么可以帮您？"),
            (0, 4000, "请不要着急，我们马上安排人员过去。"),
            (1, 6500, "你们物业太不作为了，上个月就坏过，我要投诉"),
        ]),
    )  # fmt: skip
    voicemail = call(call_id="c-sample", aliyun=json.loads(SAMPLE.read_text(encoding="utf-8")))
    with LiveServer(settings) as live, live.client() as client:
        for payload in (repair, emergency, voicemail):
            response = post(client, payload)
            assert response.status_code == 202, response.text
        again = post(client, repair)  # the call centre posts the same call twice
        assert again.status_code == 200 and again.json()["duplicate"] is True

        def processed() -> bool:
            with get_database(settings).session(readonly=True) as session:
                statuses = session.scalars(select(InboundMessage.status)).all()
                return len(statuses) == 3 and all(s is InboundStatus.done for s in statuses)

        wait_for(processed, timeout=60, message="the worker to process the three calls")

    with get_database(settings).session(readonly=True) as session:

        def conversation(call_id: str) -> Conversation:
            return session.scalars(select(Conversation).where(Conversation.external_id == call_id)).one()

        def lines_of(conversation_id: int) -> list[Message]:
            query = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
            return list(session.scalars(query))

        def callback_of(conversation_id: int) -> CallbackTask:
            query = select(CallbackTask).where(CallbackTask.conversation_id == conversation_id)
            return session.scalars(query).one()

        fixed = conversation("c-repair")
        assert fixed.channel is Channel.phone and fixed.resident_id == resident_id
        lines = lines_of(fixed.id)
        assert [m.sender for m in lines] == [
            Sender.resident, Sender.agent, Sender.resident, Sender.agent, Sender.system
        ]  # fmt: skip
        assert lines[2].created_at > lines[0].created_at  # each line at its offset into the call
        order = session.scalars(select(WorkOrder).where(WorkOrder.conversation_id == fixed.id)).one()
        assert order.category.value == "工程" and order.location == "5栋2单元1203"
        assert order.resident_id == resident_id and "灯坏了" in order.description
        back = callback_of(fixed.id)
        assert back.phone == CALLER and back.work_order_id == order.id and "承诺回电" in back.reason
        assert f"工单 {order.id}" in lines[-1].text and f"回电任务 {back.id}" in lines[-1].text

        lift = conversation("c-lift")
        assert lift.resident_id is None
        lines = lines_of(lift.id)
        assert lines[0].sender is Sender.agent and "电梯困人" in lines[1].text  # tracks interleaved by time
        complaint, case = session.scalars(
            select(Case).where(Case.conversation_id == lift.id).order_by(Case.id)
        ).all()
        assert case.category is CaseCategory.emergency and case.emergency_kind == "电梯困人"
        assert case.channel == "phone"
        # the complaint in the same call is a case of its own, the emergency linked to it
        assert complaint.category is CaseCategory.complaint and "我要投诉" in complaint.summary
        assert case.linked_case_id == complaint.id
        lift_back = callback_of(lift.id)
        assert lift_back.case_id == case.id and lift_back.due_at == case.first_response_due
        assert lift_back.phone == "0571-88001234"
        assert session.scalars(select(WorkOrder).where(WorkOrder.conversation_id == lift.id)).all() == []

        assert callback_of(conversation("c-sample").id).reason == "来电无人接听（留言），需回电"
        assert len(session.scalars(select(CallbackTask)).all()) == 3


def test_bad_transcripts_get_clear_errors_and_store_nothing(demo: Settings) -> None:
    settings = configured(demo)
    with LiveServer(settings) as live, live.client() as client:
        good = call(utterances=[{"speaker": "customer", "begin_ms": 0, "text": "你好"}])
        assert post(client, good, secret="wrong").status_code == 403
        assert client.post("/channels/phone/transcripts", content=json.dumps(good)).status_code == 403
        malformed = post(client, b'{"call_id": "x", ')
        assert malformed.status_code == 400 and "JSON" in malformed.json()["error"]["message"]
        both = post(client, {**good, "aliyun": aliyun([(0, 0, "你好")])})
        assert both.status_code == 400 and "utterances 或 aliyun" in both.json()["error"]["message"]
        speaker = post(client, call(utterances=[{"speaker": "robot", "begin_ms": 0, "text": "你好"}]))
        assert speaker.status_code == 400 and "speaker" in speaker.json()["error"]["message"]
        failed = post(client, call(aliyun={"StatusCode": 41050002, "StatusText": "FILE_DOWNLOAD_FAILED"}))
        assert failed.status_code == 400 and "41050002" in failed.json()["error"]["message"]
        assert post(client, call(community="nowhere", utterances=[])).status_code == 404
        long_call = [{"speaker": "customer", "begin_ms": i, "text": "漏水" * 900} for i in range(400)]
        assert post(client, call(utterances=long_call)).status_code == 413
    assert rows(settings, InboundMessage) == 0
    with LiveServer(demo) as live, live.client() as client:  # the channel not configured
        assert post(client, good).status_code == 404
