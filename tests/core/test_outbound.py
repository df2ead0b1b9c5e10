"""The one outbound client (core.outbound), attacked the way finding 2 of issue 19 did: internal
addresses in every spelling, names that resolve inside, redirects inside, a name that resolves
once outside and then inside, ports probed through the error text, and remote text smuggled into
an error message. Real sockets on 127.0.0.1 stand for the internal services; nothing is mocked but
DNS (an external party), and only where a test needs a name this machine cannot have."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core import outbound
from core.notify import NotifyError, RobotKind, RobotTarget, send_mail, send_robot
from core.outbound import REFUSED, OutboundFailed, OutboundPolicy, OutboundRefused
from core.settings import Settings
from tests.mailbox import Mailbox
from tests.robots import FakeRobot
from tests.services import free_port, host_port

SECRET = "redis-password=hunter2"


class Internal:
    """An internal HTTP service on 127.0.0.1 that answers every request with a secret and
    remembers each request (path and Host header); a 302 for paths given to ``redirect``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.redirects: dict[str, str] = {}
        internal = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                internal.requests.append((self.path, self.headers.get("Host", "")))
                if self.path in internal.redirects:
                    self.send_response(302)
                    self.send_header("Location", internal.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"errcode": 0, "secret": SECRET}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal() -> Iterator[Internal]:
    service = Internal()
    yield service
    service.close()


def spellings(port: int) -> list[str]:
    """One internal target, written every way that reaches it (and a few more internal ones)."""
    found = [
        f"http://127.0.0.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.1:{port}/",
        f"http://0177.0.0.01:{port}/",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[2002:7f00:1::]:{port}/",  # 6to4 around 127.0.0.1
        f"http://localhost:{port}/",
        f"http://LOCALHOST.:{port}/",
        f"http://api.localhost:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://0:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.5:8000/v1/models",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
    ]
    name = socket.gethostname()  # a name only /etc/hosts knows; inside on most machines
    try:
        address = outbound.literal_ip(socket.gethostbyname(name))
    except OSError:
        address = None
    if address is not None and not outbound.is_public(address):
        found.append(f"http://{name}:{port}/")
    return found


def test_every_spelling_of_an_internal_address_is_refused_before_connecting(internal: Internal) -> None:
    for url in spellings(internal.port):
        with pytest.raises(OutboundRefused) as caught:
            outbound.send(OutboundPolicy(), "POST", url, json={"msgtype": "text"}, timeout=2)
        assert caught.value.message == REFUSED, url
    assert internal.requests == []


def test_a_probe_of_internal_ports_reads_the_same_answer_for_open_and_closed_ones(internal: Internal) -> None:
    answers = set()
    for port in (internal.port, 6379, 5432, free_port()):  # open HTTP, Redis, PostgreSQL, nothing
        with pytest.raises(OutboundRefused) as caught:
            outbound.send(OutboundPolicy(), "GET", f"http://127.0.0.1:{port}/", timeout=2)
        answers.add((type(caught.value).__name__, caught.value.message, caught.value.details))
    assert answers == {("OutboundRefused", REFUSED, None)}
    assert internal.requests == []


def test_schemes_other_than_http_are_refused() -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1:6379/_INFO", "dict://x/"):
        with pytest.raises(OutboundRefused, match="http"):
            outbound.send(OutboundPolicy(), "GET", url, timeout=2)


def test_a_redirect_inside_is_refused_and_never_followed(internal: Internal) -> None:
    front = Internal()  # an allowed service (a robot, the LLM) that answers with a 302 inside
    try:
        front.redirects["/hook"] = internal.url("/admin")
        front.redirects["/v1/chat"] = f"http://localhost:{internal.port}/admin"
        allowed = OutboundPolicy.parse([f"127.0.0.1:{front.port}"])
        # A webhook is never followed: its 302 is the answer.
        assert outbound.send(allowed, "POST", front.url("/hook"), json={}).status == 302
        # A client that follows redirects (the LLM's) checks every hop.
        with outbound.http_client(allowed, timeout=5, follow_redirects=True) as client:
            for path in ("/hook", "/v1/chat"):
                with pytest.raises(OutboundRefused):
                    client.get(front.url(path))
        assert [path for path, _ in front.requests] == ["/hook", "/hook", "/v1/chat"]
    finally:
        front.close()
    assert internal.requests == []


def test_allow_entries_open_exactly_what_they_name(internal: Internal) -> None:
    port, other = internal.port, free_port()
    by_port = OutboundPolicy.parse([f"127.0.0.1:{port}"])
    assert outbound.send(by_port, "GET", internal.url("/x")).status == 200
    assert outbound.send(by_port, "GET", f"http://2130706433:{port}/x").status == 200  # same address
    with pytest.raises(OutboundRefused):
        outbound.send(by_port, "GET", f"http://127.0.0.1:{other}/")  # another port of the same host
    with pytest.raises(OutboundRefused):
        outbound.send(by_port, "GET", f"http://localhost:{port}/")  # a name is not its address

    prefix = OutboundPolicy.parse([f"http://127.0.0.1:{port}/v1"])
    assert outbound.send(prefix, "GET", internal.url("/v1/models")).status == 200
    for escape in ("/admin", "/v1/../admin", "/v1/%2e%2e/admin", "/v1/..%2fadmin", "/v2"):
        with pytest.raises(OutboundRefused):
            outbound.send(prefix, "GET", internal.url(escape))

    named = OutboundPolicy.parse(["localhost"])
    assert outbound.send(named, "GET", f"http://localhost:{port}/n").status == 200
    # The name travels in the Host header; the connection went to the address it resolved to.
    assert internal.requests[-1] == ("/n", f"localhost:{port}")
    seen = [path for path, _ in internal.requests]
    assert seen == ["/x", "/x", "/v1/models", "/n"]


def test_operators_write_entries_as_a_json_list_or_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_OUTBOUND_ALLOW", '["10.0.0.5:8000", "http://llm.internal/v1"]')
    assert Settings().outbound_allow == ["10.0.0.5:8000", "http://llm.internal/v1"]
    monkeypatch.setenv("ANJU_OUTBOUND_ALLOW", " 10.0.0.5:8000, llm.internal ,[::1]:9")
    policy = outbound.outbound_policy(Settings(mode="production", secret_key="k" * 40))
    assert policy.permits(scheme="http", host="10.0.0.5", port=8000)
    assert not policy.permits(scheme="http", host="10.0.0.5", port=8001)
    assert policy.permits(scheme="https", host="LLM.internal.", port=443)
    assert policy.permits(scheme="http", host="::1", port=9)
    for bad in ("http://x:99999/", "host:port", "http://[::1/", "user@host"):
        monkeypatch.setenv("ANJU_OUTBOUND_ALLOW", bad)
        with pytest.raises(ValueError):
            Settings()


def test_demo_mode_allows_its_demo_site_only_and_production_nothing() -> None:
    demo = Settings(port=8123)
    policy = outbound.outbound_policy(demo)
    assert policy.permits(scheme="http", host="127.0.0.1", port=8123, path="/demo-site/feed.xml")
    assert not policy.permits(scheme="http", host="127.0.0.1", port=8123, path="/api/communities")
    assert not policy.permits(scheme="http", host="127.0.0.1", port=8123, path="/demo-site/../readyz")
    production = Settings(mode="production", secret_key="k" * 40, port=8123)
    assert outbound.outbound_policy(production).allow == ()


def test_a_name_is_resolved_once_and_the_connection_goes_where_it_pointed(
    internal: Internal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the attacker's name answers a public address to the check and 127.0.0.1 to
    the connection. There is one lookup per request, and the connection goes to its answer."""
    real = socket.getaddrinfo
    answers = ["8.8.8.8", "127.0.0.1"]  # a public address for the first lookup, loopback after
    asked: list[str] = []

    def rebinding_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example.com":  # the attacker's name server
            asked.append(host)
            address = answers[min(len(asked), len(answers)) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    # 8.8.8.8 does not listen on that port: the request fails there. Had the connection looked the
    # name up again, it would have reached the internal service.
    with pytest.raises(OutboundFailed):
        outbound.send(OutboundPolicy(), "GET", f"http://rebind.example.com:{internal.port}/", timeout=1)
    assert asked == ["rebind.example.com"]
    with pytest.raises(OutboundRefused):  # the second lookup answers 127.0.0.1: refused
        outbound.send(OutboundPolicy(), "GET", f"http://rebind.example.com:{internal.port}/", timeout=1)
    assert internal.requests == []


def test_a_robot_error_never_carries_what_the_other_side_wrote() -> None:
    with FakeRobot() as robots:
        allowed = OutboundPolicy.parse([host_port(robots.url("wecom"))])
        robots.fail_next(1, status=500)  # body: {"error": "fake failure"}
        with pytest.raises(NotifyError) as caught:
            send_robot(
                RobotTarget(RobotKind.wecom, robots.url("wecom")), policy=allowed, title="t", markdown="m"
            )
        assert (
            caught.value.message.endswith("发送失败：HTTP 500") and "fake failure" not in caught.value.message
        )
        robots.fail_next(1, errcode=45009)  # errmsg "fake failure"
        with pytest.raises(NotifyError) as caught:
            send_robot(
                RobotTarget(RobotKind.wecom, robots.url("wecom")), policy=allowed, title="t", markdown="m"
            )
        assert (
            "errcode 45009（发送太频繁" in caught.value.message and "fake failure" not in caught.value.message
        )


def test_a_robot_on_a_loopback_port_gets_nothing_and_the_error_says_why(internal: Internal) -> None:
    target = RobotTarget(RobotKind.wecom, internal.url("/cgi-bin/webhook/send?key=k"), name="值班群")
    with pytest.raises(NotifyError) as caught:
        send_robot(target, policy=OutboundPolicy(), title="【紧急】着火了", markdown="3 栋")
    assert caught.value.message == f"企业微信群机器人「值班群」 发送失败：{REFUSED}"
    assert internal.requests == []


def test_mail_goes_only_to_an_allowed_mail_server() -> None:
    with Mailbox() as mailbox:
        mail = {"smtp_url": mailbox.url, "sender": "a@anju.example", "to": ["gm@anju.example"],
                "subject": "舆情Ⅰ级", "text": "x"}  # fmt: skip
        with pytest.raises(NotifyError) as caught:
            send_mail(policy=OutboundPolicy(), **mail)  # type: ignore[arg-type]
        assert caught.value.message == f"邮件发送失败：{REFUSED}"
        assert mailbox.mails == []
        send_mail(policy=OutboundPolicy.parse([host_port(mailbox.url)]), **mail)  # type: ignore[arg-type]
        assert len(mailbox.wait_for(1)) == 1


def _self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no CA signed: what a server impersonating the mail relay has."""
    cert, key = directory / "mail.crt", directory / "mail.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
def test_mail_over_tls_goes_only_to_a_server_whose_certificate_checks_out(
    implicit: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone on the path to the mail relay answers STARTTLS with their own certificate: the
    password and the alert are not sent. An operator whose relay has an internal CA names it in
    SSL_CERT_FILE, and the mail goes."""
    tls = _self_signed(tmp_path)
    with Mailbox(tls=tls, implicit=implicit) as mailbox:
        mail = {"smtp_url": mailbox.url, "sender": "a@anju.example", "to": ["gm@anju.example"],
                "subject": "舆情Ⅰ级", "text": "x"}  # fmt: skip
        policy = OutboundPolicy.parse([host_port(mailbox.url)])
        with pytest.raises(NotifyError) as caught:
            send_mail(policy=policy, **mail)  # type: ignore[arg-type]
        assert caught.value.message.startswith("邮件发送失败：邮件服务器的证书未通过验证")
        assert mailbox.mails == []
        monkeypatch.setenv("SSL_CERT_FILE", tls[0])
        send_mail(policy=policy, **mail)  # type: ignore[arg-type]
        assert len(mailbox.wait_for(1)) == 1


def test_a_password_never_goes_to_a_mail_server_without_encryption(tmp_path: Path) -> None:
    """Someone on the path strips STARTTLS from the server's answer (here the server simply has
    none): the login is not sent in clear text unless the operator said ?tls=none. ?tls=unverified
    reaches an internal relay whose certificate is self-signed, still encrypted."""
    with Mailbox() as plain:
        mail = {"smtp_url": plain.url.replace("smtp://", "smtp://alert:secret@"), "sender": "a@anju.example",
                "to": ["gm@anju.example"], "subject": "舆情Ⅰ级", "text": "x"}  # fmt: skip
        policy = OutboundPolicy.parse([host_port(plain.url)])
        with pytest.raises(NotifyError) as caught:
            send_mail(policy=policy, **mail)  # type: ignore[arg-type]
        assert "登录密码不会以明文发送" in caught.value.message and plain.mails == []
        with pytest.raises(NotifyError) as caught:
            send_mail(policy=policy, **{**mail, "smtp_url": plain.url + "?tls=maybe"})  # type: ignore[arg-type]
        assert "tls 参数" in caught.value.message
    with Mailbox(tls=_self_signed(tmp_path)) as relay:
        url = relay.url + "?tls=unverified"
        send_mail(policy=OutboundPolicy.parse([host_port(relay.url)]), **{**mail, "smtp_url": url})  # type: ignore[arg-type]
        assert len(relay.wait_for(1)) == 1


def test_an_llm_endpoint_inside_is_not_called_and_the_answer_is_extractive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from assistant.llm import compose_answer
    from tests.assistant.test_llm import FEE, QUESTION, FakeChatServer, completion

    with FakeChatServer() as fake, caplog.at_level(logging.WARNING, logger="assistant.llm"):
        settings = Settings(llm_base_url=fake.base_url, llm_model="qwen-refused", llm_timeout_seconds=2)
        assert compose_answer(settings, QUESTION, [FEE]) is None  # the extractive answer is used
        assert fake.requests == []
        assert "LLM endpoint refused" in caplog.text
        allowed = settings.model_copy(
            update={"outbound_allow": [host_port(fake.base_url)], "llm_model": "q2"}
        )
        fake.behaviour = lambda body: (200, completion(body, "住宅物业费按建筑面积每月每平方米 2.3 元收取。"))
        assert compose_answer(allowed, QUESTION, [FEE]) == "住宅物业费按建筑面积每月每平方米 2.3 元收取。"
        assert len(fake.requests) == 1
