"""The follow-up survey (回访): sent when a case is resolved, the score and comment read from the
resident's next messages (or entered by an agent after a call), a low score sent on to the
supervisors, the marks the resident's chat page shows, and resolved cases closed when nobody
answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import StaffUser
from conversations import service as conversations
from conversations.models import Channel, Conversation, Sender
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.settings import Settings
from escalation.cases import reopen
from escalation.common import add_event, case_changed
from escalation.models import Case, CaseCategory, CaseEventKind, CaseStatus, Survey

SURVEY_TEXT = (
    "【满意度回访】{what}（案件编号 {case_id}）已处理完毕。请您为本次服务打分：回复 1–5 的数字"
    "（5 分非常满意，1 分非常不满意），也可以在数字后写下您的意见。"
)
# What the survey names, so that a resident with two cases knows which one it asks about.
SURVEY_SUBJECT = {CaseCategory.emergency: "您报告的紧急情况", CaseCategory.complaint: "您的投诉"}


def send_survey(
    session: Session, settings: Settings, case: Case, conversation: Conversation
) -> Survey | None:
    """The survey of a resolved case, on the resident's channel; a caller's is taken on a call-back
    (the agent enters the score)."""
    survey = Survey(
        case_id=case.id,
        conversation_id=conversation.id,
        company_id=case.company_id,
        community_id=case.community_id,
        agent_id=case.assignee_id,
        category=case.category,
        channel=conversation.channel.value,
        sent_at=utcnow(),
    )
    session.add(survey)
    session.flush()
    if conversation.channel is Channel.phone:
        add_event(
            session,
            case,
            CaseEventKind.survey_sent,
            "电话渠道：请回电回访并在此录入评分",
            data={"survey_id": survey.id},
        )
        return survey
    conversations.post_message(
        session=session,
        settings=settings,
        conversation=conversation,
        text=SURVEY_TEXT.format(case_id=case.id, what=SURVEY_SUBJECT.get(case.category, "您反映的问题")),
        sender=Sender.system,
        action="survey",
        case_id=case.id,
    )
    conversations.remember(conversation, awaiting_survey=survey.id)
    add_event(
        session, case, CaseEventKind.survey_sent, "已向住户发送满意度回访", data={"survey_id": survey.id}
    )
    return survey


SURVEY_ANSWER = re.compile(
    r"^\s*([1-5１-５一二三四五])\s*(?:分|星|(?=$|[\s,，。.:：、!！]))[\s,，。.:：、!！]*(.*)$", re.S
)
FULLWIDTH = {"１": 1, "２": 2, "３": 3, "４": 4, "５": 5, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5}


def parse_survey_answer(text: str) -> tuple[int, str] | None:
    """'5', '4分 师傅很准时', '１', '二分，太慢了' → (score, comment); anything else → None."""
    match = SURVEY_ANSWER.match(text or "")
    if match is None:
        return None
    digit = match.group(1)
    score = FULLWIDTH.get(digit) or int(digit)
    return score, match.group(2).strip()[:1000]


@dataclass
class SurveyReply:
    reply: str
    reopened: bool
    case_id: int


def answer_survey(
    *, session: Session, settings: Settings, conversation: Conversation, text: str
) -> SurveyReply | None:
    """The messages around a survey. Right after it, a score (with a comment) is stored and a low
    one reopens the case for a supervisor; a low score without a comment asks for one, and the
    next message is kept as the survey's comment; a score sent again once the survey is answered
    (a second tap) is thanked, not routed. Anything else is an ordinary message (None), and the
    survey is no longer awaited, so a later "5" meant as a building number is not taken for a score."""
    before = conversations.context_of(conversation)
    awaiting, commenting, answered = before.awaiting_survey, before.survey_comment, before.survey_answered
    conversations.remember(conversation, awaiting_survey=None, survey_comment=None, survey_answered=None)
    parsed = parse_survey_answer(text)
    if awaiting is not None and parsed is not None:
        survey = session.get(Survey, awaiting)
        if survey is not None and survey.answered_at is None:
            score, comment = parsed
            reply = record_survey(
                session=session, settings=settings, survey=survey, score=score, comment=comment
            )
            low = score <= settings.survey_low_score
            if low and not comment:
                conversations.remember(conversation, survey_comment=survey.id)
                reply += "您也可以直接写下哪里不满意，我们会一并转给主管。"
            else:
                conversations.remember(conversation, survey_answered=survey.id)
            return SurveyReply(reply, low, survey.case_id)
    if commenting is not None and parsed is None and text.strip():
        survey = session.get(Survey, commenting)
        if survey is not None and survey.answered_at is not None and not survey.comment:
            survey.comment = text.strip()[:1000]
            case = session.get(Case, survey.case_id)
            assert case is not None
            if case.active:
                case.waiting_since = case.waiting_since or utcnow()
            add_event(session, case, CaseEventKind.survey_answered, f"回访意见：{survey.comment}",
                      data={"score": survey.score, "comment": True})  # fmt: skip
            case_changed(session, settings, case, "survey")
            conversations.remember(conversation, survey_answered=survey.id)  # a second tap is thanked
            return SurveyReply("已记下您的意见，主管会一并跟进并联系您。", True, survey.case_id)
    earlier = answered or commenting
    if earlier is not None and parsed is not None:
        survey = session.get(Survey, earlier)
        if survey is not None and survey.answered_at is not None:
            return SurveyReply(
                f"您已经为这次服务评过分了（{survey.score} 分），感谢您的评价！", False, survey.case_id
            )
    return None


def record_survey(
    *,
    session: Session,
    settings: Settings,
    survey: Survey,
    score: int,
    comment: str = "",
    actor: StaffUser | None = None,
) -> str:
    if not 1 <= score <= 5:
        raise InvalidInput("评分应为 1–5")
    if survey.answered_at is not None:
        raise Conflict("该回访已有评分")
    survey.score, survey.comment, survey.answered_at = score, comment or None, utcnow()
    case = session.get(Case, survey.case_id)
    assert case is not None
    add_event(
        session,
        case,
        CaseEventKind.survey_answered,
        f"回访评分 {score} 分" + (f"：{comment}" if comment else ""),
        actor=actor,
        data={"score": score},
    )
    if score <= settings.survey_low_score:
        if case.active:
            case.needs_supervisor = True
        else:
            reopen(
                session=session,
                settings=settings,
                user=None,
                case=case,
                for_supervisor=True,
                reason=f"回访评分 {score} 分，已重新打开交主管跟进",
            )
        case_changed(session, settings, case, "survey")
        return f"非常抱歉这次没让您满意。已重新打开案件（编号 {case.id}），主管会亲自跟进并联系您。"
    if case.status is CaseStatus.resolved:
        case.status, case.closed_at = CaseStatus.closed, utcnow()
        add_event(session, case, CaseEventKind.closed, "回访完成，案件关闭")
    case_changed(session, settings, case, "survey")
    return "感谢您的评价！如果还有其他问题，随时在这里告诉我。"


@dataclass(frozen=True)
class ChatMark:
    """What a resident's chat page shows beside a message that names a case: is the case still
    open (the emergency banner stays while it is), an emergency's kind, and for a survey message
    whether it was answered (its buttons are gone) and with what score."""

    case_active: bool
    emergency_kind: str | None = None
    survey_score: int | None = None
    survey_answered: bool = False


def chat_marks(
    *, session: Session, conversation_id: int, messages: list[tuple[int, int, datetime, bool]]
) -> dict[int, ChatMark]:
    """Marks for the messages (id, case id, sent at, is a survey) of one conversation, by message id."""
    case_ids = {case_id for _, case_id, _, _ in messages}
    if not case_ids:
        return {}
    cases = {
        c.id: c
        for c in session.scalars(
            select(Case).where(Case.id.in_(case_ids), Case.conversation_id == conversation_id)
        )
    }
    surveys = list(
        session.scalars(
            select(Survey).where(Survey.conversation_id == conversation_id, Survey.case_id.in_(case_ids))
            .order_by(Survey.id)
        )
    )  # fmt: skip
    marks = {}
    for message_id, case_id, sent_at, is_survey in messages:
        case = cases.get(case_id)
        if case is None:
            continue
        score, answered = None, False
        if is_survey:  # the survey this message carried: the case's last one sent before it
            sent = [s for s in surveys if s.case_id == case_id and s.sent_at <= sent_at]
            if sent:
                score, answered = sent[-1].score, sent[-1].answered_at is not None
        marks[message_id] = ChatMark(case.active, case.emergency_kind, score, answered)
    return marks


def close_unanswered(*, session: Session, settings: Settings, now: datetime | None = None) -> list[int]:
    """Periodic: resolved cases whose survey got no answer within the window are closed."""
    now = now or utcnow()
    stale = session.scalars(
        select(Case)
        .where(
            Case.status == CaseStatus.resolved,
            Case.resolved_at < now - timedelta(hours=settings.survey_close_after_hours),
        )
        .limit(500)
    ).all()
    for case in stale:
        case.status, case.closed_at = CaseStatus.closed, now
        add_event(session, case, CaseEventKind.closed, "回访未获回复，案件自动关闭")
        case_changed(session, settings, case, "closed")
    return [c.id for c in stale]
