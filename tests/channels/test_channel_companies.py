"""Companies sharing one installation, each with its own resident app and call centre, tried as
one company's backend would try to reach the other's residents: with its own valid signature it
posts into the other company's community (answered as a community that does not exist, nothing
stored), signs for the other's channel (403); and each company's replies reach its own app's
webhook only, signed with its own secret, never another company's, even when its own is missing.
Real API, real rq worker, two fake app backends on 127.0.0.1."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from channels.models import DeliveryStatus, InboundMessage, OutboundDelivery
from channels.signing import NONCE, SIGNATURE, TIMESTAMP, sign, signed_headers
from conversations.models import Channel
from core.db import get_database
from core.settings import AppChannel, PhoneChannel, Settings
from tests import services
from tests.channels.test_app_channel import FakeAppBackend, rows
from tests.channels.test_phone import call, said
from tests.conftest import LiveServer, wait_for
from tests.tenants import OTHER_COMPANY, seed_other_company

SECRET_A = "jia-app-secret-0123456789abcdef"
SECRET_B = "yi-app-secret-0123456789abcdef0"
PHONE_B = "yi-phone-secret-0123456789abcdef"


def _two_companies(settings: Settings, *, webhook_a: str | None, webhook_b: str | None) -> Settings:
    with get_database(settings).session() as session:
        seed_other_company(session)
        session.commit()
    channels = [
        AppChannel(key="jia", company="anju-demo", secret=SECRET_A, webhook_url=webhook_a),
        AppChannel(key="yi", company=OTHER_COMPANY, secret=SECRET_B, webhook_url=webhook_b),
    ]
    changed = settings.model_copy(
        update={
            "app_channels": channels,
            "phone_channels": [PhoneChannel(key="yi", company=OTHER_COMPANY, secret=PHONE_B)],
            "delivery_backoff_seconds": [1, 1, 1],
            "delivery_max_attempts": 3,
        }
    )
    return services.allowing(changed, *(url for url in (webhook_a, webhook_b) if url))


def _post(
    client: httpx.Client, key: str, secret: str, community: str, text: str = "物业费在哪交"
) -> httpx.Response:
    body = json.dumps(
        {
            "message_id": uuid.uuid4().hex,
            "community": community,
            "user_id": f"u-{key}-{community}",
            "text": text,
        },
        ensure_ascii=False,
    ).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
    return client.post(f"/channels/app/{key}/messages", content=body, headers=headers)


def _replies(backend: FakeAppBackend, secret: str) -> list[dict[str, Any]]:
    out = []
    for headers, body in backend.received:
        assert headers[SIGNATURE] == sign(secret, headers[TIMESTAMP], headers[NONCE], body)
        out.append(json.loads(body))
    return out


def test_a_companys_app_posts_into_its_own_communities_only(demo: Settings) -> None:
    settings = _two_companies(demo, webhook_a=None, webhook_b=None)
    with LiveServer(settings) as live, live.client() as client:
        # 乙's backend, correctly signed with its own secret, names 甲's community: as if none existed.
        refused = _post(client, "yi", SECRET_B, "cuihu")
        assert refused.status_code == 404 and refused.json()["error"]["message"] == "小区 cuihu 不存在"
        missing = _post(client, "yi", SECRET_B, "no-such-place")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == refused.json()["error"][
            "message"
        ].replace("cuihu", "no-such-place")
        # 乙's secret on 甲's channel, an unknown channel, the legacy URL nobody enabled.
        assert _post(client, "jia", SECRET_B, "cuihu").status_code == 403
        assert _post(client, "bing", SECRET_B, "yifang").status_code == 404
        body = b'{"message_id":"x","community":"cuihu","user_id":"u","text":"t"}'
        legacy = client.post("/channels/app/messages", content=body, headers=signed_headers(SECRET_B, body))
        assert legacy.status_code == 404
        assert rows(settings, InboundMessage) == 0
        # Each into its own.
        assert _post(client, "yi", SECRET_B, "yifang").status_code == 202
        assert _post(client, "jia", SECRET_A, "cuihu").status_code == 202
        assert _post(client, "jia", SECRET_A, "yifang").status_code == 404
    assert rows(settings, InboundMessage) == 2
    assert rows(settings, InboundMessage, InboundMessage.sender == "u-yi-yifang") == 1


def test_each_companys_replies_reach_its_own_app_only(demo_kb: Settings, start_worker: Any) -> None:
    backend_a, backend_b = FakeAppBackend(), FakeAppBackend()
    try:
        settings = _two_companies(demo_kb, webhook_a=backend_a.url, webhook_b=backend_b.url)
        start_worker(settings)
        with LiveServer(settings) as live, live.client() as client:
            assert _post(client, "jia", SECRET_A, "cuihu").status_code == 202
            assert _post(client, "yi", SECRET_B, "yifang", "你好，我想问问停车的事").status_code == 202
            wait_for(lambda: backend_a.received and backend_b.received, timeout=60, message="both replies")
        [a] = _replies(backend_a, SECRET_A)  # each signed with its own company's secret
        [b] = _replies(backend_b, SECRET_B)
        assert (a["community"], a["user_id"]) == ("cuihu", "u-jia-cuihu") and "生活缴费" in a["reply"]
        assert (b["community"], b["user_id"]) == ("yifang", "u-yi-yifang")
    finally:
        backend_a.close()
        backend_b.close()


def test_a_company_without_a_webhook_never_borrows_anothers(demo_kb: Settings, start_worker: Any) -> None:
    """乙 has an app channel in but no webhook out: its reply fails for its agents to see (at once:
    retrying cannot help), and 甲's webhook receives nothing of 乙's residents."""
    backend_a = FakeAppBackend()
    try:
        settings = _two_companies(demo_kb, webhook_a=backend_a.url, webhook_b=None)
        start_worker(settings)
        with LiveServer(settings) as live, live.client() as client:
            assert _post(client, "yi", SECRET_B, "yifang", "你好").status_code == 202

            def failed() -> bool:
                return rows(settings, OutboundDelivery, OutboundDelivery.status == DeliveryStatus.failed) == 1

            wait_for(failed, timeout=60, message="乙's reply marked failed")
        with get_database(settings).session(readonly=True) as session:
            delivery = session.query(OutboundDelivery).one()
            assert delivery.attempts == 1 and "未配置本公司应用的回调地址" in (delivery.last_error or "")
        assert backend_a.calls == 0
    finally:
        backend_a.close()


def test_a_companys_call_centre_posts_into_its_own_communities_only(demo: Settings) -> None:
    settings = _two_companies(demo, webhook_a=None, webhook_b=None)

    def post(community: str, secret: str = PHONE_B, key: str = "yi") -> httpx.Response:
        body = json.dumps(
            call(community=community, utterances=[said("customer", 0, "我家水管漏水了")]), ensure_ascii=False
        ).encode()
        headers = {"Content-Type": "application/json", **signed_headers(secret, body)}
        return live_client.post(f"/channels/phone/{key}/transcripts", content=body, headers=headers)

    with LiveServer(settings) as live, live.client() as live_client:
        refused = post("cuihu")
        assert refused.status_code == 404 and refused.json()["error"]["message"] == "小区 cuihu 不存在"
        assert post("yifang", secret=SECRET_A).status_code == 403
        assert post("yifang", key="jia").status_code == 404  # 甲 has no call-centre channel here
        assert rows(settings, InboundMessage) == 0
        assert post("yifang").status_code == 202
    assert rows(settings, InboundMessage, InboundMessage.channel == Channel.phone) == 1


def test_channels_that_cannot_be_told_apart_are_refused_at_start() -> None:
    """The signature does not cover the URL: a secret two channels share opens both. Two channels
    of one company, or an unrestricted channel beside company-bound ones, would put one backend's
    users into another's conversations and replies."""
    import pytest
    from pydantic import ValidationError

    jia = AppChannel(key="jia", company="anju-demo", secret=SECRET_A)
    yi_with_a = AppChannel(key="yi", company=OTHER_COMPANY, secret=SECRET_A)
    phone_with_a = PhoneChannel(key="jia", company="anju-demo", secret=SECRET_A)
    jia_again = AppChannel(key="jia2", company="anju-demo", secret=SECRET_B)
    everyone = AppChannel(key="all", secret=SECRET_B)
    same_key = AppChannel(key="jia", company=OTHER_COMPANY, secret=SECRET_B)
    bad = {
        "one secret for two companies": {"app_channels": [jia, yi_with_a]},
        "an app secret reused for a call centre": {"app_channels": [jia], "phone_channels": [phone_with_a]},
        "two channels of one company": {"app_channels": [jia, jia_again]},
        "the legacy secret beside per-company channels": {
            "app_channels": [jia],
            "app_channel_secret": SECRET_B,
        },
        "a second unrestricted channel": {"app_channel_secret": SECRET_A, "app_channels": [everyone]},
        "one key twice": {"app_channels": [jia, same_key]},
    }
    for case, fields in bad.items():
        with pytest.raises(ValidationError):
            Settings(**fields)  # type: ignore[arg-type]
            raise AssertionError(case)
    good = Settings(  # each company its own channel and secret; one company's app and call centre
        app_channels=[jia, AppChannel(key="yi", company=OTHER_COMPANY, secret=SECRET_B)],
        phone_channels=[PhoneChannel(key="yi", company=OTHER_COMPANY, secret=PHONE_B)],
    )
    assert [c.key for c in good.app_channel_list()] == ["jia", "yi"]
    assert [c.key for c in Settings(app_channel_secret="short-legacy").app_channel_list()] == ["default"]
