"""A resident's answer to a survey (回访): the score, the comment after a low score, a second tap.

Runs inside the message flow, before the assistant's own reading: the message right after a
survey is its answer when it reads as one (escalation.surveys decides and records it)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from assistant.routing import Action
from assistant.service import TurnResult
from conversations.models import Conversation, ConversationContext
from core.settings import Settings
from escalation import surveys


def around_survey(context: ConversationContext) -> bool:
    """A survey was sent, answered with a low score and no comment, or just answered."""
    return any((context.awaiting_survey, context.survey_comment, context.survey_answered))


def answer(
    *, session: Session, settings: Settings, conversation: Conversation, text: str
) -> TurnResult | None:
    """The survey's answer and what the resident is told; None when the message is not one (it is
    then an ordinary message, and the survey is no longer awaited)."""
    survey = surveys.answer_survey(session=session, settings=settings, conversation=conversation, text=text)
    if survey is None:
        return None
    action = Action.human if survey.reopened else Action.chitchat
    return TurnResult(reply=survey.reply, action=action, case_id=survey.case_id, confidence=1.0)
