"""The chat API and the resident's web chat page (/chat/<community>)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from assistant.schemas import ChatRequest, ChatResponse, CitationOut, HistoryMessage
from assistant.service import Assistant
from channels.models import Channel, Conversation, Message
from core.deps import SessionDep, SettingsDep
from core.errors import NotFound
from org.models import Community

router = APIRouter(tags=["assistant"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "anju" / "templates")

QUICK_QUESTIONS = (
    "物业费怎么交",
    "我要报修",
    "停车月卡怎么办理",
    "装修要办什么手续",
    "门禁卡丢了怎么办",
    "停水停电怎么办",
)


@router.post("/api/chat", response_model=ChatResponse)
def chat(body: ChatRequest, settings: SettingsDep) -> ChatResponse:
    """One turn of the resident assistant (web channel)."""
    result = Assistant(settings).turn(
        community=body.community, session_id=body.session_id, text=body.text, client_id=body.message_id
    )
    return ChatResponse(
        reply=result.reply,
        action=result.action.value,  # type: ignore[arg-type]
        citations=[CitationOut(**c.as_dict()) for c in result.citations],
        confidence=round(result.confidence, 4),
        case_id=result.case_id,
        work_order_id=result.work_order_id,
        conversation_id=result.conversation_id,
        emergency=result.emergency,
        duty_phone=result.duty_phone,
        suggestions=result.suggestions,
    )


@router.get("/api/chat/history", response_model=list[HistoryMessage])
def chat_history(
    session: SessionDep,
    community: str = Query(max_length=64),
    session_id: str = Query(max_length=128),
) -> list[HistoryMessage]:
    """The messages of this web chat session, oldest first (the page restores them on reload)."""
    conversation = session.scalar(
        select(Conversation)
        .join(Community, Community.id == Conversation.community_id)
        .where(
            Community.code == community,
            Conversation.channel == Channel.web,
            Conversation.external_id == session_id,
        )
    )
    if conversation is None:
        return []
    messages = session.scalars(
        select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id)
    ).all()
    return [
        HistoryMessage(
            sender=m.sender.value,  # type: ignore[arg-type]
            text=m.text,
            action=m.action,  # type: ignore[arg-type]
            citations=[CitationOut(**c) for c in m.citations or []],
            created_at=m.created_at.isoformat(),
        )
        for m in messages[-100:]
    ]


@router.get("/chat/{community}", response_class=HTMLResponse, include_in_schema=False)
def chat_page(request: Request, community: str, session: SessionDep) -> HTMLResponse:
    place = session.scalar(select(Community).where(Community.code == community))
    if place is None:
        raise NotFound("找不到该小区")
    return templates.TemplateResponse(
        request,
        "chat.html",
        {"community": place, "quick_questions": QUICK_QUESTIONS},
    )
