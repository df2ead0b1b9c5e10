"""A finished phone call, from the call centre's transcript to what it leaves behind.

    review  the caller's lines read by the assistant's routing (assistant.service.review_call),
            done before anything is written (channels.service.process_call)
    store   the conversation with every utterance at its time into the call
    act     a complaint case and an emergency case (linked to it), a work order for the repairs
            asked for (on the case), a call-back task when someone must call the resident again
    note    one system line in the conversation saying what was registered

A call is over when it arrives: what it needs is a person's call-back, never a written reply.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from assistant.routing import work_order_category
from assistant.service import CallReview
from channels.models import InboundMessage, InboundStatus
from conversations import service as conversations
from conversations.models import Channel, Sender
from core.db import get_database, utcnow
from core.masking import mask_mobile
from core.settings import Settings
from escalation import callbacks, cases, work_orders
from escalation.models import CaseCategory, WorkOrderCategory
from escalation.sla import case_sla
from org.models import Community, Resident

log = logging.getLogger(__name__)

CALLBACK_AFTER_PROMISE = timedelta(hours=2)
CALLBACK_AFTER_REQUEST = timedelta(minutes=30)
SPEAKERS = {"customer": "住户", "agent": "客服"}


def store_call(
    settings: Settings,
    inbound_id: int,
    review: CallReview,
    call: dict[str, Any],
    lines: list[tuple[str, str]],
    started: datetime,
) -> int:
    """The call's conversation (every utterance at its time into the call), its cases, work order
    and call-back, and the inbound row closed, in one transaction. Written once: a second run finds
    the conversation and only closes the inbound row."""
    with get_database(settings).session() as session:
        message = session.get(InboundMessage, inbound_id)
        assert message is not None
        community_id, call_id, caller = message.community_id, message.external_id, message.sender
        place = session.get(Community, community_id)
        assert place is not None
        conversation = conversations.find(
            session, community_id=community_id, channel=Channel.phone, external_id=call_id, lock=True
        )
        if conversation is not None:  # another run wrote it: only the inbound row is left to close
            message.status, message.processed_at = InboundStatus.done, utcnow()
            message.conversation_id = conversation.id
            return conversation.id
        conversation = conversations.find_or_open(
            session, community=place, channel=Channel.phone, external_id=call_id, created_at=started,
            sender=caller,
        )  # fmt: skip
        resident_id = conversation.resident_id
        for i, utterance in enumerate(call.get("utterances", [])):
            conversations.add_message(
                session, conversation=conversation,
                sender=Sender.resident if utterance["speaker"] == "customer" else Sender.agent,
                text=utterance["text"], client_id=f"{call_id}#{i}",
                created_at=started + timedelta(milliseconds=int(utterance.get("begin_ms") or 0)),
            )  # fmt: skip
        transcript = "\n".join(f"{SPEAKERS.get(s, s)}：{t}" for s, t in lines)
        resident = session.get(Resident, resident_id) if resident_id else None
        location = review.location
        building, unit, room = (location.building, location.unit, location.room) if location else (None,) * 3
        if not location and resident is not None and resident.room is not None:  # the caller's flat on file
            flat = resident.room
            building, unit, room = flat.unit.building.name, flat.unit.name, flat.number

        # A complaint and an emergency in one call are two cases: the emergency, opened second, is
        # linked to the complaint and is resolved (and surveyed) on its own.
        complaint = emergency = None
        if review.complaint is not None:
            complaint = cases.open_case(
                session=session, settings=settings, company_id=place.company_id, community_id=place.id,
                category=CaseCategory.complaint, reason="complaint by phone",
                summary=f"电话投诉：{review.complaint}\n{transcript}", conversation_id=conversation.id,
                resident_id=resident_id, dispute=review.dispute,
                hazard=review.hazard.value if review.hazard else None,
            )  # fmt: skip
        if review.emergency is not None:
            emergency = cases.open_case(
                session=session, settings=settings, company_id=place.company_id, community_id=place.id,
                category=CaseCategory.emergency, reason=f"emergency:{review.emergency.value}",
                summary=f"电话来电（紧急）：{review.emergency_line}\n{transcript}",
                conversation_id=conversation.id, resident_id=resident_id,
                emergency_kind=review.emergency.value,
            )  # fmt: skip
        case = emergency or complaint  # the one the call-back is about
        order = None
        if review.repairs:
            described = "；".join(review.repairs)
            order = work_orders.create_work_order(
                session=session, company_id=place.company_id, community_id=place.id,
                category=WorkOrderCategory(work_order_category(described)),
                description=f"电话报修：{described}",
                building=building, unit=unit, room=room, conversation_id=conversation.id,
                case_id=(complaint or case).id if case else None, resident_id=resident_id,
            )  # fmt: skip

        reasons: list[str] = []
        due = []
        now = utcnow()
        if case is not None:
            reasons.append("紧急事件处置后回访" if case is emergency else "投诉需电话答复")
            due.append(case.first_response_due)
        if review.promised_callback:
            reasons.append("通话中客服承诺回电")
            due.append(now + CALLBACK_AFTER_PROMISE)
        if review.asked_callback:
            reasons.append("住户要求回电")
            due.append(now + CALLBACK_AFTER_REQUEST)
        if not any(s == "customer" for s, _ in lines):
            reasons.append("没有识别到住户说的话，需回电确认")
            due.append(now + case_sla(CaseCategory.inquiry).first_response)
        elif all(s == "customer" for s, _ in lines):
            reasons.append("来电无人接听（留言），需回电")
            due.append(now + case_sla(CaseCategory.inquiry).first_response)
        callback = None
        if reasons:
            callback = callbacks.request_callback(
                session=session, company_id=place.company_id, community_id=place.id,
                conversation_id=conversation.id, phone=caller, reason="；".join(reasons), due_at=min(due),
                resident_id=resident_id, case_id=case.id if case else None,
                work_order_id=order.id if order else None,
            )  # fmt: skip

        done = [f"工单 {order.id}（{order.category.value}）" if order else "",
                *(f"{c.category.value}案件 {c.id}" for c in (emergency, complaint) if c is not None),
                f"回电任务 {callback.id}" if callback else ""]  # fmt: skip
        note = conversations.add_message(
            session, conversation=conversation, sender=Sender.system,
            text="通话已记录，" + ("已登记：" + "、".join(d for d in done if d) if any(done) else "无需跟进"),
            client_id=f"{call_id}#review", case_id=case.id if case else None,
            work_order_id=order.id if order else None,
        )  # fmt: skip
        if case is not None:
            conversations.hand_over(conversation)
        else:
            conversations.close(conversation)
        message.status, message.processed_at, message.error = InboundStatus.done, utcnow(), None
        message.conversation_id, message.reply_message_id = conversation.id, note.id
        log.info("call %s from %s stored as conversation %s: %s", call_id, mask_mobile(caller),
                 conversation.id, note.text)  # fmt: skip
        return conversation.id
