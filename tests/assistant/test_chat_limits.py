"""The chat's rate limits tried as an attacker (and a frightened resident) would: a window used up
by somebody else, then "煤气泄漏了！"; forged client addresses; what a limited resident is told."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import update

from core.db import get_database
from core.settings import Settings
from escalation.models import Case, CaseCategory
from org.models import Community
from tests.conftest import LiveServer

DUTY_PHONE = "0571-8800-1234"  # 翠湖花园's in the demo data


def sid(name: str) -> str:
    return f"{name}-0123456789abcdef"


def say(client: httpx.Client, text: str, session: str, **headers: str) -> httpx.Response:
    return client.post(
        "/api/chat",
        json={"community": "cuihu", "session_id": sid(session), "text": text},
        headers=headers,
    )


def _early_in_a_minute() -> None:
    """The windows are calendar minutes: a test that must stay within one starts early in it."""
    if time.time() % 60 > 40:
        time.sleep(60.5 - time.time() % 60)


@pytest.fixture
def limited(demo_kb: Settings) -> Iterator[tuple[LiveServer, httpx.Client]]:
    settings = demo_kb.model_copy(update={"chat_per_address_per_minute": 3, "chat_per_session_per_minute": 2})
    with LiveServer(settings) as server, server.client() as client:
        _early_in_a_minute()
        yield server, client


def _use_up_the_address(client: httpx.Client) -> httpx.Response:
    for i in range(3):
        assert say(client, "你好", f"flood-{i}").status_code == 200
    return say(client, "你好", "flood-3")


@pytest.mark.parametrize("text", ["煤气泄漏了！", "电梯里关了人", "着火了"])
def test_an_emergency_is_answered_when_the_address_window_is_used_up(
    limited: tuple[LiveServer, httpx.Client], text: str
) -> None:
    server, client = limited
    refused = _use_up_the_address(client)
    assert refused.status_code == 429

    answer = say(client, text, "frightened")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["action"] == "emergency" and body["duty_phone"] == DUTY_PHONE
    with get_database(server.settings).session() as session:
        case = session.get(Case, body["case_id"])
        assert case is not None and case.category is CaseCategory.emergency

    # Where it is and whom to call back: the same session's next message is not refused either.
    more = say(client, "在5栋2单元702 电话13800001111", "frightened")
    assert more.status_code == 200, more.text
    assert more.json()["case_id"] == body["case_id"]
    assert say(client, "你好", "someone-else").status_code == 429  # the flood is still limited


def test_an_emergency_is_answered_when_the_session_window_is_used_up(
    limited: tuple[LiveServer, httpx.Client],
) -> None:
    _, client = limited
    assert [say(client, "电梯停了", "mine").status_code for _ in range(2)] == [200, 200]
    assert say(client, "怎么还没人来", "mine").status_code == 429
    trapped = say(client, "电梯里关了人 快来", "mine")
    assert trapped.status_code == 200, trapped.text
    assert trapped.json()["action"] == "emergency"


def test_a_limited_resident_is_told_the_duty_phone(limited: tuple[LiveServer, httpx.Client]) -> None:
    _, client = limited
    refused = _use_up_the_address(client)
    error = refused.json()["error"]
    assert refused.status_code == 429 and error["code"] == "too_many_requests"
    assert DUTY_PHONE in error["message"] and error["details"] == {"duty_phone": DUTY_PHONE}


def test_without_a_duty_phone_the_company_hotline_is_given(limited: tuple[LiveServer, httpx.Client]) -> None:
    server, client = limited
    with get_database(server.settings).session() as session:
        session.execute(update(Community).where(Community.code == "cuihu").values(duty_phone=None))
    refused = _use_up_the_address(client)
    assert refused.status_code == 429
    assert "400-800-1234" in refused.json()["error"]["message"]
    assert "119" in refused.json()["error"]["message"]


def test_forged_client_addresses_do_not_reset_the_chat_window(
    limited: tuple[LiveServer, httpx.Client],
) -> None:
    _, client = limited
    codes = [
        say(client, "你好", f"rotating-{i}", **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(1, 6)
    ]
    assert codes == [200, 200, 200, 429, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_window(demo_kb: Settings) -> None:
    settings = demo_kb.model_copy(
        update={"chat_per_address_per_minute": 2, "trusted_proxies": ["127.0.0.0/8"]}
    )
    with LiveServer(settings) as server, server.client() as client:
        one = [
            say(client, "你好", f"a-{i}", **{"X-Forwarded-For": "203.0.113.1"}).status_code for i in range(3)
        ]
        other = say(client, "你好", "b-0", **{"X-Forwarded-For": "203.0.113.2"})
    assert one == [200, 200, 429]
    assert other.status_code == 200
