"""The assistant reads: what a resident's message asks (routing, the intent model, retrieval) and
what to say (an answer with its citations, a question back, a hand-over's words).

It is a planner: ``Assistant.plan`` reads a message and returns a decision; it writes nothing.
The flow of a resident's message (channels.flows.message) stores the turn, opens cases and work
orders, and speaks with the assistant's words (assistant.replies). The knowledge base is searched
before anything is written: on SQLite the write lock is held for milliseconds, not an embedding.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant import intent
from assistant.routing import (
    Action,
    Emergency,
    Route,
    is_follow_up,
    parse_location,
    route,
)
from conversations.models import Conversation
from conversations.service import recent
from core.db import get_database
from core.errors import NotFound
from core.settings import Settings
from knowledge.retrieval import DEFAULT_FUSION, Mode, Result, fusion_for, get_search
from knowledge.screening import Official, instruction_like, screen
from knowledge.service import official_facts
from org.models import Community

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
HISTORY_TURNS = 6
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
STEPS_MIN_SCORE = 0.3  # below this the "safety steps" found are not about this emergency


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
class Plan:
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

    def community(self, session: Session, code_or_id: str | int) -> Community:
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

    def plan(
        self,
        session: Session,
        community: Community,
        text: str,
        *,
        topic: str | None = None,
        use_intent: bool = True,
        retrieve: bool = True,
    ) -> Plan:
        """What the message asks and what the assistant would do: the rules, the intent model and
        retrieval, read only. ``topic``: the question answered last (a follow-up is asked about
        it). ``retrieve=False``: a person holds the conversation and only an emergency matters."""
        search = get_search(self.settings)
        decided = route(text)
        try:
            vector: np.ndarray | None = search.embed_query(text)
        except Exception:  # the model could not load or run: words alone still route and retrieve
            log.exception("embeddings unavailable: routing by rules and BM25 only")
            vector = None
        query, query_vector = text, vector
        if decided.action is None and is_follow_up(text) and topic:
            query = f"{topic} {text}"  # "那要多久？" after a repair → the repair's time
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
        return Plan(decided, results, confidence, query, vector, action, emergency, probabilities, official)

    def suggest(self, *, community_id: int, text: str, k: int = 3) -> list[tuple[str, Citation, float]]:
        """Replies an agent may send for the resident's last message: extracts of the best
        passages of the community's knowledge base, each with where it comes from."""
        search = get_search(self.settings)
        with self.database.session(readonly=True) as session:
            place = self.community(session, community_id)
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

    # --- what to say ------------------------------------------------------------------------

    def write_with_llm(
        self, session: Session, conversation: Conversation | None, text: str, plan: Plan
    ) -> str | None:
        """The operator's model writes the answer from the same items (None: use the extract).
        Slow (seconds): called in the read phase, never while holding the database's write lock."""
        from assistant import llm

        history: list[tuple[str, str]] = []
        if conversation is not None:
            said = recent(session, conversation_id=conversation.id, limit=HISTORY_TURNS)
            history = [(m.sender.value, m.text) for m in said]
        return llm.compose_answer(self.settings, text, self._cited(plan), history=history)

    def _cited(self, plan: Plan) -> list[Result]:
        best = plan.results[0]
        return [r for r in plan.results[:3] if r.score >= best.score - CITATION_MARGIN][:2]

    def answer(self, plan: Plan, written: str | None = None) -> TurnResult:
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

    def clarify(self, plan: Plan) -> TurnResult:
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

    def chitchat(self, text: str) -> str:
        if re.search(r"谢|辛苦|赞|专业|帮大忙", text):
            return "不客气，很高兴能帮到您！还有其他问题随时告诉我。"
        if re.search(r"拜拜|再见|晚安", text):
            return "好的，祝您生活愉快，再见！"
        if re.search(r"机器人|你是谁|名字", text):
            return "我是安居物业的智能助手，可以解答物业常见问题、帮您登记报修；需要人工时我会马上为您转接。"
        return "您好！我是安居物业智能助手，请问有什么可以帮您？"

    def safety_steps(self, plan: Plan) -> Result | None:
        """The standards' passage on what to do in this emergency, when one was found."""
        return plan.results[0] if plan.results and plan.results[0].score >= STEPS_MIN_SCORE else None


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
        place = assistant.community(session, community_id)
        for text in customer:
            plan = assistant.plan(session, place, text[:MAX_TEXT_CHARS])
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
