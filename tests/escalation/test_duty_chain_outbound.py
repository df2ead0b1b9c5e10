"""The duty chain's robots, as finding 2 of issue 19 abused them: a supervisor pointed a robot at a
loopback address and any resident saying 着火了 made the server POST there. Now only an admin
sets a robot URL, never an internal one, and an emergency with a robot inside (saved before the
check, or a name that resolves inside today) pages nobody there, while the case still opens and
the resident still reads the duty phone."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from core.db import get_database
from core.outbound import REFUSED
from core.settings import Settings
from escalation.models import CaseEventKind, DutyContact
from org.models import Community
from tests.conftest import LiveServer, wait_for
from tests.escalation.test_console_flow import say
from tests.escalation.test_sla_and_paging import events
from tests.robots import FakeRobot
from tests.services import allowing


def cuihu(settings: Settings) -> int:
    with get_database(settings).session() as session:
        return int(session.scalars(select(Community.id).where(Community.code == "cuihu")).one())


def stored_robot(settings: Settings, community_id: int) -> tuple[str | None, str | None]:
    with get_database(settings).session() as session:
        row = session.scalars(select(DutyContact).where(DutyContact.community_id == community_id)).one()
        return row.robot_kind, row.robot_url


def test_a_supervisor_edits_the_people_but_never_the_robot(demo: Settings) -> None:
    with FakeRobot() as robots:
        settings = allowing(demo, robots.url("wecom"))  # the real group robot, reachable
        place = cuihu(settings)
        path = f"/api/communities/{place}/duty-chain"
        with LiveServer(settings) as live, live.login("admin") as admin, live.login("supervisor") as boss:
            duty = robots.url("wecom", "duty")
            saved = admin.put(path, json=[{"name": "值班工程师", "robot_kind": "wecom", "robot_url": duty}])
            assert saved.status_code == 200 and saved.json()[0]["has_robot"]

            for url in (
                f"{live.url}/api/auth/token",
                "http://127.0.0.1:6379/",
                "http://169.254.169.254/",
                duty,
            ):
                step = {"name": "值班工程师", "robot_kind": "wecom", "robot_url": url, "phone": "13900001234"}
                refused = boss.put(path, json=[step])
                assert refused.status_code == 403, refused.text
                assert "只有管理员可以设置值班链的群机器人" in refused.json()["error"]["message"]
            removed = boss.put(path, json=[{"name": "值班工程师", "robot_url": "", "phone": "13900001234"}])
            assert removed.status_code == 403  # taking the robot away is editing it too
            assert stored_robot(settings, place) == ("wecom", duty)

            # People, phones and minutes: the supervisor's to change; the robot stays where it was.
            edited = boss.put(
                path, json=[{"name": "值班经理 张工", "phone": "13900001234", "ack_minutes": 3}]
            )
            assert edited.status_code == 200, edited.text
            [step] = edited.json()
            assert step["name"] == "值班经理 张工" and step["phone"] == "139****1234" and step["has_robot"]
            assert stored_robot(settings, place) == ("wecom", duty)
            # The admin removes it with "".
            cleared = admin.put(
                path, json=[{"name": "值班经理 张工", "phone": "13900001234", "robot_url": ""}]
            )
            assert cleared.status_code == 200 and not cleared.json()[0]["has_robot"]
    assert robots.messages == []  # saving never posts


def test_an_admin_cannot_point_a_duty_robot_inside(server: LiveServer) -> None:
    place = cuihu(server.settings)
    path = f"/api/communities/{place}/duty-chain"
    with FakeRobot() as inside, server.login("admin") as admin:
        before = admin.get(path).json()  # the demo's chain
        port = inside.port
        targets = [
            f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key=k",
            f"http://2130706433:{port}/cgi-bin/webhook/send?key=k",
            f"http://0x7f.1:{port}/cgi-bin/webhook/send?key=k",
            f"http://[::1]:{port}/cgi-bin/webhook/send?key=k",
            f"http://[::ffff:127.0.0.1]:{port}/cgi-bin/webhook/send?key=k",
            f"http://localhost:{port}/cgi-bin/webhook/send?key=k",
            f"http://duty.localhost:{port}/cgi-bin/webhook/send?key=k",
            "http://169.254.169.254/latest/meta-data/",
            f"{server.url}/api/cases",
        ]
        for url in targets:
            chain = [{"name": "值班工程师", "phone": "13900001234"},
                     {"name": "项目经理", "robot_kind": "wecom", "robot_url": url}]  # fmt: skip
            refused = admin.put(path, json=chain)
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["error"]["message"] == f"第 2 级群机器人地址（robot_url） 有误：{REFUSED}"
        no_kind = admin.put(
            path, json=[{"name": "x", "robot_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}]
        )
        assert no_kind.status_code == 422 and "robot_kind" in no_kind.json()["error"]["message"]
        assert admin.get(path).json() == before  # nothing of any refused chain was stored
    assert inside.requests == 0


def test_an_emergency_with_a_robot_inside_posts_nothing_there_and_still_reaches_the_resident(
    demo_kb: Settings, start_worker: Any
) -> None:
    with FakeRobot() as inside:  # an internal listener, not allowed
        place = cuihu(demo_kb)
        with get_database(demo_kb).session() as session:  # saved before the check, or DNS moved since
            first = session.scalars(
                select(DutyContact).where(DutyContact.community_id == place, DutyContact.level == 0)
            ).one()
            first.robot_kind, first.robot_url = "wecom", inside.url("wecom", "duty")
        start_worker(demo_kb)
        with LiveServer(demo_kb) as live, live.client() as resident:
            turn = say(resident, uuid.uuid4().hex, "着火了！3栋楼下着火了，好多烟")
            assert turn["action"] == "emergency" and turn["case_id"]
            assert turn["duty_phone"] and turn["duty_phone"] in turn["reply"]

            def failed_page() -> list[Any]:
                return [
                    e for e in events(demo_kb, turn["case_id"], CaseEventKind.paged) if "发送失败" in e.text
                ]

            [failure] = wait_for(failed_page, timeout=30, message="the page to the robot to fail")
            assert REFUSED in failure.text
    assert inside.requests == 0  # not one POST reached the loopback listener
