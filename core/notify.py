"""Group-robot webhooks (企业微信, 钉钉, 飞书) and a pluggable SMS seam, for staff alerts.

The escalation console pages people through these (SLA breaches, emergencies) and the
opinion monitor will post its alerts through them. Each platform's custom robot takes one
JSON POST; what differs is the body, the signature and how it answers:

- 企业微信群机器人 ``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY``: no
  signing (the key is the credential). ``markdown`` (content at most 4096 bytes) cannot @
  anyone by mobile, only ``text`` (at most 2048 bytes) has ``mentioned_mobile_list``.
  Answers ``{"errcode": 0, "errmsg": "ok"}``.
- 钉钉自定义机器人 ``POST https://oapi.dingtalk.com/robot/send?access_token=TOKEN``; with 加签
  the query also carries ``timestamp`` (ms) and ``sign`` = urlEncode(base64(HmacSHA256(key=
  secret, msg=f"{timestamp}\\n{secret}"))); the timestamp must be within an hour of the
  server's clock. A bad signature is answered (HTTP 200) with ``errcode`` 310000.
- 飞书自定义机器人 ``POST https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN``; with 签名校验
  the BODY carries ``timestamp`` (seconds, a string) and ``sign`` = base64(HmacSHA256(key=
  f"{timestamp}\\n{secret}", msg=b"")) — key and message the other way round from 钉钉. It
  answers ``{"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg":
  "success"}`` (older deployments only ``StatusCode``); a bad signature is ``code`` 19021.

The webhook URL holds the robot's credential: it is never logged nor put in an error message.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from core import outbound
from core.errors import AnjuError
from core.masking import mask_mobile, mask_text
from core.outbound import OutboundPolicy

log = logging.getLogger(__name__)

WECOM_MARKDOWN_MAX_BYTES = 4096  # 企业微信 markdown.content limit (UTF-8 bytes)
WECOM_TEXT_MAX_BYTES = 2048  # 企业微信 text.content limit (UTF-8 bytes)
FEISHU_CARD_TEMPLATE = "red"  # header colour: every caller so far is an alert that wants attention


class RobotKind(enum.StrEnum):
    wecom = "wecom"  # 企业微信群机器人
    dingtalk = "dingtalk"  # 钉钉自定义机器人
    feishu = "feishu"  # 飞书自定义机器人


# What a platform's error code means, for the admin reading the failure (the platform's own errmsg is
# not shown: whatever answers at a webhook URL must not be able to write into our pages).
ERRCODE_MEANINGS: dict[tuple[RobotKind, int], str] = {
    (RobotKind.wecom, 93000): "Webhook 地址无效或机器人已被移出群",
    (RobotKind.wecom, 45009): "发送太频繁，每个机器人每分钟最多 20 条",
    (RobotKind.wecom, 40008): "消息格式不被接受",
    (RobotKind.dingtalk, 310000): "签名或时间戳校验失败，请检查加签密钥和服务器时间",
    (RobotKind.dingtalk, 300001): "access_token 不存在，请检查 Webhook 地址",
    (RobotKind.dingtalk, 130101): "发送太频繁，每个机器人每分钟最多 20 条",
    (RobotKind.feishu, 19021): "签名校验失败，请检查签名密钥和服务器时间",
    (RobotKind.feishu, 19024): "消息不含机器人设置的自定义关键词",
    (RobotKind.feishu, 19001): "Webhook 地址无效",
    (RobotKind.feishu, 11232): "发送太频繁",
}

ROBOT_LABELS = {
    RobotKind.wecom: "企业微信群机器人",
    RobotKind.dingtalk: "钉钉机器人",
    RobotKind.feishu: "飞书机器人",
}


@dataclass(frozen=True)
class RobotTarget:
    """One group robot. ``secret``: 钉钉 "加签" / 飞书 "签名校验" secret (企业微信 has none).
    ``name`` is what people call the group ("翠湖花园值班群"), shown in errors instead of the URL."""

    kind: RobotKind
    url: str
    secret: str | None = None
    name: str = ""

    def __repr__(self) -> str:  # the URL and the secret are credentials: keep them out of tracebacks
        return f"RobotTarget(kind={self.kind.value!r}, robot={robot_name(self)!r})"


class NotifyError(AnjuError):
    status_code = 502
    code = "notify_failed"
    default_message = "通知发送失败"

    def __init__(
        self,
        message: str,
        *,
        kind: RobotKind | None = None,
        http_status: int | None = None,
        errcode: int | str | None = None,
    ) -> None:
        self.kind, self.http_status, self.errcode = kind, http_status, errcode
        details = {"robot": kind.value if kind else None, "http_status": http_status, "errcode": errcode}
        super().__init__(message, details={k: v for k, v in details.items() if v is not None})


def robot_name(target: RobotTarget) -> str:
    """企业微信群机器人「翠湖花园值班群」, or the host and the token's last 4 characters."""
    label = ROBOT_LABELS[target.kind]
    if target.name:
        return f"{label}「{target.name}」"
    parts = urlsplit(target.url)
    query = parse_qs(parts.query)
    token = (query.get("key") or query.get("access_token") or [parts.path.rstrip("/").rsplit("/", 1)[-1]])[0]
    return f"{label}（{parts.hostname or '?'}，…{token[-4:]}）"


def dingtalk_sign(*, secret: str, timestamp_ms: str) -> str:
    """钉钉加签 before URL encoding (the HTTP client percent-encodes the query value once)."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(*, secret: str, timestamp_s: str) -> str:
    """飞书签名校验: the HMAC key is "timestamp\\nsecret" and the message is empty."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def robot_payload(
    *,
    kind: RobotKind,
    title: str,
    markdown: str,
    at_mobiles: Sequence[str] = (),
    secret: str | None = None,
    now: float | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """(extra query parameters, JSON body) of one message in the platform's own format.

    ``at_mobiles`` are @-mentioned where the platform can do it by mobile number:
    - 企业微信: markdown cannot @ by mobile, so with mentions the message is sent as ``text``
      (markup stripped) with ``mentioned_mobile_list`` — for paging, a ping that reaches the
      phone matters more than formatting. Without mentions it stays ``markdown``.
    - 钉钉: ``at.atMobiles``, and "@mobile" in the text, where 钉钉 shows it as the member's name.
    - 飞书: custom robots can only @ by open_id/user_id, not by mobile; mentions are dropped
      (the SMS seam reaches those people).
    Query values are unencoded: the HTTP client encodes them.
    """
    now = time.time() if now is None else now
    if kind is RobotKind.wecom:
        if at_mobiles:
            content = _truncate_bytes(f"{title}\n{markdown_to_text(markdown)}", WECOM_TEXT_MAX_BYTES)
            mention = {"content": content, "mentioned_mobile_list": list(at_mobiles)}
            return {}, {"msgtype": "text", "text": mention}
        content = _truncate_bytes(f"### {title}\n{markdown}", WECOM_MARKDOWN_MAX_BYTES)
        return {}, {"msgtype": "markdown", "markdown": {"content": content}}
    if kind is RobotKind.dingtalk:
        text = f"### {title}\n\n{markdown}"
        if at_mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in at_mobiles)
        body: dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atMobiles": list(at_mobiles), "isAtAll": False},
        }
        if not secret:
            return {}, body
        timestamp_ms = str(int(now * 1000))
        return {
            "timestamp": timestamp_ms,
            "sign": dingtalk_sign(secret=secret, timestamp_ms=timestamp_ms),
        }, body
    if kind is RobotKind.feishu:
        body = {
            "msg_type": "interactive",
            "card": {
                "header": {
                    "title": {"tag": "plain_text", "content": title},
                    "template": FEISHU_CARD_TEMPLATE,
                },
                "elements": [{"tag": "markdown", "content": markdown}],
            },
        }
        if secret:
            timestamp_s = str(int(now))
            body = {
                "timestamp": timestamp_s,
                "sign": feishu_sign(secret=secret, timestamp_s=timestamp_s),
                **body,
            }
        return {}, body
    raise ValueError(f"unknown robot kind {kind!r}")


def send_robot(
    target: RobotTarget,
    *,
    policy: OutboundPolicy,
    title: str,
    markdown: str,
    at_mobiles: Sequence[str] = (),
    timeout: float = 10.0,
) -> None:
    """Post one message through the outbound check (core.outbound); raise NotifyError unless the
    platform says it was accepted. The error says what happened (refused, no answer, the HTTP
    status, the platform's code and what it means), never what the other side wrote."""
    import httpx

    name = robot_name(target)
    params, body = robot_payload(
        kind=target.kind, title=title, markdown=markdown, at_mobiles=at_mobiles, secret=target.secret
    )
    try:
        # Merge explicitly: since httpx 0.28 ``params=`` replaces the URL's own query, which would
        # drop 钉钉's access_token. copy_merge_params percent-encodes the sign exactly once.
        url = httpx.URL(target.url).copy_merge_params(params)
        reply = outbound.send(policy, "POST", str(url), json=body, timeout=timeout)
    except (outbound.OutboundRefused, outbound.OutboundFailed) as exc:
        raise NotifyError(f"{name} 发送失败：{exc.message}", kind=target.kind) from None
    except httpx.InvalidURL:
        raise NotifyError(f"{name} 发送失败：地址格式不正确", kind=target.kind) from None
    status = reply.status
    if not 200 <= status < 300:
        raise NotifyError(f"{name} 发送失败：HTTP {status}", kind=target.kind, http_status=status)
    try:
        answer = reply.json()
    except ValueError:
        raise NotifyError(f"{name} 发送失败：响应不是 JSON", kind=target.kind, http_status=status) from None
    errcode = _answer_code(target.kind, answer)
    if errcode != 0:
        meaning = ERRCODE_MEANINGS.get((target.kind, errcode)) if isinstance(errcode, int) else None
        raise NotifyError(
            f"{name} 发送失败：errcode {errcode}" + (f"（{meaning}）" if meaning else ""),
            kind=target.kind,
            http_status=status,
            errcode=errcode,
        )
    log.info("robot %s accepted message %r", name, title)


def _answer_code(kind: RobotKind, answer: Any) -> int | str:
    """The error code of a platform's JSON answer; 0 is accepted. A missing code is not taken as
    success: a page that may not have arrived must be reported."""
    if not isinstance(answer, dict):
        return "missing"
    if kind is RobotKind.feishu:
        # current answers carry both ``code`` and the legacy ``StatusCode``; older ones only the latter
        for code_key in ("code", "StatusCode"):
            if code_key in answer and answer[code_key] != 0:
                return _code(answer[code_key])
        if "code" in answer or "StatusCode" in answer:
            return 0
        return "missing"
    if "errcode" not in answer:
        return "missing"
    return _code(answer["errcode"])


def _code(value: Any) -> int | str:
    """A platform's code as a number, or a short marker (never free text from the answer)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    return int(text) if text.lstrip("-").isdigit() and len(text) < 12 else "invalid"


class SmsGateway(Protocol):
    def send(self, *, phone: str, text: str) -> None: ...


class LogSms:
    """Logs the SMS instead of sending it, until a real gateway is plugged in; number masked."""

    def send(self, *, phone: str, text: str) -> None:
        log.info("sms (log only, not sent) to %s: %s", mask_mobile(phone), mask_text(text))


def sms_gateway(spec: str | None) -> SmsGateway:
    """The operator's SMS gateway: ``package.module:Class`` (built without arguments, reading its
    own configuration) implementing SmsGateway; unset, messages are only logged."""
    if not spec:
        return LogSms()
    import importlib

    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"sms gateway {spec!r}: expected package.module:Class")
    gateway: SmsGateway = getattr(importlib.import_module(module), name)()
    return gateway


def notify(
    *,
    targets: Sequence[RobotTarget],
    policy: OutboundPolicy,
    sms: SmsGateway | None,
    phones: Sequence[str],
    title: str,
    markdown: str,
    timeout: float = 10.0,
) -> list[str]:
    """Post to every robot (@-mentioning ``phones``) and text every phone; one failure never
    stops the rest. Returns one error line (Chinese, for the console) per failed delivery."""
    errors: list[str] = []
    for target in targets:
        try:
            send_robot(target, policy=policy, title=title, markdown=markdown, at_mobiles=phones,
                       timeout=timeout)  # fmt: skip
        except NotifyError as exc:
            log.warning("robot delivery failed: %s", exc.message)
            errors.append(exc.message)
        except Exception as exc:  # a bug in one channel must not silence the others
            log.exception("robot %s raised while sending", robot_name(target))
            errors.append(f"{robot_name(target)} 发送失败：{type(exc).__name__}")
    if sms is not None:
        text = f"{title}\n{markdown_to_text(markdown)}"
        for phone in phones:
            try:
                sms.send(phone=phone, text=text)
            except Exception as exc:  # the gateway is pluggable: any failure is one failed delivery
                log.warning("sms to %s failed: %s", mask_mobile(phone), type(exc).__name__)
                errors.append(f"短信 {mask_mobile(phone)} 发送失败：{type(exc).__name__}")
    return errors


_LINK_RE = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
_TAG_RE = re.compile(r"</?(?:font|at)\b[^>]*>")
_LINE_MARK_RE = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?)", re.MULTILINE)


def markdown_to_text(markdown: str) -> str:
    """The few markdown marks our messages use, removed for plain-text channels (SMS, text)."""
    text = _LINK_RE.sub(lambda m: f"{m.group(1)} {m.group(2)}".strip(), markdown)
    text = _TAG_RE.sub("", text)
    text = _LINE_MARK_RE.sub("", text)
    return text.replace("**", "").replace("`", "")


def _truncate_bytes(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes, cut on a character boundary and marked with "…"."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


# ?tls= on the SMTP URL. verify (default): certificate and name checked against the system's CAs
# (SSL_CERT_FILE adds an internal CA). unverified: encrypted, certificate not checked (a relay
# with a self-signed or IP-only certificate; protects against listening, not impersonation).
# none: no STARTTLS and a login in clear text; only on a network the operator trusts.
SMTP_TLS_MODES = ("verify", "unverified", "none")


def send_mail(*, policy: OutboundPolicy, smtp_url: str, sender: str, to: Sequence[str], subject: str,
              text: str, timeout: float = 10.0) -> None:  # fmt: skip
    """One plain-text e-mail through the operator's SMTP server (``smtp://user:pass@host:port``,
    ``smtps://`` for TLS from the start; STARTTLS when plain ``smtp://`` offers it), connected
    through the outbound check like every other request. TLS verifies the server's certificate and
    name against the system's CAs (``SSL_CERT_FILE`` adds an internal CA): a password and alert
    text never go to a server that only claims the name."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid
    from urllib.parse import unquote, urlsplit

    url = urlsplit(smtp_url)
    if url.scheme not in {"smtp", "smtps"} or not url.hostname:
        raise NotifyError(f"邮件服务器地址无效：{url.scheme}://…")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="anju")
    message.set_content(text)
    port = url.port or (465 if url.scheme == "smtps" else 25)
    tls = (parse_qs(url.query).get("tls") or ["verify"])[-1]
    if tls not in SMTP_TLS_MODES:
        raise NotifyError(f"邮件服务器地址的 tls 参数只能是 {'、'.join(SMTP_TLS_MODES)}")
    context = ssl.create_default_context()
    if (
        tls == "unverified"
    ):  # an internal relay's self-signed or IP-only certificate, by the operator's choice
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with outbound.smtp_connection(policy, scheme=url.scheme, host=url.hostname, port=port,
                                      timeout=timeout, context=context) as smtp:  # fmt: skip
            encrypted = url.scheme == "smtps"
            if url.scheme == "smtp" and tls != "none":
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                    encrypted = True
            if url.username:
                if not encrypted and tls != "none":
                    # Someone on the path can strip STARTTLS from the server's answer.
                    raise NotifyError(
                        "邮件发送失败：邮件服务器没有提供加密连接（STARTTLS），登录密码不会以明文发送；"
                        "确属可信内网时在地址后加 ?tls=none"
                    )
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(message)
    except (outbound.OutboundRefused, outbound.OutboundFailed) as exc:
        raise NotifyError(f"邮件发送失败：{exc.message}") from None
    except ssl.SSLCertVerificationError as exc:
        raise NotifyError(
            f"邮件发送失败：邮件服务器的证书未通过验证（{exc.verify_message}），邮件没有发出；"
            "内部 CA 签发的证书请用 SSL_CERT_FILE 指定 CA 文件"
        ) from None
    except smtplib.SMTPAuthenticationError:
        raise NotifyError("邮件发送失败：邮件服务器拒绝了登录（请检查用户名和密码）") from None
    except smtplib.SMTPRecipientsRefused:
        raise NotifyError("邮件发送失败：收件地址被邮件服务器拒绝") from None
    except smtplib.SMTPException:
        raise NotifyError("邮件发送失败：邮件服务器拒绝了这封邮件") from None
    except TimeoutError:
        raise NotifyError(f"邮件发送失败：邮件服务器 {timeout:g} 秒内没有响应") from None
    except OSError:
        raise NotifyError("邮件发送失败：无法连接邮件服务器") from None
