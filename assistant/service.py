"""One chat turn: store the resident's message once, decide the action, act, store the reply.

The knowledge base is searched before anything is written (on SQLite the write lock is held for
milliseconds, not for an embedding). Hand-offs and work orders go through escalation.service.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assistant import intent
from assistant.routing import (
    Action,
    Emergency,
    Route,
    is_follow_up,
    mostly_location,
    parse_location,
    route,
    work_order_category,
)
from channels.service import resolve_resident
from conversations.models import Channel, Conversation, ConversationState, Message, Sender
from core.db import get_database, utcnow
from core.errors import InvalidInput, NotFound
from core.masking import mask_text
from core.settings import Settings
from escalation import service as escalation
from escalation.models import CaseCategory, WorkOrderCategory
from escalation.sla import REPAIR, case_sla
from knowledge.retrieval import DEFAULT_FUSION, Mode, Result, fusion_for, get_search
from knowledge.screening import Official, instruction_like, screen
from knowledge.service import official_facts
from org.models import Community

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
HISTORY_TURNS = 6
HANDOVER_EXPIRES = timedelta(hours=24)  # a hand-off nobody answered for a day returns to the assistant
# Below the fused score of knowledge.retrieval.Fusion.answer_threshold (per embeddings model,
# calibrated by bench/routing_cv.py) the assistant asks back instead of answering.
ANSWER_THRESHOLD = DEFAULT_FUSION.answer_threshold
# A passage answers only when it is this close to the best item (others are shown as citations).
CITATION_MARGIN = 0.08
EXTRACT_CHARS = 200

# Searched for the safety steps of an emergency (the standards' own words for each category).
EMERGENCY_QUERIES: dict[Emergency, str] = {
    Emergency.fire: "火灾 着火 住户 自救 疏散 119",
    Emergency.lift: "电梯困人 被困在电梯里 住户 自救 警铃",
    Emergency.gas: "燃气泄漏 煤气味 关闭阀门 开窗 通风",
    Emergency.power: "停电 突然停电 住户 应对",
    Emergency.water_cut: "停水 突然停水 住户 应对",
    Emergency.flooding: "水浸 漏水 淹 关闭总阀 切断电源",
    Emergency.security: "盗窃 治安 报警 110 住户",
    Emergency.crowd: "群体性事件 聚集 住户 远离",
    Emergency.disaster: "恶劣天气 台风 暴雨 自然灾害 住户",
    Emergency.falling: "高空坠物 住户 远离",
    Emergency.epidemic: "公共卫生 防疫 传染病 住户",
    Emergency.explosive: "可疑物品 防爆 防恐 住户 远离 报警",
    Emergency.life: "人员受伤 突发疾病 120 住户",
}
# Categories where the national number comes before everything else.
CALL_FIRST = {Emergency.fire, Emergency.gas, Emergency.life, Emergency.explosive}
STEPS_MIN_SCORE = 0.3  # below this the "safety steps" found are not about this emergency
NATIONAL_NUMBERS: dict[Emergency, str] = {
    Emergency.fire: "119",
    Emergency.gas: "119",
    Emergency.security: "110",
    Emergency.crowd: "110",
    Emergency.explosive: "110",
    Emergency.life: "120",
    Emergency.epidemic: "120",
}


@dataclass
class Citation:
    document: str
    section: str
    snippet: str

    def as_dict(self) -> dict[str, str]:
        return {"document": self.document, "section": self.section, "snippet": self.snippet}


@dataclass
class TurnResult:
    reply: str
    action: Action
    citations: list[Citation] = field(default_factory=list)
    confidence: float = 0.0
    case_id: int | None = None
    work_order_id: int | None = None
    conversation_id: int = 0
    message_id: int = 0
    emergency: str | None = None
    duty_phone: str | None = None
    suggestions: list[str] = field(default_factory=list)


def _citation(result: Result) -> Citation:
    return Citation(document=result.document, section=result.section, snippet=result.snippet)


def extract(text: str, limit: int = EXTRACT_CHARS) -> str:
    """A short readable extract: whole sentences up to the limit."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    sentences = re.findall(r"[^。；;！!？?]+[。；;！!？?]?", text)
    out = ""
    for sentence in sentences:
        if out and len(out) + len(sentence) > limit:
            break
        out += sentence
    return out if len(out) <= limit else out[: limit - 1] + "…"


# Said instead of an answer whose every sentence was held back (knowledge.screening).
NOT_SURE = "抱歉，这个问题我暂时无法准确回答。您可以换个说法，或回复“转人工”由客服为您解答。"


def screened_results(results: list[Result], official: Official) -> list[Result]:
    """The results with what a resident may not be shown taken out (knowledge.screening): a passage
    that speaks to the assistant is not used at all; other held sentences are cut from the text."""
    kept = []
    for result in results:
        where = f"{result.kind} {result.item_id}"
        if instruction_like(result.document) or instruction_like(result.section):
            log.warning("knowledge %s not used: instruction-like title or heading", where)
            continue
        screened = screen(result.text, None if result.kind == "faq" else official)
        if screened.instructions or not screened.text.strip():
            log.warning("knowledge %s not used: %s", where, screened.held[0].reason.value)
            continue
        if screened.held:
            log.info("knowledge %s: %d sentence(s) held back (%s)", where, len(screened.held),
                     ", ".join(sorted({h.reason.name for h in screened.held})))  # fmt: skip
            result = replace(result, text=screened.text)
        kept.append(result)
    return kept


def shown(result: TurnResult, official: Official) -> TurnResult:
    """The one filter on what leaves the assistant, applied last, whichever way the reply was made
    (extract, FAQ, the LLM, the extract it fell back to, emergency steps): what knowledge.screening
    holds back never reaches the resident, nor the agent's drafts."""
    reply = screen(result.reply, official)
    action, citations = result.action, result.citations
    text = reply.text
    if reply.held:
        log.warning("reply held back %d sentence(s): %s", len(reply.held),
                    ", ".join(sorted({h.reason.name for h in reply.held})))  # fmt: skip
        if action is Action.answer and len(re.sub(r"^根据《[^》]*》[^：]*：|\W", "", text)) < 4:
            text, action, citations = NOT_SURE, Action.clarify, []
    kept = []
    for citation in citations:
        if instruction_like(citation.document) or instruction_like(citation.section):
            continue
        snippet = screen(citation.snippet, official)
        if snippet.instructions or not snippet.text.strip():
            continue
        kept.append(replace(citation, snippet=snippet.text))
    suggestions = [s for s in result.suggestions if not screen(s, official).held]
    return replace(result, reply=text, action=action, citations=kept, suggestions=suggestions)


@dataclass
class _Plan:
    """What was decided in the read phase, before anything is written."""

    route: Route
    results: list[Result]
    confidence: float
    query: str
    vector: np.ndarray | None
    action: Action
    emergency: Emergency | None = None
    intent: dict[str, float] | None = None
    official: Official | None = None  # what the reply may state as fact (knowledge.screening)


# The intent model's say (calibrated by cross-validation, bench/routing_cv.py): it raises an
# emergency the rules did not see at this probability, and decides other actions at this one.
# Chosen by cross-validation (bench/routing_cv.py, docs/BENCHMARKS.md). 2026-12-07, 1,115 utterances
# with the register sets: 0.2 finds 97.8% of emergencies with 33 of 892 others treated as one, 0.25
# 97.3% with 30, 0.3 96.4% with 28, 0.5 96.4% with 16. A missed emergency costs more; emergencies
# only the model sees are worded as "可能有危险".
EMERGENCY_PROBABILITY = 0.2  # recall first: the highest recall of the sweep
DEFUSED_EMERGENCY_PROBABILITY = 0.8
STATEMENT_EMERGENCY_PROBABILITY = 0.4
OVERRULE_EMERGENCY_PROBABILITY = 0.6
INTENT_PROBABILITY = 0.6


def decide(
    route: Route,
    confidence: float,
    intent: dict[str, float] | None,
    *,
    emergency_probability: float | None = None,
    intent_probability: float | None = None,
    answer_threshold: float = ANSWER_THRESHOLD,
) -> Action:
    """The turn's action from the rules, the intent model and the retrieval confidence.

    Emergencies first and by either opinion (a missed emergency costs more than a false alarm);
    then the rules' action; then the model's, when it is sure; a question is answered only when
    retrieval is confident, and otherwise asked back.
    """
    if route.action is Action.emergency:
        return Action.emergency
    emergency_probability = emergency_probability or EMERGENCY_PROBABILITY
    intent_probability = intent_probability or INTENT_PROBABILITY
    # The rules read the danger words of a letter and found them describing the past or a risk: the
    # model, which sees words but not tense, must be sure to overrule them.
    if intent is not None:
        if route.defused or route.hazard is not None:
            needed = max(DEFUSED_EMERGENCY_PROBABILITY, emergency_probability)
        elif route.substantial and not route.urgent:
            # a whole letter in which the rules found no danger and no haste: the model was
            # trained mostly on chat messages and reads a long noise complaint as alarm
            needed = max(DEFUSED_EMERGENCY_PROBABILITY, emergency_probability)
        elif (route.statement or route.told) and route.action is None:  # it tells, with no danger now
            needed = max(STATEMENT_EMERGENCY_PROBABILITY, emergency_probability)
        elif route.action is not None or route.substantial:  # a repair, a complaint…: only if sure
            needed = max(OVERRULE_EMERGENCY_PROBABILITY, emergency_probability)
        else:
            needed = emergency_probability
        if intent["emergency"] >= needed:
            return Action.emergency
    if route.action is not None:
        return route.action
    if intent is not None and not route.substantial:
        best = max(intent, key=lambda k: intent[k])
        if best in ("work_order", "human", "chitchat") and intent[best] >= intent_probability:
            return Action(best)
        if (
            best == "clarify"
            and not route.statement
            and intent[best] >= intent_probability
            and confidence < answer_threshold + 0.15
        ):
            return Action.clarify
    if route.statement:
        return Action.human  # it asks nothing we could look up: a person reads it
    if confidence >= answer_threshold:
        return Action.answer
    # Someone who wrote a letter is not asked to rephrase it: a person reads what we cannot answer.
    return Action.human if route.substantial else Action.clarify


_category_vectors: dict[Emergency, np.ndarray] = {}


class Assistant:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = get_database(settings)

    # --- reading ---------------------------------------------------------------------------

    def _community(self, session: Session, code_or_id: str | int) -> Community:
        stmt = select(Community)
        stmt = (
            stmt.where(Community.id == code_or_id)
            if isinstance(code_or_id, int)
            else stmt.where(Community.code == code_or_id)
        )
        community = session.scalar(stmt)
        if community is None:
            raise NotFound("找不到该小区")
        return community

    def _plan(
        self,
        session: Session,
        community: Community,
        text: str,
        context: dict[str, Any],
        *,
        use_intent: bool = True,
        retrieve: bool = True,
    ) -> _Plan:
        search = get_search(self.settings)
        decided = route(text)
        try:
            vector: np.ndarray | None = search.embed_query(text)
        except Exception:  # the model could not load or run: words alone still route and retrieve
            log.exception("embeddings unavailable: routing by rules and BM25 only")
            vector = None
        query, query_vector = text, vector
        if decided.action is None and is_follow_up(text) and context.get("topic"):
            query = f"{context['topic']} {text}"  # "那要多久？" after a repair → the repair's time
            query_vector = search.embed_query(query) if vector is not None else None
        mode: Mode = "hybrid" if vector is not None else "bm25"
        # A person holds the conversation: nothing will be answered from the knowledge base, only
        # an emergency still matters (rules and the intent model see it without retrieval).
        official = official_facts(session, community.company_id)
        results = [] if not retrieve else search.search(
            session, company_id=community.company_id, community_id=community.id, query=query, k=5,
            query_vector=query_vector, mode=mode,
        )  # fmt: skip
        results = screened_results(results, official)
        calibration = fusion_for(search.encoder.name)
        results = calibration.supported(results)
        confidence = results[0].score if results else 0.0
        probabilities = None
        if use_intent and vector is not None:
            probabilities = intent.model_for(search.encoder).probabilities(vector, text)
        action = decide(decided, confidence, probabilities, answer_threshold=calibration.answer_threshold)
        emergency = None
        if action is Action.emergency:
            emergency = decided.emergency or (
                self._nearest_emergency(vector) if vector is not None else Emergency.life
            )
            results = search.search(
                session, company_id=community.company_id, community_id=community.id,
                query=EMERGENCY_QUERIES[emergency], k=3, mode=mode,
            )  # fmt: skip
            results = screened_results(results, official)
        return _Plan(decided, results, confidence, query, vector, action, emergency, probabilities, official)

    def suggest(self, *, community_id: int, text: str, k: int = 3) -> list[tuple[str, Citation, float]]:
        """Replies an agent may send for the resident's last message: extracts of the best
        passages of the community's knowledge base, each with where it comes from."""
        search = get_search(self.settings)
        with self.database.session(readonly=True) as session:
            place = self._community(session, community_id)
            try:
                vector: np.ndarray | None = search.embed_query(text)
            except Exception:
                vector = None
            results = search.search(
                session, company_id=place.company_id, community_id=place.id, query=text, k=k,
                query_vector=vector, mode="hybrid" if vector is not None else "bm25",
            )  # fmt: skip
            official = official_facts(session, place.company_id)
        drafts = []
        for r in screened_results(results, official):
            # An agent sends a draft to the resident as it is: the same last filter as a reply.
            draft = shown(TurnResult(extract(r.text, 240), Action.answer, [_citation(r)]), official)
            if draft.action is Action.answer:
                drafts.append((draft.reply, (draft.citations or [_citation(r)])[0], round(float(r.score), 4)))
        return drafts

    def _nearest_emergency(self, vector: np.ndarray) -> Emergency:
        """The category of an emergency the rules did not name: the closest category description."""
        search = get_search(self.settings)
        if not _category_vectors:
            names = list(EMERGENCY_QUERIES)
            vectors = np.asarray(search.encoder.embed_queries([EMERGENCY_QUERIES[n] for n in names]))
            _category_vectors.update(
                zip(names, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), strict=True)
            )
        return max(_category_vectors, key=lambda n: float(_category_vectors[n] @ vector))

    # --- the turn --------------------------------------------------------------------------

    def turn(
        self,
        *,
        community: str | int,
        session_id: str,
        text: str,
        channel: Channel = Channel.web,
        client_id: str | None = None,
    ) -> TurnResult:
        text = (text or "").strip()
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"消息太长了，请控制在 {MAX_TEXT_CHARS} 字以内")
        session_id = (session_id or "").strip()
        if not session_id or len(session_id) > 128:
            raise InvalidInput("缺少会话编号 session_id")

        with self.database.session(readonly=True) as session:
            place = self._community(session, community)
            known = session.scalar(
                select(Conversation).where(
                    Conversation.community_id == place.id,
                    Conversation.channel == channel,
                    Conversation.external_id == session_id,
                )
            )
            if known is not None and client_id:
                earlier = self._answered(session, known.id, client_id)
                if earlier is not None:
                    return earlier  # the same message sent again: the same reply, nothing new stored
            context = dict(known.context or {}) if known is not None else {}
            held = (
                known is not None
                and known.state is ConversationState.human
                and utcnow() - known.last_message_at <= HANDOVER_EXPIRES
            )
            plan = self._plan(session, place, text, context, retrieve=not held) if text else None
            written = None
            if (
                plan is not None
                and plan.action is Action.answer
                and plan.results
                and self.settings.llm_base_url
            ):
                # Slow (seconds): done here, never while holding the database's write lock.
                written = self._write_with_llm(session, known, text, plan)

        for attempt in range(2):
            try:
                with self.database.session() as session:
                    return self._store_turn(
                        session, place.id, channel, session_id, client_id, text, plan, written
                    )
            except IntegrityError:
                # A concurrent request stored the same conversation or the same message first: the
                # second attempt finds it (and, for the same message, returns its reply).
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _store_turn(
        self,
        session: Session,
        community_id: int,
        channel: Channel,
        session_id: str,
        client_id: str | None,
        text: str,
        plan: _Plan | None,
        written: str | None,
    ) -> TurnResult:
        place = session.get(Community, community_id)
        if place is None:
            raise NotFound("找不到该小区")
        conversation = self._conversation(session, place, channel, session_id)
        if client_id:
            earlier = self._answered(session, conversation.id, client_id)
            if earlier is not None:
                return earlier
        inbound = Message(
            conversation_id=conversation.id, sender=Sender.resident, text=text or "", client_id=client_id
        )
        session.add(inbound)
        session.flush()
        now = utcnow()
        if (
            conversation.state is ConversationState.human
            and now - conversation.last_message_at > HANDOVER_EXPIRES
        ):
            conversation.state = ConversationState.assistant  # a day of silence: the assistant is back
        conversation.last_message_at = now
        context = dict(conversation.context or {})
        held = conversation.state is ConversationState.human  # decided now, not from the read snapshot
        survey = None
        around_survey = {"awaiting_survey", "survey_comment", "survey_answered"} & set(context)
        if plan is not None and around_survey and plan.action is not Action.emergency:
            survey = escalation.answer_survey(
                session=session, settings=self.settings, conversation=conversation, text=text
            )
            context = dict(conversation.context or {})  # the survey is no longer awaited either way
            held = conversation.state is ConversationState.human  # a low score hands it back to a person
        if plan is None:
            result = TurnResult(
                reply="您好像还没有输入内容，请直接告诉我您遇到的问题～", action=Action.clarify
            )
        elif survey is not None:
            action = Action.human if survey.reopened else Action.chitchat
            result = TurnResult(reply=survey.reply, action=action, case_id=survey.case_id, confidence=1.0)
        elif held and plan.action is not Action.emergency:
            result = self._while_held(session, conversation, context, text, plan)
        else:
            result = self._act(session, place, conversation, context, text, plan, written)
        conversation.context = context
        result.conversation_id = conversation.id
        if not result.reply:  # a person holds the conversation: the assistant stays silent
            return result
        # Last, before the reply is kept and sent: the one filter on what a resident may read.
        official = plan.official if plan is not None else None
        result = shown(result, official or official_facts(session, place.company_id))
        reply = Message(
            conversation_id=conversation.id,
            sender=Sender.assistant,
            text=result.reply,
            action=result.action.value,
            citations=[c.as_dict() for c in result.citations],
            confidence=round(result.confidence, 4),
            case_id=result.case_id,
            work_order_id=result.work_order_id,
            reply_to_id=inbound.id,
        )
        session.add(reply)
        session.flush()
        result.message_id = reply.id
        result.duty_phone = result.duty_phone or (
            place.duty_phone if result.action is Action.emergency else None
        )
        log.info("chat turn %s in conversation %s: %s (%.2f) for %r", reply.id, conversation.id,
                 result.action.value, result.confidence, mask_text(text)[:80])  # fmt: skip
        return result

    def _conversation(
        self, session: Session, place: Community, channel: Channel, session_id: str
    ) -> Conversation:
        def find() -> Conversation | None:
            # FOR UPDATE: turns of one conversation are stored one after another (PostgreSQL; SQLite
            # writers are serialised already), so context and hand-offs are never overwritten.
            return session.scalar(
                select(Conversation)
                .where(
                    Conversation.community_id == place.id,
                    Conversation.channel == channel,
                    Conversation.external_id == session_id,
                )
                .with_for_update()
            )

        conversation = find()
        if conversation is None:
            conversation = Conversation(company_id=place.company_id, community_id=place.id, channel=channel,
                                        external_id=session_id, context={})  # fmt: skip
            session.add(conversation)
            session.flush()
        if conversation.resident_id is None:  # new, or the directory has learnt this id since
            conversation.resident_id = resolve_resident(session, place.id, channel, session_id)
        return conversation

    def _answered(self, session: Session, conversation_id: int, client_id: str) -> TurnResult | None:
        inbound = session.scalar(
            select(Message).where(Message.conversation_id == conversation_id, Message.client_id == client_id)
        )
        if inbound is None:
            return None
        reply = session.scalar(select(Message).where(Message.reply_to_id == inbound.id))
        if reply is None:  # stored while a person held the conversation: nothing was said
            return TurnResult(reply="", action=Action.human, conversation_id=conversation_id)
        action = Action(reply.action or "clarify")
        emergency = duty_phone = None
        if action is Action.emergency:  # the same reply as the first time, emergency details included
            from escalation.models import Case

            case = session.get(Case, reply.case_id) if reply.case_id else None
            emergency = case.emergency_kind if case is not None else None
            conversation = session.get(Conversation, conversation_id)
            place = session.get(Community, conversation.community_id) if conversation else None
            duty_phone = place.duty_phone if place else None
        return TurnResult(
            reply=reply.text,
            action=action,
            citations=[Citation(**c) for c in reply.citations or []],
            confidence=reply.confidence or 0.0,
            case_id=reply.case_id,
            work_order_id=reply.work_order_id,
            conversation_id=conversation_id,
            message_id=reply.id,
            emergency=emergency,
            duty_phone=duty_phone,
        )

    def history(self, session: Session, conversation_id: int) -> list[Message]:
        return list(
            session.scalars(
                select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
            )
        )

    def _summary(self, session: Session, conversation: Conversation, text: str) -> str:
        lines = []
        for message in self.history(session, conversation.id)[-HISTORY_TURNS * 2 :]:
            who = {"resident": "住户", "assistant": "助手", "agent": "客服", "system": "系统"}[
                message.sender.value
            ]
            lines.append(f"{who}：{message.text}")
        if not lines or not lines[-1].endswith(text):
            lines.append(f"住户：{text}")
        return "\n".join(lines)

    # --- actions ---------------------------------------------------------------------------

    def _act(
        self,
        session: Session,
        place: Community,
        conversation: Conversation,
        context: dict[str, Any],
        text: str,
        plan: _Plan,
        written: str | None = None,
    ) -> TurnResult:
        action = plan.action
        # A location given after a work order that lacked one completes it.
        pending = context.get("awaiting_location")
        location = parse_location(text)
        if (
            pending
            and location
            and action in (Action.answer, Action.clarify)
            and mostly_location(text, location)
        ):
            return self._complete_location(session, context, int(pending), location)

        if action is Action.emergency:
            return self._emergency(session, place, conversation, context, text, plan)
        if action is Action.human:
            handed = self._hand_over(
                session, place, conversation, context, text, plan.route.reason or "intent",
                hazard=plan.route.hazard.value if plan.route.hazard else None,
            )  # fmt: skip
            if not (plan.route.repair and plan.route.action is Action.human):
                return handed
            # A repair asked for inside a complaint or a hazard report: the work order starts now,
            # on the case, and the person who takes the case answers the rest.
            order = self._work_order(
                session, place, conversation, context, text, plan, case_id=handed.case_id
            )
            context.pop("awaiting_location", None)  # the agent asks for what is missing
            return replace(
                handed,
                reply=f"已为您登记报修工单（编号 {order.work_order_id}），维修师傅会跟进。{handed.reply}",
                work_order_id=order.work_order_id,
            )
        if action is Action.work_order:
            return self._work_order(session, place, conversation, context, text, plan)
        if action is Action.chitchat:
            context["failures"] = 0
            return TurnResult(reply=self._chitchat(text), action=Action.chitchat)

        if action is Action.answer and plan.results:
            context["failures"] = 0
            context["topic"] = plan.query[:200]
            return self._answer(plan, written)

        failures = int(context.get("failures", 0)) + (0 if plan.route.vague else 1)
        context["failures"] = failures
        if failures >= 2:
            context["failures"] = 0
            return self._hand_over(session, place, conversation, context, text, "assistant failed twice")
        return self._clarify(plan)

    def _write_with_llm(
        self, session: Session, conversation: Conversation | None, text: str, plan: _Plan
    ) -> str | None:
        """The operator's model writes the answer from the same items (None: use the extract)."""
        from assistant import llm

        history: list[tuple[str, str]] = []
        if conversation is not None:
            recent = session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation.id)
                .order_by(Message.id.desc())
                .limit(HISTORY_TURNS)
            ).all()
            history = [(m.sender.value, m.text) for m in reversed(recent)]
        return llm.compose_answer(self.settings, text, self._cited(plan), history=history)

    def _cited(self, plan: _Plan) -> list[Result]:
        best = plan.results[0]
        return [r for r in plan.results[:3] if r.score >= best.score - CITATION_MARGIN][:2]

    def _answer(self, plan: _Plan, written: str | None = None) -> TurnResult:
        best = plan.results[0]
        close = self._cited(plan)
        if written:
            reply = written
        elif best.kind == "faq":
            reply = best.text
            close = close[:1]
        else:
            heading = best.section.split(" › ")[-1] if best.section else ""
            where = f"《{best.document}》{heading}" if heading else f"《{best.document}》"
            reply = f"根据{where}：{extract(best.text)}"
        citations = [_citation(r) for r in close]
        return TurnResult(reply=reply, action=Action.answer, citations=citations, confidence=plan.confidence)

    def _clarify(self, plan: _Plan) -> TurnResult:
        options = []
        for r in plan.results[:3]:
            label = r.section if r.kind == "faq" else r.section.split(" › ")[-1]
            if label and label not in options:
                options.append(label)
        if options and not plan.route.vague:
            reply = "我不太确定您想问的是哪一项，您可以点选或换个说法：\n" + "\n".join(
                f"· {o}" for o in options
            )
        else:
            reply = (
                "能再具体说说吗？比如：物业费怎么交、报修、停车月卡、装修手续；"
                "遇到紧急情况请直接说明发生了什么。"
            )
        return TurnResult(reply=reply, action=Action.clarify, confidence=plan.confidence, suggestions=options)

    def _chitchat(self, text: str) -> str:
        if re.search(r"谢|辛苦|赞|专业|帮大忙", text):
            return "不客气，很高兴能帮到您！还有其他问题随时告诉我。"
        if re.search(r"拜拜|再见|晚安", text):
            return "好的，祝您生活愉快，再见！"
        if re.search(r"机器人|你是谁|名字", text):
            return "我是安居物业的智能助手，可以解答物业常见问题、帮您登记报修；需要人工时我会马上为您转接。"
        return "您好！我是安居物业智能助手，请问有什么可以帮您？"

    def _hand_over(
        self,
        session: Session,
        place: Community,
        conversation: Conversation,
        context: dict[str, Any],
        text: str,
        reason: str,
        *,
        hazard: str | None = None,
    ) -> TurnResult:
        complaint = (
            hazard is not None
            or reason.startswith("complaint")
            or bool(re.search(r"投诉|不作为|曝光|12345|举报|退钱|退费", text))
        )
        dispute = bool(re.search(r"邻居|楼上|楼下|隔壁|对门", text))
        category = CaseCategory.complaint if complaint else CaseCategory.inquiry
        case = escalation.open_case(
            session=session, settings=self.settings, company_id=place.company_id, community_id=place.id,
            category=category,
            reason=reason, summary=self._summary(session, conversation, text),
            conversation_id=conversation.id,
            resident_id=conversation.resident_id, dispute=dispute, hazard=hazard,
        )  # fmt: skip
        conversation.state = ConversationState.human
        context["failures"] = 0
        promise = case_sla(category, dispute=dispute).promise
        if hazard:
            phone = f"值班电话 {place.duty_phone}" if place.duty_phone else "小区值班电话"
            reply = (
                f"您反映的安全隐患（{hazard}）已按紧急转给人工客服（案件编号 {case.id}），"
                "客服会尽快联系您核实并安排处理。"
                f"如果现在就有危险（有人被困、起火、燃气味、进水等），请立即拨打{phone}。"
            )
        elif complaint:
            reply = f"非常抱歉给您带来不好的体验。已为您转接人工客服（案件编号 {case.id}），{promise}。"
        elif reason == "assistant failed twice":
            reply = (
                f"抱歉没能帮到您，已为您转接人工客服（案件编号 {case.id}），{promise}。"
                "您之前说的内容客服都能看到，不用再重复。"
            )
        else:
            reply = (
                f"好的，已为您转接人工客服（案件编号 {case.id}），{promise}。"
                "您之前说的内容客服都能看到，不用再重复。"
            )
        return TurnResult(reply=reply, action=Action.human, case_id=case.id, confidence=1.0)

    def _while_held(
        self, session: Session, conversation: Conversation, context: dict[str, Any], text: str, plan: _Plan
    ) -> TurnResult:
        """A person holds the conversation: the message joins its newest open case, and the
        assistant stays out of the way. Until an agent has taken the case it says once that the
        message was passed on; after that, and once an agent holds the case, it is silent."""
        chitchat = plan.action is Action.chitchat
        complaint = plan.action is Action.human and plan.route.reason.startswith(("complaint", "hazard"))
        case = escalation.open_case(
            session=session, settings=self.settings, company_id=conversation.company_id,
            community_id=conversation.community_id,
            category=CaseCategory.complaint if complaint else CaseCategory.inquiry, reason="follow-up",
            summary=f"住户：{text}", conversation_id=conversation.id, resident_id=conversation.resident_id,
            waiting=not chitchat, hazard=plan.route.hazard.value if plan.route.hazard else None,
        )  # fmt: skip
        silent = TurnResult(reply="", action=Action.human, case_id=case.id, confidence=1.0)
        if case.assignee_id is not None or context.get("acknowledged") == case.id:
            return silent
        context["acknowledged"] = case.id
        if chitchat:
            return replace(silent, reply="好的，客服看到后会回复您。")
        reply = "已收到，您的消息已转给人工客服，请稍候。"
        if case.category is CaseCategory.emergency:
            place = session.get(Community, conversation.community_id)
            phone = f"情况危急请直接拨打值班电话 {place.duty_phone}。" if place and place.duty_phone else ""
            reply = f"已补充到紧急事件（编号 {case.id}）。请保持电话畅通，{phone}"
        return replace(silent, reply=reply)

    def _work_order(
        self,
        session: Session,
        place: Community,
        conversation: Conversation,
        context: dict[str, Any],
        text: str,
        plan: _Plan,
        case_id: int | None = None,
    ) -> TurnResult:
        location = parse_location(text)
        category = WorkOrderCategory(work_order_category(text))
        order = escalation.create_work_order(
            session=session, company_id=place.company_id, community_id=place.id, category=category,
            description=text, building=location.building, unit=location.unit, room=location.room,
            conversation_id=conversation.id, resident_id=conversation.resident_id, case_id=case_id,
        )  # fmt: skip
        context["failures"] = 0
        context["topic"] = "报修 维修多久能到"
        where = f" · {location}" if location else ""
        reply = f"已为您登记报修工单（编号 {order.id}，{category.value}{where}）。{REPAIR.promise}。"
        if not location.building:
            context["awaiting_location"] = order.id
            reply += "请告诉我具体位置（几栋几单元几号），方便师傅上门。"
        else:
            context.pop("awaiting_location", None)
        return TurnResult(reply=reply, action=Action.work_order, work_order_id=order.id, confidence=1.0)

    def _complete_location(
        self, session: Session, context: dict[str, Any], order_id: int, location: Any
    ) -> TurnResult:
        from escalation.models import WorkOrder

        order = session.get(WorkOrder, order_id)
        context.pop("awaiting_location", None)
        if order is None:
            return TurnResult(reply="收到。请问需要帮您做什么？", action=Action.clarify)
        escalation.set_work_order_location(
            session=session, order=order, building=location.building, unit=location.unit, room=location.room
        )
        return TurnResult(
            reply=f"好的，已把位置（{order.location}）补充到工单 {order.id}，师傅会按这个地址上门。",
            action=Action.work_order,
            work_order_id=order.id,
            confidence=1.0,
        )

    def _emergency(
        self,
        session: Session,
        place: Community,
        conversation: Conversation,
        context: dict[str, Any],
        text: str,
        plan: _Plan,
    ) -> TurnResult:
        category = plan.emergency or Emergency.life
        case = escalation.open_case(
            session=session, settings=self.settings, company_id=place.company_id, community_id=place.id,
            category=CaseCategory.emergency, reason=f"emergency:{category.value}",
            summary=self._summary(session, conversation, text), conversation_id=conversation.id,
            resident_id=conversation.resident_id, emergency_kind=category.value,
        )  # fmt: skip
        conversation.state = ConversationState.human
        context["failures"] = 0
        steps = plan.results[0] if plan.results and plan.results[0].score >= STEPS_MIN_SCORE else None
        certain = plan.route.action is Action.emergency  # the rules saw it; otherwise only the model did
        lines = [f"⚠️ 紧急情况（{category.value}）" if certain else "⚠️ 您描述的情况可能有危险"]
        # open_case pages the duty chain; the resident's own call to the duty phone is still the
        # fastest way to a person, so it comes first.
        national = NATIONAL_NUMBERS.get(category)
        if national and category in CALL_FIRST:
            lines.append(f"请立即拨打 {national}。")
        if place.duty_phone:
            lines.append(f"请马上拨打小区 24 小时值班电话 {place.duty_phone}，这是最快找到值班人员的方式。")
        if national and category not in CALL_FIRST:
            lines.append(f"需要报警或急救时请拨打 {national}。")
        if steps is not None:
            lines.append(f"同时请这样做：{extract(steps.text, 240)}")
        else:
            lines.append("请先保证自身安全，远离危险区域。")
        lines.append(
            f"我已登记为紧急事件（编号 {case.id}）。"
            "请告诉我具体位置（几栋几单元几号）和您的联系电话，我会补充进去。"
        )
        return TurnResult(
            reply="\n".join(lines),
            action=Action.emergency,
            citations=[_citation(steps)] if steps is not None else [],
            case_id=case.id,
            confidence=1.0,
            emergency=category.value,
            duty_phone=place.duty_phone,
        )


# --- phone calls -------------------------------------------------------------------------------

# The agent said the resident will be called again, or the resident asked for it.
AGENT_PROMISED_CALLBACK = re.compile(
    r"(给您|再给您|稍后|晚点|尽快|马上|核实|查一下|确认).{0,12}(回电|回个?电话|打过来|打给您|联系您|回复您|答复您)"
    r"|回电给您|电话(联系|回复|答复)您"
)
RESIDENT_ASKED_CALLBACK = re.compile(r"回(个)?电话|给我回电|回电给我|打给我|联系我|回复我")


@dataclass
class CallReview:
    """What a finished call asks of the company: found in the caller's own words."""

    emergency: Emergency | None = None
    emergency_line: str = ""
    complaint: str | None = None  # the line that made it a complaint
    dispute: bool = False
    repairs: list[str] = field(default_factory=list)
    location: Any = None
    promised_callback: bool = False
    asked_callback: bool = False
    hazard: Emergency | None = None  # a danger the caller described, not happening now (安全隐患)


def review_call(settings: Settings, community_id: int, lines: list[tuple[str, str]]) -> CallReview:
    """Read a call (speaker, text) with the assistant's own routing, line by line of the caller.
    A wish to talk to a person means nothing here: the caller was talking to one."""
    assistant = Assistant(settings)
    review = CallReview()
    customer = [text for speaker, text in lines if speaker == "customer"]
    with assistant.database.session(readonly=True) as session:
        place = assistant._community(session, community_id)
        for text in customer:
            plan = assistant._plan(session, place, text[:MAX_TEXT_CHARS], {})
            if plan.action is Action.emergency:
                if review.emergency is None:
                    review.emergency = plan.emergency or Emergency.life
                    review.emergency_line = text
                continue
            if plan.action is Action.work_order or (plan.action is Action.human and plan.route.repair):
                review.repairs.append(text)
            if plan.action is Action.human and plan.route.hazard is not None:
                review.hazard = review.hazard or plan.route.hazard
                review.complaint = review.complaint or text
            elif plan.action is Action.human and (
                plan.route.reason.startswith(("complaint", "letter"))
                or re.search(r"投诉|不作为|曝光|12345|举报", text)
            ):
                review.complaint = review.complaint or text
                review.dispute = review.dispute or bool(re.search(r"邻居|楼上|楼下|隔壁|对门", text))
    review.location = parse_location(" ".join(customer))
    review.promised_callback = any(
        AGENT_PROMISED_CALLBACK.search(text) for speaker, text in lines if speaker == "agent"
    )
    review.asked_callback = any(RESIDENT_ASKED_CALLBACK.search(text) for text in customer)
    return review
