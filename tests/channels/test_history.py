"""One history per resident across channels: the app (linked by the mobile number it vouches
for), a phone call from that number and the directory's other entry with the same number; what
staff read and export is masked."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import select

from channels.models import InboundMessage
from channels.service import process_inbound
from conversations.models import Conversation
from core.db import get_database
from core.settings import Settings
from org import service as org
from org.models import Community, IdentityKind, ResidentIdentity
from tests.channels import test_app_channel as app
from tests.channels import test_phone as phone
from tests.conftest import LiveServer

MOBILE = phone.CALLER


def test_app_phone_and_a_second_flat_share_one_masked_history(demo_kb: Settings) -> None:
    settings = demo_kb.model_copy(
        update={"app_channel_secret": app.SECRET, "phone_channel_secret": phone.SECRET,
                "app_webhook_url": "http://127.0.0.1:9/unused"}
    )  # fmt: skip
    zhou = phone.add_caller(settings)
    with get_database(settings).session() as session:  # the same person owns a flat in 锦江
        jinjiang = session.scalars(select(Community).where(Community.code == "jinjiang")).one()
        second = org.create_resident(session=session, community_id=jinjiang.id, name="周建国",
                                     identities=[(IdentityKind.mobile, MOBILE)]).id  # fmt: skip
    with LiveServer(settings) as live, live.client() as client:
        first = app.message(f"我的电话是{MOBILE}，楼道灯坏了", user_id="app-zhou", mobile=MOBILE)
        assert app.post(client, first).status_code == 202
        assert (
            app.post(
                client, app.message("物业费在哪交", user_id="app-stranger", mobile="13800009999")
            ).status_code
            == 202
        )
        call = phone.call(call_id="c-zhou", utterances=[phone.said("customer", 0, "我家门口的灯还是不亮")])
        assert phone.post(client, call).status_code == 202
        other = phone.call(
            call_id="c-2", community="jinjiang", utterances=[phone.said("customer", 0, "锦江这边停车费多少")]
        )
        assert phone.post(client, other).status_code == 202
        with get_database(settings).session(readonly=True) as session:
            ids = session.scalars(select(InboundMessage.id).order_by(InboundMessage.id)).all()
        for inbound_id in ids:  # what a worker does, run here
            process_inbound(settings, inbound_id)

        with get_database(settings).session(readonly=True) as session:
            linked = session.scalars(
                select(ResidentIdentity.resident_id).where(ResidentIdentity.value == "app-zhou")
            ).one()
            assert linked == zhou  # the app user is now known as 周建国
            assert (
                session.scalars(  # a mobile nobody in the directory has links nothing
                    select(ResidentIdentity).where(ResidentIdentity.value == "app-stranger")
                ).all()
                == []
            )
            owners = {c.external_id: c.resident_id for c in session.scalars(select(Conversation))}
            assert owners["app-zhou"] == owners["c-zhou"] == zhou and owners["c-2"] == second

        with live.login("agent") as agent:
            history = agent.get(f"/api/residents/{zhou}/history")
            assert history.status_code == 200, history.text
            items = history.json()
            assert {i["channel"] for i in items} == {"app", "phone"}
            assert [i["sender"] for i in items if i["channel"] == "app"] == ["resident", "assistant"]
            assert any("锦江这边停车费" in i["text"] for i in items)  # his other flat's call
            said = next(i["text"] for i in items if "楼道灯" in i["text"])
            assert MOBILE not in json.dumps(items, ensure_ascii=False) and "139****1234" in said
            assert [i["created_at"] for i in items] == sorted(i["created_at"] for i in items)
            assert agent.get(f"/api/residents/{second}/history").json() == items
            assert agent.get("/api/residents/99999/history").status_code == 404

            export = agent.get("/api/communities/1/conversations/export")
            assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
            table = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
            assert table[0][:3] == ["时间", "渠道", "会话"]
            body = export.content.decode("utf-8-sig")
            assert MOBILE not in body and "139****1234" in body and "app-zhou" not in body
            assert {row[1] for row in table[1:]} == {"App", "电话"}
        with live.login("pr") as pr:  # the PR desk does not read residents' conversations
            assert pr.get(f"/api/residents/{zhou}/history").status_code == 403
            assert pr.get("/api/communities/1/conversations/export").status_code == 403
