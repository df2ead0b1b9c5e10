"""Alert routes as an attacker with an admin account uses them: a robot URL pointing inside is
refused on save (the field named), a route stored before the check (or whose name now resolves
inside) is refused at 发送测试 with the same words whatever the port, and no answer of any
robot, internal or not, is echoed back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.db import get_database
from core.outbound import REFUSED
from core.settings import Settings
from sentiment.models import AlertChannel, AlertRoute
from tests.conftest import LiveServer
from tests.robots import FakeRobot
from tests.sentiment.factories import demo_company
from tests.services import allowing, free_port

SECRET = "INTERNAL: redis-password=hunter2"


class EchoService:
    """An internal service that answers every POST with a secret (what finding 2 read back)."""

    def __init__(self) -> None:
        self.posts = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                service.posts += 1
                body = json.dumps({"errcode": 1, "errmsg": SECRET}).encode()
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[EchoService]:
    service = EchoService()
    yield service
    service.close()


def robot_route(name: str, target: str) -> dict[str, Any]:
    return {"name": name, "channel": "wecom", "target": target, "worst_grade": 4}


def inside(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key=k",
        f"http://2130706433:{port}/cgi-bin/webhook/send?key=k",
        f"http://0x7f.0.0.1:{port}/robot/send?access_token=t",
        f"http://127.1:{port}/robot/send?access_token=t",
        f"http://[::1]:{port}/open-apis/bot/v2/hook/t",
        f"http://[::ffff:127.0.0.1]:{port}/open-apis/bot/v2/hook/t",
        f"http://localhost:{port}/cgi-bin/webhook/send?key=k",
        f"http://robot.localhost:{port}/cgi-bin/webhook/send?key=k",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://192.168.0.10/cgi-bin/webhook/send?key=k",
    ]


def test_an_admin_cannot_point_a_route_inside(server: LiveServer, echo: EchoService) -> None:
    with server.login("admin") as admin:
        for url in [*inside(echo.port), f"{server.url}/api/auth/token"]:
            made = admin.post("/api/opinion/alert-routes", json=robot_route("品牌部群", url))
            assert made.status_code == 422, (url, made.text)
            assert made.json()["error"]["message"] == f"Webhook 地址（target） 有误：{REFUSED}"
        public = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0f1e2d3c"
        made = admin.post("/api/opinion/alert-routes", json=robot_route("品牌部群", public))
        assert made.status_code == 201
        route_id = made.json()["id"]
        moved = admin.put(
            f"/api/opinion/alert-routes/{route_id}", json=robot_route("品牌部群", "http://[::1]:6379/")
        )
        assert moved.status_code == 422
        [kept] = admin.get("/api/opinion/alert-routes").json()
        assert kept["target"].startswith("qyapi.weixin.qq.com/")
    assert echo.posts == 0


def test_a_test_message_to_a_route_inside_reads_the_same_whatever_the_port(
    demo: Settings, echo: EchoService
) -> None:
    with LiveServer(demo) as server:
        ports = [
            echo.port,
            server.port,
            6379,
            5432,
            free_port(),
        ]  # open HTTP, the API, Redis, PostgreSQL, closed
        with get_database(demo).session() as session:
            company = demo_company(session).id
            rows = [AlertRoute(company_id=company, name="旧通道", channel=AlertChannel.wecom, worst_grade=4,
                               target=f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key=k")
                    for port in ports]  # fmt: skip
            session.add_all(rows)  # saved before the check existed, or its name now resolves inside
            session.flush()
            ids = [r.id for r in rows]
        with server.login("admin") as admin:
            answers = [admin.post(f"/api/opinion/alert-routes/{i}/test").json() for i in ids]
    assert {json.dumps(a, ensure_ascii=False) for a in answers} == {
        json.dumps(
            {"delivered": False, "error": f"企业微信群机器人「旧通道」 发送失败：{REFUSED}"},
            ensure_ascii=False,
        )
    }
    assert echo.posts == 0


def test_what_a_robot_answers_is_never_shown(demo: Settings, echo: EchoService) -> None:
    with FakeRobot() as robots:
        settings = allowing(demo, robots.url("wecom"), f"http://127.0.0.1:{echo.port}")  # both allowed here
        with LiveServer(settings) as server, server.login("admin") as admin:

            def route(name: str, target: str) -> int:
                made = admin.post("/api/opinion/alert-routes", json=robot_route(name, target))
                assert made.status_code == 201, made.text
                return int(made.json()["id"])

            echoing = route("回显", f"http://127.0.0.1:{echo.port}/cgi-bin/webhook/send?key=k")
            answer = admin.post(f"/api/opinion/alert-routes/{echoing}/test").json()
            assert answer == {"delivered": False, "error": "企业微信群机器人「回显」 发送失败：HTTP 500"}
            robot = route("品牌部群", robots.url("wecom", "pr"))
            robots.fail_next(1, errcode=93000)  # the platform's errmsg: "fake failure"
            answer = admin.post(f"/api/opinion/alert-routes/{robot}/test").json()
            meaning = "Webhook 地址无效或机器人已被移出群"  # not the platform's own errmsg
            assert answer["error"] == f"企业微信群机器人「品牌部群」 发送失败：errcode 93000（{meaning}）"
    assert echo.posts == 1  # it was reached (allowed), and its answer stayed with the server
    assert SECRET not in json.dumps(answer, ensure_ascii=False)
