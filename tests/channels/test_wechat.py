"""The WeChat official account channel against a local fake of WeChat's API (token and
customer-service endpoints over real HTTP), a real rq worker, and the published crypto vectors."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import xmltodict
from sqlalchemy import func, select

from channels.models import DeliveryStatus, InboundMessage, OutboundDelivery
from conversations.models import Message
from core.db import get_database
from core.settings import Settings, WechatAccount
from tests import services
from tests.conftest import LiveServer, wait_for

TOKEN = "anju-wechat-token"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"  # 43 characters, as WeChat issues them
NEW_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx49f0ab532d5d035a"


class FakeWechatApi:
    """api.weixin.qq.com's token and customer-service message endpoints, on 127.0.0.1."""

    def __init__(self, *, expire_first_token: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self.expire_first_token = expire_first_token
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path == "/cgi-bin/token" and query.get("appid") == [APP_ID]:
                    api.tokens_issued += 1
                    self._json({"access_token": f"token-{api.tokens_issued}", "expires_in": 7200})
                else:
                    self._json({"errcode": 40013, "errmsg": "invalid appid"})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                token = parse_qs(url.query).get("access_token", [""])[0]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if api.expire_first_token and token == "token-1":
                    self._json({"errcode": 42001, "errmsg": "access_token expired"})
                    return
                api.sent.append({"token": token, **body})
                self._json({"errcode": 0, "errmsg": "ok"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def api() -> Iterator[FakeWechatApi]:
    fake = FakeWechatApi()
    yield fake
    fake.close()


def configured(
    settings: Settings, api: FakeWechatApi, *, aes: bool = False, passive: float = 4.0
) -> Settings:
    keys = {"aes_key": NEW_AES_KEY, "previous_aes_key": AES_KEY} if aes else {}
    account = WechatAccount(app_id=APP_ID, app_secret="secret", token=TOKEN, community="cuihu", **keys)
    changed = settings.model_copy(
        update={
            "wechat_accounts": [account],
            "wechat_api_base": api.base,
            "wechat_passive_reply_seconds": passive,
            "delivery_backoff_seconds": [1, 1],
            "delivery_max_attempts": 3,
        }
    )
    return services.allowing(changed, api.base)  # the fake WeChat API on 127.0.0.1, by host:port


def signed_params(**extra: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce, **extra}


def text_xml(content: str, msg_id: str = "", openid: str = "oResident123") -> str:
    msg_id = msg_id or str(uuid.uuid4().int % 10**18)
    return (f"<xml><ToUserName><![CDATA[gh_anju]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")  # fmt: skip


def push(client: httpx.Client, xml: str, *, key: str = "") -> httpx.Response:
    return client.post(f"/channels/wechat{key}", params=signed_params(), content=xml.encode())


def worker_ready(settings: Settings, start_worker: Any) -> None:
    """Start a worker and wait until it takes jobs (it loads the models before it registers)."""
    from rq import Worker

    from core.redis import get_redis

    start_worker(settings)
    wait_for(lambda: Worker.all(connection=get_redis(settings)), timeout=60, message="a registered worker")


def rows(settings: Settings, model: Any, *where: Any) -> int:
    with get_database(settings).session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_published_crypto_vector_decrypts() -> None:
    """The encrypted message and signature published with WeChat's crypto samples (as wechatpy's
    own tests carry them) decrypt to the documented plaintext through our adapter."""
    from channels import wechat

    account = WechatAccount(app_id=APP_ID, app_secret="x", token="123456", community="cuihu",
                            aes_key=NEW_AES_KEY, previous_aes_key=AES_KEY)  # fmt: skip
    encrypted = (
        "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA["
        "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283d"
        "Gymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPw"
        "BiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54"
        "SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91"
        "eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>"
    )
    params = {"msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "timestamp": "1411525903",
              "nonce": "461056294"}  # fmt: skip
    plain = xmltodict.parse(wechat.decrypt(account, encrypted, params))["xml"]  # the previous key opens it
    assert plain["Content"] == "test" and plain["FromUserName"] == "messense"
    with pytest.raises(wechat.WechatRejected) as refused:
        wechat.decrypt(account, encrypted, {**params, "msg_signature": "0" * 40})
    assert refused.value.status == 403


def test_url_verification(demo: Settings, api: FakeWechatApi) -> None:
    settings = configured(demo, api)
    with LiveServer(settings) as live, live.client() as client:
        ok = client.get("/channels/wechat", params=signed_params(echostr="5838479218127813673"))
        assert ok.status_code == 200 and ok.text == "5838479218127813673"
        bad = {**signed_params(echostr="1"), "signature": "0" * 40}
        assert client.get("/channels/wechat", params=bad).status_code == 403
        assert client.get("/channels/wechat/other", params=signed_params(echostr="1")).status_code == 404


def test_a_quick_answer_is_the_passive_reply_and_retries_are_not_answered_twice(
    demo_kb: Settings, api: FakeWechatApi, start_worker: Any
) -> None:
    settings = configured(demo_kb, api)
    worker_ready(settings, start_worker)
    xml = text_xml("物业费在哪交啊", msg_id="1001")
    with LiveServer(settings) as live, live.client() as client:
        first = push(client, xml)
        assert first.status_code == 200 and first.headers["content-type"].startswith("application/xml")
        reply = xmltodict.parse(first.text)["xml"]
        assert reply["ToUserName"] == "oResident123" and reply["FromUserName"] == "gh_anju"
        assert "生活缴费" in reply["Content"]
        again = push(client, xml)  # WeChat's retry of the same MsgId
        assert again.text == "success"
        time.sleep(6)  # past the passive window: the API job would have sent a second copy by now
    assert api.sent == []
    assert rows(settings, InboundMessage) == 1
    assert rows(settings, Message, Message.client_id == "oResident123:1001") == 1
    with get_database(settings).session(readonly=True) as session:
        assert session.scalars(select(OutboundDelivery)).one().status is DeliveryStatus.sent


def test_a_late_answer_goes_out_as_a_customer_service_message_with_a_refreshed_token(
    demo_kb: Settings, start_worker: Any
) -> None:
    api = FakeWechatApi(expire_first_token=True)
    try:
        settings = configured(demo_kb, api, passive=0.2)
        with LiveServer(settings) as live, live.client() as client:
            response = push(client, text_xml("停车月卡怎么办理", msg_id="2001"))
            assert response.text == "success"  # no worker yet: nothing ready within the window
        start_worker(settings)
        wait_for(lambda: api.sent, timeout=40, message="the customer-service message")
        [sent] = api.sent
        assert sent["touser"] == "oResident123" and sent["msgtype"] == "text"
        assert "行驶证" in sent["text"]["content"]
        assert sent["token"] == "token-2" and api.tokens_issued == 2  # the expired token was replaced
    finally:
        api.close()


def test_safe_mode_with_the_previous_key_and_an_encrypted_reply(
    demo_kb: Settings, api: FakeWechatApi, start_worker: Any
) -> None:
    from wechatpy.crypto import WeChatCrypto

    settings = configured(demo_kb, api, aes=True)
    worker_ready(settings, start_worker)
    old = WeChatCrypto(TOKEN, AES_KEY, APP_ID)  # the resident's message still encrypted with the old key
    params = signed_params()
    envelope = xmltodict.parse(old.encrypt_message(text_xml("你好"), params["nonce"], params["timestamp"]))[
        "xml"
    ]
    sealed_in = envelope["Encrypt"]
    body = (
        f"<xml><ToUserName><![CDATA[gh_anju]]></ToUserName><Encrypt><![CDATA[{sealed_in}]]></Encrypt></xml>"
    )
    query = {**params, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
    with LiveServer(settings) as live, live.client() as client:
        response = client.post("/channels/wechat", params=query, content=body.encode())
    assert response.status_code == 200
    sealed = xmltodict.parse(response.text)["xml"]
    plain = WeChatCrypto(TOKEN, NEW_AES_KEY, APP_ID).decrypt_message(
        response.text, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"]
    )
    assert xmltodict.parse(plain)["xml"]["MsgType"] == "text"
    with LiveServer(settings) as live, live.client() as client:  # safe mode: plaintext is not WeChat
        assert push(client, text_xml("你好")).status_code == 403


def test_events_voice_and_bad_input(demo: Settings, api: FakeWechatApi) -> None:
    settings = configured(demo, api)
    now = int(time.time())
    head = "<xml><ToUserName>gh_anju</ToUserName>"
    subscribe = (f"{head}<FromUserName>oNew</FromUserName><CreateTime>{now}</CreateTime>"
                 "<MsgType>event</MsgType><Event>subscribe</Event></xml>")  # fmt: skip
    voice = (f"{head}<FromUserName>oVoice</FromUserName><CreateTime>{now}</CreateTime>"
             "<MsgType>voice</MsgType><MediaId>m1</MediaId><Format>amr</Format><Recognition></Recognition>"
             "<MsgId>3001</MsgId></xml>")  # fmt: skip
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            "<xml><Content>&lol2;</Content></xml>")  # fmt: skip
    with LiveServer(settings) as live, live.client() as client:
        welcome = xmltodict.parse(push(client, subscribe).text)["xml"]
        assert "欢迎关注" in welcome["Content"]
        unheard = xmltodict.parse(push(client, voice).text)["xml"]
        assert "没有识别出文字" in unheard["Content"]
        assert push(client, "<xml><MsgType>text</MsgType>").status_code == 400  # malformed
        assert push(client, bomb).status_code == 400  # entity expansion refused
        wrong = client.post("/channels/wechat", params={**signed_params(), "signature": "f" * 40},
                            content=text_xml("你好").encode())  # fmt: skip
        assert wrong.status_code == 403
        stale = signed_params()
        stale["timestamp"] = str(now - 3600)
        assert (
            client.post("/channels/wechat", params=stale, content=text_xml("你好").encode()).status_code
            == 403
        )
        assert push(client, text_xml("你好"), key="/nope").status_code == 404
        reused = signed_params()  # plaintext signatures do not cover the body: one may not carry another
        assert client.post("/channels/wechat", params=reused, content=text_xml("你好", "4001").encode()).text
        forged = client.post("/channels/wechat", params=reused, content=text_xml("转人工", "4002").encode())
        assert forged.status_code == 403
        assert push(client, text_xml("漏" * settings.max_body_bytes)).status_code == 413
    assert rows(settings, InboundMessage) == 2  # the voice message and 4001 are on record; nothing else


def test_a_menu_button_asks_its_configured_question_never_its_raw_key() -> None:
    from channels import wechat

    def click(key: str) -> str:
        return ("<xml><ToUserName>gh_anju</ToUserName><FromUserName>oMenu</FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType><Event>CLICK</Event>"
                f"<EventKey>{key}</EventKey></xml>")  # fmt: skip

    menu = {"FEE": "物业费怎么交", "REPAIR": "我要报修"}
    fee = wechat.read_message(click("FEE"), menu)
    assert fee.store and fee.text == "物业费怎么交" and fee.external_id.startswith("oMenu:")
    unknown = wechat.read_message(click("V1001_OLD_BUTTON"), menu)
    assert not unknown.store and unknown.immediate == wechat.MENU_UNKNOWN and not unknown.text


def _no_msg_id(content: str, created: int, openid: str = "oResident123") -> str:
    return (f"<xml><ToUserName><![CDATA[gh_anju]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content></xml>")  # fmt: skip


def test_two_messages_without_msg_id_in_one_second_are_both_answered(
    demo_kb: Settings, api: FakeWechatApi, start_worker: Any
) -> None:
    """Without MsgId the key was sender + nothing: the second message — 着火了 — was taken for a
    duplicate of the first and dropped. Now the content keys it; WeChat's retry (the same bytes)
    is still answered once."""
    settings = configured(demo_kb, api, passive=0.2)
    worker_ready(settings, start_worker)
    now = int(time.time())
    first, second = _no_msg_id("物业费在哪交", now), _no_msg_id("着火了，楼道里全是烟", now)
    passive: list[str] = []  # an answer ready within the passive window comes back in the response
    with LiveServer(settings) as live, live.client() as client:
        for xml in (first, second, second):  # the last: WeChat retrying the second
            response = push(client, xml)
            assert response.status_code == 200
            if response.text != "success":
                passive.append(xmltodict.parse(response.text)["xml"]["Content"])
    assert rows(settings, InboundMessage) == 2

    def answers() -> list[str]:
        return passive + [m["text"]["content"] for m in api.sent]

    wait_for(lambda: len(answers()) >= 2, timeout=40, message="both answers")
    time.sleep(1)
    assert len(answers()) == 2 and any("生活缴费" in a for a in answers())
    assert any("值班" in a or "119" in a for a in answers()), answers()  # the fire is an emergency


def test_wechat_fields_out_of_shape_are_never_a_server_error(demo: Settings, api: FakeWechatApi) -> None:
    settings = configured(demo, api, passive=0.1)
    now = int(time.time())
    head = "<xml><ToUserName>gh_anju</ToUserName><FromUserName>oOdd</FromUserName>"
    subscribe = head + "{time}<MsgType>event</MsgType><Event>subscribe</Event></xml>"
    stamp = f"<CreateTime>{now}</CreateTime>"
    text = head + stamp + "<MsgType>text</MsgType><Content>{content}</Content>{msg_id}</xml>"
    location = (head + stamp + "<MsgType>location</MsgType><Location_X>北纬</Location_X>"
                "<Location_Y>1e999999</Location_Y><Scale>x</Scale><Label>3栋</Label>"
                "<MsgId>5001</MsgId></xml>")  # fmt: skip
    with LiveServer(settings) as live, live.client() as client:
        for created in ("", "<CreateTime></CreateTime>", "<CreateTime>昨天</CreateTime>",
                        f"<CreateTime>{'9' * 5000}</CreateTime>", "<CreateTime>-5</CreateTime>"):  # fmt: skip
            welcome = push(client, subscribe.format(time=created))
            assert welcome.status_code == 200 and "欢迎关注" in welcome.text  # still welcomed
        for n, msg_id in enumerate(("<MsgId>" + "9" * 5000 + "</MsgId>", "<MsgId>abc</MsgId>",
                                    "<MsgId>-1</MsgId>", "<MsgId>" + "9" * 25 + "</MsgId>")):  # fmt: skip
            answered = push(client, text.format(content=f"第{n}条：楼道灯坏了", msg_id=msg_id))
            assert answered.status_code == 200, answered.text
        assert push(client, location).status_code == 200  # odd coordinates: the place's name still counts
        openid = push(client, text_xml("你好", openid="o" * 5000))
        assert openid.status_code == 400  # not WeChat's at all
    assert rows(settings, InboundMessage) == 5  # each odd-id text once (keyed by its content), the place
