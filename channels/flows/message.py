"""A resident's message, from its text to the reply: the whole path on one screen.

    read   the conversation and what it remembers; the assistant plans (rules, intent model,
           retrieval; the operator's LLM writes an answer, if configured) — nothing written yet
    store  the resident's message, once (a message sent again gets the reply stored the first time)
    act    a survey's answer; while a person holds the conversation, the case (and silence);
           otherwise the assistant's decision: an emergency case, a hand-over, a work order (and
           both for a repair inside a complaint), an answer, small talk or a question back
    reply  the one last filter on what a resident may read (assistant.service.shown), stored

The reply's delivery on WeChat or the app is channels.service's (the web page reads the response).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assistant import replies
from assistant.routing import (
    Action,
    Emergency,
    Location,
    mostly_location,
    parse_location,
    work_order_category,
)
from assistant.service import (
    HISTORY_TURNS,
    MAX_TEXT_CHARS,
    Assistant,
    Citation,
    Plan,
    TurnResult,
    extract,
    shown,
)
from channels.flows import survey
from conversations import service as conversations
from conversations.models import Channel, Conversation, ConversationContext, Sender
from core.db import get_database
from core.errors import InvalidInput, NotFound
from core.masking import mask_text
from core.settings import Settings
from escalation import cases, work_orders
from escalation.models import Case, CaseCategory, WorkOrder, WorkOrderCategory
from escalation.sla import REPAIR, case_sla
from knowledge.service import official_facts
from org.models import Community

log = logging.getLogger(__name__)

EMPTY = "您好像还没有输入内容，请直接告诉我您遇到的问题～"
SENDERS = {Sender.resident: "住户", Sender.assistant: "助手", Sender.agent: "客服", Sender.system: "系统"}


def take_turn(
    settings: Settings,
    *,
    community: str | int,
    session_id: str,
    text: str,
    channel: Channel = Channel.web,
    client_id: str | None = None,
) -> TurnResult:
    """One turn of a resident's conversation. Safe to run again for the same ``client_id``."""
    text = (text or "").strip()
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"消息太长了，请控制在 {MAX_TEXT_CHARS} 字以内")
    session_id = (session_id or "").strip()
    if not session_id or len(session_id) > 128:
        raise InvalidInput("缺少会话编号 session_id")
    assistant = Assistant(settings)
    database = get_database(settings)

    # read: what was said before, and what the assistant would do
    with database.session(readonly=True) as session:
        place = assistant.community(session, community)
        known = conversations.find(session, community_id=place.id, channel=channel, external_id=session_id)
        if known is not None and client_id:
            earlier = _earlier_reply(session, known, client_id)
            if earlier is not None:
                return earlier  # the same message sent again: the same reply, nothing new stored
        context = conversations.context_of(known) if known is not None else ConversationContext()
        held = known is not None and conversations.held(known)
        plan = assistant.plan(session, place, text, topic=context.topic, retrieve=not held) if text else None
        written = None
        if plan is not None and plan.action is Action.answer and plan.results and settings.llm_base_url:
            written = assistant.write_with_llm(session, known, text, plan)

    # store, act, reply: one short write transaction
    for attempt in range(2):
        try:
            with database.session() as session:
                return _store_and_act(settings, session, place.id, channel, session_id, client_id, text,
                                      plan, written)  # fmt: skip
        except IntegrityError:
            # A concurrent request stored the same conversation or the same message first: the
            # second attempt finds it (and, for the same message, returns its reply).
            if attempt:
                raise
    raise AssertionError("unreachable")


def _store_and_act(
    settings: Settings,
    session: Session,
    community_id: int,
    channel: Channel,
    session_id: str,
    client_id: str | None,
    text: str,
    plan: Plan | None,
    written: str | None,
) -> TurnResult:
    place = session.get(Community, community_id)
    if place is None:
        raise NotFound("找不到该小区")
    conversation = conversations.find_or_open(
        session, community=place, channel=channel, external_id=session_id
    )
    if client_id:
        earlier = _earlier_reply(session, conversation, client_id)
        if earlier is not None:
            return earlier
    conversations.expire_hand_over(conversation)  # a day of silence after a hand-over: the assistant is back
    said = conversations.add_message(
        session, conversation=conversation, sender=Sender.resident, text=text, client_id=client_id
    )
    turn = _Turn(settings, session, place, conversation, text, plan, written)

    result = None
    if plan is None:
        result = TurnResult(reply=EMPTY, action=Action.clarify)
    elif plan.action is not Action.emergency and survey.around_survey(turn.context):
        result = survey.answer(session=session, settings=settings, conversation=conversation, text=text)
        turn.context = conversations.context_of(conversation)  # the survey step changed it
    if result is None and plan is not None:
        # decided now, under the conversation's lock, not from the read snapshot
        if conversations.held(conversation) and plan.action is not Action.emergency:
            result = turn.while_held()
        else:
            result = turn.act()
    assert result is not None
    conversations.set_context(conversation, turn.context)
    result.conversation_id = conversation.id
    if not result.reply:  # a person holds the conversation: the assistant stays silent
        return result

    # Last, before the reply is kept and sent: the one filter on what a resident may read.
    official = plan.official if plan is not None else None
    result = shown(result, official or official_facts(session, place.company_id))
    reply = conversations.add_message(
        session, conversation=conversation, sender=Sender.assistant, text=result.reply,
        action=result.action.value, citations=[c.as_dict() for c in result.citations],
        confidence=round(result.confidence, 4), case_id=result.case_id, work_order_id=result.work_order_id,
        reply_to_id=said.id,
    )  # fmt: skip
    result.message_id = reply.id
    result.duty_phone = result.duty_phone or (place.duty_phone if result.action is Action.emergency else None)
    log.info("chat turn %s in conversation %s: %s (%.2f) for %r", reply.id, conversation.id,
             result.action.value, result.confidence, mask_text(text)[:80])  # fmt: skip
    return result


def _earlier_reply(session: Session, conversation: Conversation, client_id: str) -> TurnResult | None:
    """The reply stored the first time this message (same channel message id) was received."""
    found = conversations.answered(session, conversation_id=conversation.id, client_id=client_id)
    if found is None:
        return None
    _, reply = found
    if reply is None:  # stored while a person held the conversation: nothing was said
        return TurnResult(reply="", action=Action.human, conversation_id=conversation.id)
    action = Action(reply.action or "clarify")
    emergency = duty_phone = None
    if action is Action.emergency:  # the same reply as the first time, emergency details included
        case = session.get(Case, reply.case_id) if reply.case_id else None
        emergency = case.emergency_kind if case is not None else None
        place = session.get(Community, conversation.community_id)
        duty_phone = place.duty_phone if place else None
    return TurnResult(
        reply=reply.text,
        action=action,
        citations=[Citation(**c) for c in reply.citations or []],
        confidence=reply.confidence or 0.0,
        case_id=reply.case_id,
        work_order_id=reply.work_order_id,
        conversation_id=conversation.id,
        message_id=reply.id,
        emergency=emergency,
        duty_phone=duty_phone,
    )


class _Turn:
    """The acting part of one turn: what the assistant decided, done."""

    def __init__(
        self,
        settings: Settings,
        session: Session,
        place: Community,
        conversation: Conversation,
        text: str,
        plan: Plan | None,
        written: str | None,
    ) -> None:
        self.settings, self.session, self.place, self.conversation = settings, session, place, conversation
        self.text, self.plan, self.written = text, plan, written
        self.context = conversations.context_of(conversation)
        self.assistant = Assistant(settings)  # cheap: the models are the process's, not the instance's

    def act(self) -> TurnResult:
        plan = self.plan
        assert plan is not None
        action = plan.action
        # A location given after a work order that lacked one completes it.
        location = parse_location(self.text)
        if (
            self.context.awaiting_location
            and location
            and action in (Action.answer, Action.clarify)
            and mostly_location(self.text, location)
        ):
            return self.complete_location(self.context.awaiting_location, location)
        if action is Action.emergency:
            return self.emergency()
        if action is Action.human:
            handed = self.hand_over(
                plan.route.reason or "intent", hazard=plan.route.hazard.value if plan.route.hazard else None
            )
            if not (plan.route.repair and plan.route.action is Action.human):
                return handed
            # A repair asked for inside a complaint or a hazard report: the work order starts now,
            # on the case, and the person who takes the case answers the rest.
            order = self.work_order(case_id=handed.case_id)
            self.context = replace(self.context, awaiting_location=None)  # the agent asks for what is missing
            return replace(
                handed,
                reply=replies.repair_with_the_case(order_id=order.work_order_id or 0, handed=handed.reply),
                work_order_id=order.work_order_id,
            )
        if action is Action.work_order:
            return self.work_order()
        if action is Action.chitchat:
            self.context = replace(self.context, failures=0)
            return TurnResult(reply=self.assistant.chitchat(self.text), action=Action.chitchat)
        if action is Action.answer and plan.results:
            self.context = replace(self.context, failures=0, topic=plan.query[:200])
            return self.assistant.answer(plan, self.written)

        failures = self.context.failures + (0 if plan.route.vague else 1)
        self.context = replace(self.context, failures=failures)
        if failures >= 2:
            self.context = replace(self.context, failures=0)
            return self.hand_over("assistant failed twice")
        return self.assistant.clarify(plan)

    def summary(self) -> str:
        """What the person taking the case reads first: the last turns, and this message."""
        said = conversations.recent(
            self.session, conversation_id=self.conversation.id, limit=HISTORY_TURNS * 2
        )
        lines = [f"{SENDERS[m.sender]}：{m.text}" for m in said]
        if not lines or not lines[-1].endswith(self.text):
            lines.append(f"住户：{self.text}")
        return "\n".join(lines)

    def hand_over(self, reason: str, *, hazard: str | None = None) -> TurnResult:
        complaint = replies.is_complaint(self.text, reason, hazard)
        dispute = replies.is_dispute(self.text)
        category = CaseCategory.complaint if complaint else CaseCategory.inquiry
        case = cases.open_case(
            session=self.session, settings=self.settings, company_id=self.place.company_id,
            community_id=self.place.id, category=category, reason=reason, summary=self.summary(),
            conversation_id=self.conversation.id, resident_id=self.conversation.resident_id,
            dispute=dispute, hazard=hazard,
        )  # fmt: skip
        conversations.hand_over(self.conversation)
        self.context = replace(self.context, failures=0)
        reply = replies.handed_over(
            case_id=case.id, promise=case_sla(category, dispute=dispute).promise, complaint=complaint,
            failed=reason == "assistant failed twice", hazard=hazard, duty_phone=self.place.duty_phone,
        )  # fmt: skip
        return TurnResult(reply=reply, action=Action.human, case_id=case.id, confidence=1.0)

    def while_held(self) -> TurnResult:
        """A person holds the conversation: the message joins its newest open case, and the
        assistant keeps out of the way. Until an agent has taken the case it says once that the
        message was passed on; after that, and once an agent holds the case, it is silent."""
        plan = self.plan
        assert plan is not None
        chitchat = plan.action is Action.chitchat
        complaint = plan.action is Action.human and plan.route.reason.startswith(("complaint", "hazard"))
        case = cases.open_case(
            session=self.session, settings=self.settings, company_id=self.conversation.company_id,
            community_id=self.conversation.community_id,
            category=CaseCategory.complaint if complaint else CaseCategory.inquiry, reason="follow-up",
            summary=f"住户：{self.text}", conversation_id=self.conversation.id,
            resident_id=self.conversation.resident_id, waiting=not chitchat,
            hazard=plan.route.hazard.value if plan.route.hazard else None,
        )  # fmt: skip
        silent = TurnResult(reply="", action=Action.human, case_id=case.id, confidence=1.0)
        if case.assignee_id is not None or self.context.acknowledged == case.id:
            return silent
        self.context = replace(self.context, acknowledged=case.id)
        reply = replies.passed_on(
            case_id=case.id, emergency=case.category is CaseCategory.emergency, chitchat=chitchat,
            duty_phone=self.place.duty_phone,
        )  # fmt: skip
        return replace(silent, reply=reply)

    def work_order(self, case_id: int | None = None) -> TurnResult:
        location = parse_location(self.text)
        category = WorkOrderCategory(work_order_category(self.text))
        order = work_orders.create_work_order(
            session=self.session, company_id=self.place.company_id, community_id=self.place.id,
            category=category, description=self.text, building=location.building, unit=location.unit,
            room=location.room, conversation_id=self.conversation.id,
            resident_id=self.conversation.resident_id, case_id=case_id,
        )  # fmt: skip
        self.context = replace(
            self.context, failures=0, topic="报修 维修多久能到",
            awaiting_location=None if location.building else order.id,
        )  # fmt: skip
        reply = replies.work_order_registered(
            order_id=order.id, category=category.value, location=str(location) if location else "",
            promise=REPAIR.promise, needs_location=not location.building,
        )  # fmt: skip
        return TurnResult(reply=reply, action=Action.work_order, work_order_id=order.id, confidence=1.0)

    def complete_location(self, order_id: int, location: Location) -> TurnResult:
        self.context = replace(self.context, awaiting_location=None)
        order = self.session.get(WorkOrder, order_id)
        if order is None:
            return TurnResult(reply="收到。请问需要帮您做什么？", action=Action.clarify)
        work_orders.set_work_order_location(
            session=self.session, order=order, building=location.building, unit=location.unit,
            room=location.room,
        )  # fmt: skip
        return TurnResult(
            reply=replies.location_added(order_id=order.id, location=order.location),
            action=Action.work_order,
            work_order_id=order.id,
            confidence=1.0,
        )

    def emergency(self) -> TurnResult:
        plan = self.plan
        assert plan is not None
        category = plan.emergency or Emergency.life
        case = cases.open_case(
            session=self.session, settings=self.settings, company_id=self.place.company_id,
            community_id=self.place.id, category=CaseCategory.emergency,
            reason=f"emergency:{category.value}", summary=self.summary(),
            conversation_id=self.conversation.id, resident_id=self.conversation.resident_id,
            emergency_kind=category.value,
        )  # fmt: skip
        conversations.hand_over(self.conversation)
        self.context = replace(self.context, failures=0)
        steps = self.assistant.safety_steps(plan)
        reply = replies.emergency(
            category=category, certain=plan.route.action is Action.emergency, case_id=case.id,
            duty_phone=self.place.duty_phone, steps=extract(steps.text, 240) if steps is not None else None,
        )  # fmt: skip
        return TurnResult(
            reply=reply,
            action=Action.emergency,
            citations=[Citation(document=steps.document, section=steps.section, snippet=steps.snippet)]
            if steps is not None
            else [],
            case_id=case.id,
            confidence=1.0,
            emergency=category.value,
            duty_phone=self.place.duty_phone,
        )
