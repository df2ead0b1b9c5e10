"""A fake group-robot server for the tests: 企业微信, 钉钉 and 飞书 webhooks over real HTTP.

It listens on 127.0.0.1 and speaks each platform's protocol as the real hosts answer it:
same paths, same success bodies, 钉钉 加签 and 飞书 签名校验 checked independently of
``core.notify`` (errcode 310000 / code 19021 with HTTP 200, as the real ones do).

    with FakeRobot(dingtalk_secret="SECabc") as robots:
        send_robot(RobotTarget(kind=RobotKind.dingtalk, url=robots.url("dingtalk"), secret="SECabc"), ...)
        [message] = robots.wait_for(1)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SIGN_WINDOW_SECONDS = 3600  # both platforms refuse a timestamp more than an hour off their clock

WECOM_OK = {"errcode": 0, "errmsg": "ok"}
DINGTALK_OK = {"errcode": 0, "errmsg": "ok"}
FEISHU_OK = {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
DINGTALK_BAD_SIGN = {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc]"}
DINGTALK_BAD_TIMESTAMP = {
    "errcode": 310000,
    "errmsg": "invalid timestamp, more: [https://ding-doc.dingtalk.com/doc]",
}
FEISHU_BAD_SIGN = {
    "code": 19021,
    "data": {},
    "msg": "sign match fail or timestamp is not within one hour from current time",
}
WECOM_BAD_KEY = {"errcode": 93000, "errmsg": "invalid webhook url"}
DINGTALK_BAD_TOKEN = {"errcode": 300001, "errmsg": "token is not exist"}


@dataclass(frozen=True)
class RobotMessage:
    """One accepted message: the robot kind, the token in its URL, the parsed JSON body."""

    kind: str
    token: str
    body: dict[str, Any]
    query: dict[str, str]
    at: float


@dataclass
class _Failure:
    remaining: int
    status: int
    errcode: int | None
    delay: float


class FakeRobot:
    """企业微信 / 钉钉 / 飞书 robots on one local port. A secret given here switches that
    platform's signature check on; a robot without one accepts unsigned messages."""

    def __init__(self, *, dingtalk_secret: str | None = None, feishu_secret: str | None = None) -> None:
        self.dingtalk_secret, self.feishu_secret = dingtalk_secret, feishu_secret
        self._messages: list[RobotMessage] = []
        self._changed = threading.Condition()
        self._failure: _Failure | None = None
        self._closing = threading.Event()
        self.requests = 0  # every request, accepted or not
        # Port 0: the kernel picks a free port at bind time, so no other process can take it
        # between choosing and binding (free_port()'s race).
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-robot", daemon=True
        )
        self._thread.start()

    # --- test API -------------------------------------------------------------------------
    @property
    def messages(self) -> list[RobotMessage]:
        with self._changed:
            return list(self._messages)

    def url(self, kind: str, token: str = "t") -> str:
        """The webhook URL of a robot, on the real host's path."""
        base = f"http://127.0.0.1:{self.port}"
        if kind == "wecom":
            return f"{base}/cgi-bin/webhook/send?key={token}"
        if kind == "dingtalk":
            return f"{base}/robot/send?access_token={token}"
        if kind == "feishu":
            return f"{base}/open-apis/bot/v2/hook/{token}"
        raise ValueError(f"unknown robot kind {kind!r}")

    def fail_next(
        self, n: int = 1, *, status: int = 500, errcode: int | None = None, delay: float = 0
    ) -> None:
        """The next ``n`` requests fail: with HTTP ``status``, or, given ``errcode``, with HTTP
        200 and that platform error code in the platform's answer shape. ``delay`` seconds pass
        before the answer (to test time-outs); closing the server cuts the wait short."""
        with self._changed:
            self._failure = _Failure(remaining=n, status=status, errcode=errcode, delay=delay)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RobotMessage]:
        """The accepted messages once there are at least ``count``; AssertionError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} robot messages, got {len(self._messages)}")
            return list(self._messages)

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- server side ----------------------------------------------------------------------
    def _take_failure(self) -> _Failure | None:
        with self._changed:
            self.requests += 1
            failure = self._failure
            if failure is None:
                return None
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failure = None
            return failure

    def _record(self, message: RobotMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def handle(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one POST."""
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/cgi-bin/webhook/send":
            kind, token = "wecom", query.get("key", "")
        elif parts.path == "/robot/send":
            kind, token = "dingtalk", query.get("access_token", "")
        elif parts.path.startswith("/open-apis/bot/v2/hook/"):
            kind, token = "feishu", parts.path.rsplit("/", 1)[-1]
        else:
            return 404, {"error": "not found"}
        failure = self._take_failure()
        if failure is not None:
            if failure.delay:
                self._closing.wait(failure.delay)
            if failure.errcode is None:
                return failure.status, {"error": "fake failure"}
            if kind == "feishu":
                return 200, {"code": failure.errcode, "data": {}, "msg": "fake failure"}
            return 200, {"errcode": failure.errcode, "errmsg": "fake failure"}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, {"error": "body is not UTF-8 JSON"}
        if not isinstance(body, dict):
            return 400, {"error": "body is not a JSON object"}
        if kind == "wecom":
            if not token:
                return 200, WECOM_BAD_KEY
            answer = WECOM_OK
        elif kind == "dingtalk":
            if not token:
                return 200, DINGTALK_BAD_TOKEN
            refused = self._check_dingtalk(query)
            if refused:
                return 200, refused
            answer = DINGTALK_OK
        else:
            refused = self._check_feishu(body)
            if refused:
                return 200, refused
            answer = FEISHU_OK
        self._record(RobotMessage(kind=kind, token=token, body=body, query=query, at=time.time()))
        return 200, answer

    def _check_dingtalk(self, query: dict[str, str]) -> dict[str, Any] | None:
        secret = self.dingtalk_secret
        if secret is None:
            return None
        timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > SIGN_WINDOW_SECONDS * 1000:
            return DINGTALK_BAD_TIMESTAMP
        # key = secret, message = "timestamp\nsecret"; parse_qs has already undone the URL encoding
        mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
        if not hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign):
            return DINGTALK_BAD_SIGN
        return None

    def _check_feishu(self, body: dict[str, Any]) -> dict[str, Any] | None:
        secret = self.feishu_secret
        if secret is None:
            return None
        timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SIGN_WINDOW_SECONDS:
            return FEISHU_BAD_SIGN
        # key = "timestamp\nsecret", message empty
        mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
        if not hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign):
            return FEISHU_BAD_SIGN
        return None


def _handler_for(robot: FakeRobot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            status, answer = robot.handle(self.path, raw)
            data = json.dumps(answer, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows stderr on failure
            pass

    return Handler
