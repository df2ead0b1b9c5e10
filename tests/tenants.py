"""Test data for tenant isolation: a second company beside the demo one, and one row of every kind
that a request can name by id, in a given community, each carrying a marker so that a response
that leaks it can be recognised.

The markers are plain Chinese words: masking (phones, ID numbers, plates, names) leaves them as
they are, and they appear in every free-text field of the rows made here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts import service as accounts_service
from accounts.models import Role
from channels.models import DeliveryStatus, InboundMessage, InboundStatus, OutboundDelivery
from conversations.models import Channel, Conversation, ConversationState, Message, Sender
from core.db import utcnow
from crawlers.models import CrawlRun, Source, SourceKind
from escalation.models import (
    CallbackTask,
    CannedReply,
    Case,
    CaseCategory,
    CaseEvent,
    CaseEventKind,
    DutyContact,
    Priority,
    Survey,
    WorkOrder,
    WorkOrderCategory,
)
from knowledge import service as knowledge_service
from org import service as org_service
from org.models import Community, Company, IdentityKind, ImportStatus, ResidentImport
from sentiment.models import (
    Alert,
    AlertChannel,
    AlertRoute,
    Event,
    EventLog,
    Post,
    WatchKind,
    WatchTerm,
)

PASSWORD = "anju-demo-2026"
OTHER_COMPANY = "other-co"


@dataclass
class Rows:
    """The ids of one community's rows of every kind (and the marker in their texts)."""

    marker: str
    company_id: int
    community_id: int
    community_code: str
    ids: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # rows named by a string (crawl source keys)


def seed_other_company(session: Session) -> Company:
    """乙物业: a second company sharing the installation, with one community and an admin."""
    company = org_service.create_company(session=session, code=OTHER_COMPANY, name="乙方物业服务有限公司")
    org_service.create_community(
        session=session,
        company_id=company.id,
        code="yifang",
        name="乙方家园",
        city="南京",
        address="乙方路1号",
        duty_phone="025-0000-0000",
    )
    accounts_service.create_user(
        session=session,
        company_id=company.id,
        username="admin_b",
        password=PASSWORD,
        role=Role.admin,
        display_name="乙方管理员",
    )
    session.flush()
    return company


def add_staff(session: Session, *, username: str, role: Role, community_codes: list[str]) -> None:
    ids = list(session.scalars(select(Community.id).where(Community.code.in_(community_codes))))
    company_id = session.scalar(select(Community.company_id).where(Community.code == community_codes[0]))
    assert company_id is not None
    accounts_service.create_user(
        session=session,
        company_id=company_id,
        username=username,
        password=PASSWORD,
        role=role,
        display_name=username,
        community_ids=ids,
    )


def populate(session: Session, *, community_code: str, marker: str) -> Rows:
    """One row of every kind a request names by id, in this community, carrying ``marker``."""
    community = session.scalar(select(Community).where(Community.code == community_code))
    assert community is not None
    company_id, community_id = community.company_id, community.id
    rows = Rows(
        marker=marker, company_id=company_id, community_id=community_id, community_code=community_code
    )
    now = utcnow()
    ids = rows.ids

    room = org_service.ensure_room(
        session=session, community_id=community_id, building="9栋", unit="1单元", number="901"
    )
    resident = org_service.create_resident(
        session=session,
        community_id=community_id,
        name=f"{marker}住户",
        room=room,
        identities=[(IdentityKind.mobile, f"1399{community_id:03d}{len(marker):04d}")],
        note=f"{marker}备注",
    )
    ids["resident"] = resident.id
    ids["building"] = room.unit.building_id

    conversation = Conversation(
        company_id=company_id,
        community_id=community_id,
        channel=Channel.web,
        external_id=f"session-{marker}",
        resident_id=resident.id,
        state=ConversationState.assistant,
    )
    session.add(conversation)
    session.flush()
    ids["conversation"] = conversation.id
    said = Message(conversation_id=conversation.id, sender=Sender.resident, text=f"{marker}：楼道灯坏了")
    session.add(said)
    session.flush()
    reply = Message(
        conversation_id=conversation.id,
        sender=Sender.assistant,
        text=f"{marker}：已登记",
        reply_to_id=said.id,
    )
    session.add(reply)
    session.flush()
    ids["message"] = said.id

    inbound = InboundMessage(
        company_id=company_id,
        community_id=community_id,
        channel=Channel.app,
        external_id=f"in-{marker}",
        sender=f"app-{marker}",
        text=f"{marker}：没人处理",
        status=InboundStatus.failed,
        error="测试",
        conversation_id=conversation.id,
    )
    session.add(inbound)
    session.flush()
    ids["inbound"] = inbound.id
    delivery = OutboundDelivery(
        company_id=company_id,
        channel=Channel.app,
        conversation_id=conversation.id,
        message_id=reply.id,
        inbound_id=inbound.id,
        recipient=f"app-{marker}",
        payload={"reply": f"{marker}：已登记"},
        status=DeliveryStatus.failed,
    )
    session.add(delivery)
    session.flush()
    ids["delivery"] = delivery.id

    def case(status_note: str) -> Case:
        row = Case(
            company_id=company_id,
            community_id=community_id,
            conversation_id=conversation.id,
            resident_id=resident.id,
            category=CaseCategory.complaint,
            priority=Priority.normal,
            reason="complaint",
            summary=f"{marker}：{status_note}",
            first_response_due=now + timedelta(hours=48),
            resolve_due=now + timedelta(hours=96),
        )
        session.add(row)
        session.flush()
        session.add(CaseEvent(case_id=row.id, kind=CaseEventKind.created, text=f"{marker}：建立"))
        return row

    ids["case"] = case("保安态度差").id
    surveyed = case("已办结待回访")
    surveyed.status = surveyed.status.resolved
    surveyed.resolved_at = now
    session.add(
        Survey(
            case_id=surveyed.id,
            conversation_id=conversation.id,
            company_id=company_id,
            community_id=community_id,
            category=CaseCategory.complaint,
            channel="web",
        )
    )
    ids["surveyed_case"] = surveyed.id

    order = WorkOrder(
        company_id=company_id,
        community_id=community_id,
        conversation_id=conversation.id,
        case_id=ids["case"],
        resident_id=resident.id,
        category=WorkOrderCategory.engineering,
        building="9栋",
        unit="1单元",
        room="901",
        description=f"{marker}：楼道灯",
        response_due=now + timedelta(minutes=15),
        resolve_due=now + timedelta(hours=24),
    )
    session.add(order)
    session.flush()
    ids["work_order"] = order.id

    callback = CallbackTask(
        company_id=company_id,
        community_id=community_id,
        conversation_id=conversation.id,
        resident_id=resident.id,
        case_id=ids["case"],
        phone="13900000000",
        reason=f"{marker}：回电",
        due_at=now + timedelta(hours=2),
    )
    session.add(callback)
    session.flush()
    ids["callback"] = callback.id

    if session.scalar(select(DutyContact).where(DutyContact.community_id == community_id)) is None:
        session.add(DutyContact(community_id=community_id, level=0, name=f"{marker}值班", ack_seconds=300))
    canned = CannedReply(
        company_id=company_id, community_id=community_id, title=f"{marker}", text=f"{marker}话术"
    )
    session.add(canned)

    resident_import = ResidentImport(
        community_id=community_id,
        filename=f"{marker}.csv",
        content="姓名,手机号\n".encode(),
        status=ImportStatus.done,
        report={"note": marker},
    )
    session.add(resident_import)
    session.flush()
    ids["resident_import"] = resident_import.id

    # Opinion: a crawl source watching this community, a post, an event with an alert, a route, a term.
    source = Source(
        company_id=company_id,
        key=f"src-{community_code}",
        name=f"{marker}论坛",
        kind=SourceKind.rss,
        url="https://bbs.example.com/rss.xml",
        config={},
        community_id=community_id,
        enabled=False,
    )
    session.add(source)
    session.flush()
    rows.keys["crawl_source"] = source.key
    session.add(CrawlRun(source_id=source.id, stats={"note": marker}))
    event = Event(
        company_id=company_id,
        community_id=community_id,
        title=f"{marker}：电梯困人",
        grade=2,
        score=0.8,
        reasons=[marker],
    )
    session.add(event)
    session.flush()
    ids["event"] = event.id
    session.add(EventLog(event_id=event.id, kind="created", text=f"{marker}：建立"))
    session.add(
        Post(
            company_id=company_id,
            source_id=source.id,
            platform="forum:测试",
            external_id=f"post-{marker}",
            url="https://bbs.example.com/t/1",
            title=f"{marker}：电梯",
            text=f"{marker}：电梯又坏了",
            content_hash=f"{community_id:040d}",
            community_id=community_id,
            sentiment="neg",
            sentiment_score=-0.8,
            event_id=event.id,
            risk_grade=2,
        )
    )
    alert = Alert(company_id=company_id, event_id=event.id, grade=2, delivered=[marker])
    session.add(alert)
    route = AlertRoute(
        company_id=company_id,
        community_id=community_id,
        name=f"{marker}群",
        channel=AlertChannel.email,
        target=f"pr-{community_code}@example.com",
        worst_grade=2,
    )
    session.add(route)
    term = WatchTerm(
        company_id=company_id, community_id=community_id, kind=WatchKind.community, term=f"{marker}"
    )
    session.add(term)
    session.flush()
    ids["alert"], ids["alert_route"], ids["watch_term"] = alert.id, route.id, term.id

    # Knowledge: an FAQ table for this community alone.
    faq = f"问题,答案\n{marker}的垃圾几点收,{marker}：每天早八点\n".encode()
    result = knowledge_service.ingest(
        session=session,
        company_id=company_id,
        filename=f"faq-{community_code}.csv",
        content=faq,
        community_ids=[community_id],
    )
    ids["knowledge_source"] = result.source.id
    session.flush()
    return rows


def png_bytes() -> bytes:
    """A real 1×1 PNG, for photo uploads."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"\x00\xff\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def csv_file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode("utf-8"))
