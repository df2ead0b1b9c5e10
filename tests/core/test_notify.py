"""Robot webhooks and the SMS seam, through real HTTP against the fake 企业微信/钉钉/飞书 server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from core.notify import (
    LogSms,
    NotifyError,
    RobotKind,
    RobotTarget,
    notify,
    robot_payload,
    send_robot,
)
from core.outbound import OutboundPolicy
from tests.robots import FakeRobot
from tests.services import free_port

DING_SECRET = "SEC0123456789abcdef+/ding"  # '+' and '/' in base64 output must survive URL encoding
FEISHU_SECRET = "feishu-签名-secret"
TITLE = "【紧急】翠湖花园 3 栋电梯困人"
MARKDOWN = "**位置**：3 栋 2 单元电梯\n> 已超过首次响应时限 5 分钟，请立即处理"
DUTY_PHONE = "13800001234"


@pytest.fixture
def robots() -> Iterator[FakeRobot]:
    with FakeRobot(dingtalk_secret=DING_SECRET, feishu_secret=FEISHU_SECRET) as server:
        yield server


def target(robots: FakeRobot, kind: RobotKind, *, secret: str | None = None, token: str = "t") -> RobotTarget:
    return RobotTarget(kind=kind, url=robots.url(kind, token), secret=secret)


def allow(robots: FakeRobot) -> OutboundPolicy:
    """The fake robot (on 127.0.0.1) is the one internal address these sends may reach."""
    return OutboundPolicy.parse([f"127.0.0.1:{robots.port}"])


# --- each platform delivers in its own format ----------------------------------------------


def test_wecom_delivers_markdown_with_the_title(robots: FakeRobot) -> None:
    send_robot(
        target(robots, RobotKind.wecom, token="wk-1"), policy=allow(robots), title=TITLE, markdown=MARKDOWN
    )

    [message] = robots.wait_for(1)
    assert (message.kind, message.token) == ("wecom", "wk-1")
    assert message.body["msgtype"] == "markdown"
    content = message.body["markdown"]["content"]
    assert TITLE in content and MARKDOWN in content


def test_wecom_mentions_by_mobile_as_a_text_message(robots: FakeRobot) -> None:
    send_robot(
        target(robots, RobotKind.wecom),
        policy=allow(robots),
        title=TITLE,
        markdown=MARKDOWN,
        at_mobiles=[DUTY_PHONE],
    )

    [message] = robots.wait_for(1)
    assert message.body["msgtype"] == "text"
    assert message.body["text"]["mentioned_mobile_list"] == [DUTY_PHONE]
    content = message.body["text"]["content"]
    assert TITLE in content and "已超过首次响应时限 5 分钟" in content
    assert "**" not in content and "> " not in content  # markup would show literally in a text message


def test_wecom_markdown_is_cut_to_the_platform_limit_on_a_character_boundary(robots: FakeRobot) -> None:
    send_robot(target(robots, RobotKind.wecom), policy=allow(robots), title=TITLE, markdown="电梯困人" * 2000)

    content = robots.wait_for(1)[0].body["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert content.endswith("…")


def test_dingtalk_signed_message_is_accepted_with_title_text_and_mentions(robots: FakeRobot) -> None:
    ding = target(robots, RobotKind.dingtalk, secret=DING_SECRET, token="dt-1")
    send_robot(ding, policy=allow(robots), title=TITLE, markdown=MARKDOWN, at_mobiles=[DUTY_PHONE])

    [message] = robots.wait_for(1)
    assert message.token == "dt-1"
    assert message.body["msgtype"] == "markdown"
    assert message.body["markdown"]["title"] == TITLE
    text = message.body["markdown"]["text"]
    assert TITLE in text and MARKDOWN in text
    assert f"@{DUTY_PHONE}" in text  # 钉钉 only highlights an @ that also appears in the text
    assert message.body["at"] == {"atMobiles": [DUTY_PHONE], "isAtAll": False}
    assert abs(int(message.query["timestamp"]) - time.time() * 1000) < 60_000  # milliseconds


def test_dingtalk_wrong_secret_is_refused_with_the_platform_errcode(robots: FakeRobot) -> None:
    ding = target(robots, RobotKind.dingtalk, secret="SECwrong")
    with pytest.raises(NotifyError) as caught:
        send_robot(ding, policy=allow(robots), title=TITLE, markdown=MARKDOWN)

    assert caught.value.errcode == 310000
    assert "310000" in caught.value.message and "钉钉机器人" in caught.value.message
    assert "加签密钥" in caught.value.message  # what the code means, in Chinese
    assert "sign not match" not in caught.value.message  # never the platform's own words
    assert robots.messages == []


def test_dingtalk_missing_secret_is_refused(robots: FakeRobot) -> None:
    with pytest.raises(NotifyError, match="310000"):
        send_robot(target(robots, RobotKind.dingtalk), policy=allow(robots), title=TITLE, markdown=MARKDOWN)
    assert robots.messages == []


def test_feishu_signed_card_is_accepted(robots: FakeRobot) -> None:
    lark = target(robots, RobotKind.feishu, secret=FEISHU_SECRET, token="fs-hook-1")
    send_robot(lark, policy=allow(robots), title=TITLE, markdown=MARKDOWN)

    [message] = robots.wait_for(1)
    assert message.token == "fs-hook-1"
    body = message.body
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"]["title"] == {"tag": "plain_text", "content": TITLE}
    assert body["card"]["elements"] == [{"tag": "markdown", "content": MARKDOWN}]
    assert isinstance(body["timestamp"], str)
    assert abs(int(body["timestamp"]) - time.time()) < 60  # seconds, in the body, not the query
    assert message.query == {}


def test_feishu_wrong_secret_is_refused_with_19021(robots: FakeRobot) -> None:
    lark = target(robots, RobotKind.feishu, secret="not-the-secret")
    with pytest.raises(NotifyError) as caught:
        send_robot(lark, policy=allow(robots), title=TITLE, markdown=MARKDOWN)

    assert caught.value.errcode == 19021
    assert "19021" in caught.value.message and "飞书机器人" in caught.value.message
    assert robots.messages == []


def test_an_hour_old_signature_is_refused() -> None:
    params, body = robot_payload(
        kind=RobotKind.feishu, title=TITLE, markdown=MARKDOWN, secret="s", now=time.time() - 3700
    )
    assert params == {}
    with FakeRobot(feishu_secret="s") as server:
        answer = httpx.post(server.url("feishu"), json=body, timeout=5).json()
    assert answer["code"] == 19021


def test_robots_without_signing_accept_unsigned_messages() -> None:
    with FakeRobot() as server:
        for kind in RobotKind:
            send_robot(target(server, kind), policy=allow(server), title=TITLE, markdown=MARKDOWN)
        assert [m.kind for m in server.wait_for(3)] == ["wecom", "dingtalk", "feishu"]


# --- failures a person must hear about -------------------------------------------------------


def test_http_500_is_a_notify_error(robots: FakeRobot) -> None:
    robots.fail_next(1, status=500)
    with pytest.raises(NotifyError) as caught:
        send_robot(target(robots, RobotKind.wecom), policy=allow(robots), title=TITLE, markdown=MARKDOWN)

    assert caught.value.http_status == 500
    assert "HTTP 500" in caught.value.message
    assert robots.messages == []


def test_platform_errcode_on_http_200_is_a_notify_error(robots: FakeRobot) -> None:
    robots.fail_next(1, errcode=45009)  # 企业微信: too many messages this minute
    with pytest.raises(NotifyError, match="45009"):
        send_robot(target(robots, RobotKind.wecom), policy=allow(robots), title=TITLE, markdown=MARKDOWN)


def test_unreachable_robot_is_a_notify_error() -> None:
    port = free_port()
    dead = RobotTarget(kind=RobotKind.wecom, url=f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key=k")
    policy = OutboundPolicy.parse([f"127.0.0.1:{port}"])  # allowed, so the connection is tried
    with pytest.raises(NotifyError, match="无法连接") as caught:
        send_robot(dead, policy=policy, title=TITLE, markdown=MARKDOWN, timeout=2)
    assert "Error" not in caught.value.message  # no exception names


def test_slow_robot_times_out(robots: FakeRobot) -> None:
    robots.fail_next(1, status=200, delay=5)
    started = time.monotonic()
    with pytest.raises(NotifyError, match="没有响应"):
        send_robot(
            target(robots, RobotKind.dingtalk, secret=DING_SECRET),
            policy=allow(robots),
            title=TITLE,
            markdown=MARKDOWN,
            timeout=0.3,
        )
    assert time.monotonic() - started < 3


def test_errors_never_show_the_webhook_token_or_secret(robots: FakeRobot) -> None:
    token = "abcdef-very-secret-token-9f3a"
    ding = RobotTarget(kind=RobotKind.dingtalk, url=robots.url("dingtalk", token), secret="SECwrong")
    with pytest.raises(NotifyError) as caught:
        send_robot(ding, policy=allow(robots), title=TITLE, markdown=MARKDOWN)

    shown = f"{caught.value.message} {caught.value.details} {ding!r}"
    assert token not in shown and "SECwrong" not in shown
    assert "9f3a" in caught.value.message  # enough to tell robots apart


def test_error_names_the_group_when_the_target_has_a_name(robots: FakeRobot) -> None:
    robots.fail_next(1, status=502)
    named = RobotTarget(kind=RobotKind.feishu, url=robots.url("feishu"), name="翠湖花园值班群")
    with pytest.raises(NotifyError, match="飞书机器人「翠湖花园值班群」"):
        send_robot(named, policy=allow(robots), title=TITLE, markdown=MARKDOWN)


# --- notify: every target is tried ------------------------------------------------------------


def test_notify_tries_every_target_and_returns_the_failures(
    robots: FakeRobot, caplog: pytest.LogCaptureFixture
) -> None:
    robots.fail_next(1, status=500)  # the first robot's request fails
    targets = [
        RobotTarget(kind=RobotKind.wecom, url=robots.url("wecom", "first"), name="一号群"),
        RobotTarget(kind=RobotKind.dingtalk, url=robots.url("dingtalk", "second"), secret=DING_SECRET),
        RobotTarget(kind=RobotKind.feishu, url=robots.url("feishu", "third"), secret="wrong"),
    ]
    with caplog.at_level(logging.INFO, logger="core.notify"):
        errors = notify(
            targets=targets,
            policy=allow(robots),
            sms=LogSms(),
            phones=[DUTY_PHONE],
            title=TITLE,
            markdown=MARKDOWN,
            timeout=5,
        )

    assert robots.requests == 3
    assert [(m.kind, m.token) for m in robots.messages] == [("dingtalk", "second")]
    assert len(errors) == 2
    assert "一号群" in errors[0] and "HTTP 500" in errors[0]
    assert "飞书机器人" in errors[1] and "19021" in errors[1]
    assert "138****1234" in caplog.text  # the SMS went out through the log-only gateway


def test_notify_reports_a_failing_sms_gateway_without_the_full_number(robots: FakeRobot) -> None:
    class BrokenSms:
        def send(self, *, phone: str, text: str) -> None:
            raise ConnectionError("gateway down")

    errors = notify(
        targets=[target(robots, RobotKind.wecom)],
        policy=allow(robots),
        sms=BrokenSms(),
        phones=[DUTY_PHONE, "13900005678"],
        title=TITLE,
        markdown=MARKDOWN,
    )

    assert len(robots.wait_for(1)) == 1
    assert errors == [
        "短信 138****1234 发送失败：ConnectionError",
        "短信 139****5678 发送失败：ConnectionError",
    ]


def test_notify_with_nothing_failing_returns_no_errors(robots: FakeRobot) -> None:
    errors = notify(
        targets=[target(robots, RobotKind.feishu, secret=FEISHU_SECRET)],
        policy=allow(robots),
        sms=None,
        phones=[],
        title=TITLE,
        markdown=MARKDOWN,
    )
    assert errors == []
    assert robots.wait_for(1)[0].body["card"]["header"]["title"]["content"] == TITLE


# --- the SMS seam --------------------------------------------------------------------------------


def test_log_sms_never_logs_the_full_number(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="core.notify"):
        LogSms().send(phone=DUTY_PHONE, text="业主 13912345678 报告电梯困人，请回电")

    assert DUTY_PHONE not in caplog.text and "13912345678" not in caplog.text
    assert "138****1234" in caplog.text
    assert "电梯困人" in caplog.text
