"""The resident app's channel: signed requests in, one stored message, one assistant turn as a
job on a real rq worker, one signed reply out to the app's webhook (a local HTTP server standing
in for the app's backend)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from channels.models import DeliveryStatus, InboundMessage, InboundStatus, OutboundDelivery
from channels.service import sweep_inbound
from channels.signing import NONCE, SIGNATURE, TIMESTAMP, sign, signed_headers
from conversations.models import Message
from core.db import get_database
from core.settings import Settings
from tests import services
from tests.conftest import LiveServer, wait_for

SECRET = "app-secret-for-tests-0123456789"


class FakeAppBackend:
    """The app's webhook receiver on 127.0.0.1: records each POST; fails the first ``fail`` ones."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail = fail
        self.calls = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                backend.calls += 1
                if backend.calls <= backend.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                backend.received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/anju/replies"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def replies(self) -> list[dict[str, Any]]:
        out = []
        for headers, body in self.received:
            assert headers[SIGNATURE] == sign(SECRET, headers[TIMESTAMP], headers[NONCE], body)
            out.append(json.loads(body))
        return out

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def backend() -> Iterator[FakeAppBackend]:
    fake = FakeAppBackend()
    yield fake
    fake.close()


def configured(settings: Settings, backend: FakeAppBackend) -> Settings:
    changed = settings.model_copy(
        update={
            "app_channel_secret": SECRET,
            "app_webhook_url": backend.url,
            "delivery_backoff_seconds": [1, 1, 1],
            "delivery_max_attempts": 4,
            "inbound_stale_seconds": 1,
        }
    )
    return services.allowing(changed, backend.url)  # the fake backend on 127.0.0.1, by host:port


def post(
    client: httpx.Client, payload: dict[str, Any] | bytes, *, secret: str = SECRET, **header_overrides: str
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, body), **header_overrides}
    return client.post("/channels/app/messages", content=body, headers=headers)


def message(text: str, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"message_id": message_id or uuid.uuid4().hex, "community": "cuihu", "user_id": "app-user-8",
            "text": text, **extra}  # fmt: skip


def rows(settings: Settings, model: Any, *where: Any) -> int:
    with get_database(settings).session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_a_question_is_answered_through_the_signed_webhook(
    demo_kb: Settings, backend: FakeAppBackend, start_worker: Any
) -> None:
    settings = configured(demo_kb, backend)
    start_worker(settings)
    with LiveServer(settings) as live, live.client() as client:
        sent = message("物业费在哪交啊")
        response = post(client, sent)
        assert response.status_code == 202, response.text
        assert response.json()["duplicate"] is False
        wait_for(lambda: backend.received, message="the reply at the app's webhook")
    [reply] = backend.replies()
    assert reply["reply_to"] == sent["message_id"] and reply["user_id"] == "app-user-8"
    assert reply["action"] == "answer" and "生活缴费" in reply["reply"]
    assert reply["citations"][0]["document"] == "居民常见问题"
    with get_database(settings).session(readonly=True) as session:
        inbound = session.scalars(select(InboundMessage)).one()
        assert inbound.status is InboundStatus.done and inbound.attempts == 1
        delivery = session.scalars(select(OutboundDelivery)).one()
        assert delivery.status is DeliveryStatus.sent and delivery.attempts == 1


def test_the_same_message_four_times_at_once_is_stored_and_answered_once(
    demo_kb: Settings, backend: FakeAppBackend, start_worker: Any
) -> None:
    settings = configured(demo_kb, backend)
    start_worker(settings)
    sent = message("楼下的路灯坏了，3栋门口", "dup-1")
    with LiveServer(settings) as live, live.client() as client:
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: post(client, sent), range(4)))
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 202]
        assert len({r.json()["id"] for r in responses}) == 1
        wait_for(lambda: backend.received, message="the reply")
        time.sleep(2)  # a second reply, if there were one, would have arrived by now
    assert len(backend.replies()) == 1
    assert backend.replies()[0]["action"] == "work_order"
    assert rows(settings, InboundMessage) == 1
    assert rows(settings, Message, Message.client_id == "dup-1") == 1
    assert rows(settings, OutboundDelivery) == 1


def test_a_failing_webhook_is_retried_until_the_app_takes_the_reply(
    demo_kb: Settings, start_worker: Any
) -> None:
    backend = FakeAppBackend(fail=2)
    try:
        settings = configured(demo_kb, backend)
        start_worker(settings)
        with LiveServer(settings) as live, live.client() as client:
            assert post(client, message("你好")).status_code == 202
            wait_for(lambda: backend.received, timeout=40, message="the reply after two failures")
        assert backend.calls == 3
        with get_database(settings).session(readonly=True) as session:
            delivery = session.scalars(select(OutboundDelivery)).one()
            assert delivery.status is DeliveryStatus.sent and delivery.attempts == 3
    finally:
        backend.close()


def test_accepted_while_redis_is_down_is_answered_once_redis_is_back(
    demo_kb: Settings, backend: FakeAppBackend, start_worker: Any
) -> None:
    """The database is the truth: the message is stored and acknowledged with Redis unreachable;
    the sweeper enqueues it later and the resident gets one reply."""
    settings = configured(demo_kb, backend)
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{services.free_port()}/0"})
    with LiveServer(no_redis) as live, live.client() as client:
        response = post(client, message("停车月卡怎么办理", "while-redis-down"))
        assert response.status_code == 202, response.text
    assert rows(settings, InboundMessage, InboundMessage.status == InboundStatus.accepted) == 1
    start_worker(settings)
    time.sleep(1.1)  # older than inbound_stale_seconds
    assert sweep_inbound(settings) == {"inbound": 1, "deliveries": 0}
    wait_for(lambda: backend.received, message="the reply after the sweep")
    assert backend.replies()[0]["reply_to"] == "while-redis-down"
    assert sweep_inbound(settings) == {"inbound": 0, "deliveries": 0}


def test_an_empty_message_gets_a_polite_reply(
    demo_kb: Settings, backend: FakeAppBackend, start_worker: Any
) -> None:
    settings = configured(demo_kb, backend)
    start_worker(settings)
    with LiveServer(settings) as live, live.client() as client:
        assert post(client, message("   ")).status_code == 202
        wait_for(lambda: backend.received, message="the reply")
    [reply] = backend.replies()
    assert reply["action"] == "clarify" and "输入" in reply["reply"]


def test_bad_requests_get_clear_errors_and_store_nothing(demo: Settings, backend: FakeAppBackend) -> None:
    settings = configured(demo, backend)
    with LiveServer(settings) as live, live.client() as client:
        good = json.dumps(message("物业费在哪交")).encode()
        wrong = post(client, good, secret="not-the-secret")
        assert wrong.status_code == 403 and wrong.json()["error"]["message"] == "签名无效"
        stale = str(int(time.time()) - 3600)
        old = {TIMESTAMP: stale, NONCE: "n" * 16, SIGNATURE: sign(SECRET, stale, "n" * 16, good)}
        assert post(client, good, **old).status_code == 403
        assert client.post("/channels/app/messages", content=good).status_code == 403  # unsigned
        replay = {"Content-Type": "application/json", **signed_headers(SECRET, good)}
        assert client.post("/channels/app/messages", content=good, headers=replay).status_code == 202
        again = client.post("/channels/app/messages", content=good, headers=replay)
        assert again.status_code == 403 and "nonce" in again.json()["error"]["message"]
        malformed = post(client, b'{"message_id": "x", "community": ')
        assert malformed.status_code == 400 and "JSON" in malformed.json()["error"]["message"]
        missing = post(client, {"message_id": "m-1", "community": "cuihu"})
        assert missing.status_code == 400 and "user_id" in missing.json()["error"]["message"]
        assert post(client, message("你好", community="nowhere")).status_code == 404
        naive = post(client, message("你好", sent_at="2026-11-23T10:00:00"))  # no offset: ambiguous
        assert naive.status_code == 400 and "sent_at" in naive.json()["error"]["message"]
        assert post(client, message("你好", user_id="   ")).status_code == 400
        huge = post(client, message("漏水" * (settings.max_body_bytes // 4)))
        assert huge.status_code == 413
    assert rows(settings, InboundMessage) == 1  # only the one good request
    with LiveServer(demo) as live, live.client() as client:  # the channel not configured
        assert post(client, message("你好")).status_code == 404


@pytest.mark.slow
def test_a_worker_killed_mid_answer_leaves_the_message_to_another_and_one_reply(
    demo_kb: Settings, backend: FakeAppBackend, start_worker: Any, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from tests.assistant.test_llm import FakeChatServer, completion
    from tests.conftest import ROOT, settings_env

    with FakeChatServer() as llm:
        first_call = threading.Event()

        def slow_then_fast(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if not first_call.is_set():
                first_call.set()
                llm.release.wait(6)  # the model is still writing when the worker dies
            return 200, completion(body, "物业费可以在 App 的生活缴费里交。")

        llm.behaviour = slow_then_fast
        settings = services.allowing(
            configured(demo_kb, backend).model_copy(
                update={"llm_base_url": llm.base_url, "llm_model": "qwen-test", "llm_timeout_seconds": 8.0}
            ),
            llm.base_url,
        )
        first = start_worker(settings)
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "anju.cli", "scheduler"], env=settings_env(settings), cwd=ROOT,
            stdout=(tmp_path / "scheduler.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with LiveServer(settings) as live, live.client() as client:
                assert post(client, message("物业费在哪交啊", "killed-1")).status_code == 202
                wait_for(first_call.is_set, message="the first worker to be writing the answer")
                first.kill()
                start_worker(settings)
                wait_for(lambda: backend.received, timeout=60, message="the reply from the second worker")
                time.sleep(3)  # room for a second reply, which must not come
        finally:
            scheduler.terminate()
            scheduler.wait(timeout=10)
    [reply] = backend.replies()
    assert reply["reply_to"] == "killed-1" and reply["action"] == "answer"
    with get_database(settings).session(readonly=True) as session:
        inbound = session.scalars(select(InboundMessage)).one()
        assert inbound.status is InboundStatus.done and inbound.attempts == 2
        assert (
            session.scalar(select(func.count()).select_from(Message).where(Message.sender == "assistant"))
            == 1
        )


def test_a_reply_that_never_arrives_is_shown_to_agents_and_sent_again_on_request(
    demo_kb: Settings, start_worker: Any
) -> None:
    backend = FakeAppBackend(fail=10**6)  # the app's backend is down
    try:
        settings = configured(demo_kb, backend).model_copy(
            update={"delivery_max_attempts": 2, "delivery_backoff_seconds": [1]}
        )
        start_worker(settings)
        with LiveServer(settings) as live, live.client() as client:
            assert post(client, message("我的手机13900001234，物业费在哪交")).status_code == 202

            def failed() -> bool:
                return rows(settings, OutboundDelivery, OutboundDelivery.status == DeliveryStatus.failed) == 1

            wait_for(failed, timeout=40, message="the delivery to fail for good")
            with live.login("agent") as agent:
                problems = agent.get("/api/communities/1/intake/problems").json()
                assert problems["failed_messages"] == []
                [shown] = problems["failed_deliveries"]
                assert shown["channel"] == "app" and shown["attempts"] == 2 and "HTTP 503" in shown["error"]
                assert "13900001234" not in json.dumps(problems, ensure_ascii=False)
                backend.fail = 0  # the app's backend is back
                retried = agent.post(f"/api/intake/deliveries/{shown['id']}/retry")
                assert retried.status_code == 200 and retried.json()["status"] == "pending"
                wait_for(lambda: backend.received, message="the reply sent again")
                again = agent.post(f"/api/intake/deliveries/{shown['id']}/retry")
                assert again.status_code == 422  # sent now: nothing to retry
                assert agent.get("/api/communities/1/intake/problems").json()["failed_deliveries"] == []
                assert agent.post("/api/intake/deliveries/99999/retry").status_code == 404
    finally:
        backend.close()
    assert len(backend.replies()) == 1
