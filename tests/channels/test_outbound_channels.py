"""The channels' own outbound requests under the outbound check: an app webhook or a WeChat API
base that points inside (a configuration mistake, or a name that now resolves inside) gets
nothing; the delivery fails once, for good, with the reason in words an agent reads."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from channels import wechat
from core.outbound import REFUSED
from core.settings import Settings, WechatAccount
from tests.channels.test_app_channel import SECRET, FakeAppBackend, message, post
from tests.channels.test_wechat import APP_ID, FakeWechatApi
from tests.conftest import LiveServer, wait_for


def test_an_app_webhook_inside_gets_nothing_and_agents_read_why(demo_kb: Settings, start_worker: Any) -> None:
    backend = FakeAppBackend()  # listening on 127.0.0.1, and not allowed
    try:
        webhook = {"app_channel_secret": SECRET, "app_webhook_url": backend.url}
        settings = demo_kb.model_copy(
            update={**webhook, "delivery_backoff_seconds": [1], "delivery_max_attempts": 3}
        )
        start_worker(settings)
        with LiveServer(settings) as live, live.client() as client, live.login("agent") as agent:
            assert post(client, message("物业费在哪交")).status_code == 202

            def failed() -> list[dict[str, Any]]:
                return agent.get("/api/communities/1/intake/problems").json()["failed_deliveries"]  # type: ignore[no-any-return]

            [shown] = wait_for(failed, timeout=60, message="the delivery to fail")
    finally:
        backend.close()
    assert shown["error"] == f"应用回调地址：{REFUSED}"
    assert shown["attempts"] == 1  # refused is final: retrying cannot help
    assert backend.calls == 0


def test_a_wechat_api_base_inside_gets_nothing(sqlite_settings: Settings) -> None:
    api = FakeWechatApi()  # listening on 127.0.0.1, and not allowed
    try:
        account = WechatAccount(app_id=APP_ID, app_secret="secret", token="t", community="cuihu")
        settings = sqlite_settings.model_copy(
            update={"wechat_api_base": api.base, "wechat_accounts": [account]}
        )
        connection = redis.Redis.from_url(settings.effective_redis_url)
        with pytest.raises(wechat.SendFailed) as caught:
            wechat.send_text(settings, connection, account, "openid-1", "您好")
    finally:
        api.close()
    assert str(caught.value) == f"微信接口地址：{REFUSED}" and caught.value.permanent
    assert api.tokens_issued == 0 and api.sent == []
