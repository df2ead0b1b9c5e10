"""The acknowledgement link of an emergency page, tried as an attacker (or a stale phone) would:
an expired link is refused with a Chinese page that sends the reader to the console and
acknowledges nothing; tokens of the wrong shape (Chinese characters, full-width digits, 5,000
digits, the old format) are a 404 page, never a server error; the page keeps its token out of
Referer headers, caches and the log."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from core.db import utcnow
from core.settings import Settings
from escalation.paging import ack_token
from tests.conftest import LiveServer
from tests.escalation.test_console_flow import say
from tests.escalation.test_sla_and_paging import load

BAD_TOKENS = [
    "确认",
    "1.确认.0123456789abcdef0123456789abcdef",
    "１.１７６７２２５６００.0123456789abcdef0123456789abcdef",  # full-width digits
    "1²",
    "9" * 5000,
    "1." + "9" * 5000 + ".0123456789abcdef0123456789abcdef",
    "1.0123456789abcdef0123456789abcdef",  # the format before links expired
    "%00%ff",
    "1.1767225600.0123456789ABCDEF0123456789ABCDEF",
]


def test_an_expired_or_malformed_link_acknowledges_nothing(
    demo_kb: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident, live.client() as stranger:
        case_id = say(resident, uuid.uuid4().hex, "电梯突然停了，我被关在里面出不来")["case_id"]
        assert case_id

        stale = ack_token(
            demo_kb, case_id, issued_at=utcnow() - timedelta(hours=demo_kb.ack_link_hours, minutes=1)
        )
        for method in ("GET", "POST"):
            page = stranger.request(method, f"/ack/{stale}")
            assert page.status_code == 410, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert "确认链接已过期" in page.text and "/login?next=/console" in page.text
            assert "电梯" not in page.text  # an old link shows nothing of the case either
            assert page.headers["referrer-policy"] == "no-referrer"
        assert load(demo_kb, case_id).acknowledged_at is None

        for bad in BAD_TOKENS:
            for method in ("GET", "POST"):
                refused = stranger.request(method, f"/ack/{bad}")
                assert refused.status_code == 404, (bad[:40], refused.status_code, refused.text[:200])
                assert refused.headers["content-type"].startswith("text/html")
                assert "确认链接无效" in refused.text
        assert load(demo_kb, case_id).acknowledged_at is None

        fresh = ack_token(demo_kb, case_id)  # a link sent now works
        page = stranger.get(f"/ack/{fresh}")
        assert page.status_code == 200 and "我来处理" in page.text
        assert (
            page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
        )
        assert "已确认" in stranger.post(f"/ack/{fresh}").text
        assert load(demo_kb, case_id).acknowledged_at is not None
    logged = capfd.readouterr().err
    assert "/ack/[redacted]" in logged  # the requests were logged, their tokens not
    assert fresh not in logged and fresh.rsplit(".", 1)[1] not in logged and stale not in logged
