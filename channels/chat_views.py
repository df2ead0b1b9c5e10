"""The web chat channel: its API (/api/chat, the history, the live stream) and the resident's chat
page (/chat/<community>). A message goes through the same intake as every channel."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from redis import Redis
from sqlalchemy import select

from accounts.views import client_address
from assistant import limits
from assistant.schemas import ChatRequest, ChatResponse, CitationOut, HistoryMessage
from channels import batching
from channels import service as intake
from conversations.models import Channel, Conversation, Message
from core.db import get_database
from core.deps import RedisDep, SessionDep, SettingsDep
from core.errors import NotFound
from core.live import conversation_topic, stream
from core.routing import CommittingRoute
from core.settings import Settings
from escalation import surveys
from org.models import Community

router = APIRouter(tags=["assistant"], route_class=CommittingRoute)  # the tag the API docs know it by
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
async def chat(body: ChatRequest, request: Request, settings: SettingsDep, redis: RedisDep) -> ChatResponse:
    """One turn of the resident assistant (web channel). Limited per session and per client
    address, so nobody can flood the company with cases and work orders, except that an emergency
    is never refused (assistant.limits); a refusal names the duty phone. With an LLM the turn
    waits seconds for it: it runs on threads of its own, not the ones every other view shares."""
    address = client_address(request)
    limiter = getattr(request.app.state, "llm_limiter", None) if settings.llm_base_url else None
    if limiter is None:
        return await run_in_threadpool(_chat_turn, body, address, settings, redis)
    return await anyio.to_thread.run_sync(_chat_turn, body, address, settings, redis, limiter=limiter)


def _chat_turn(body: ChatRequest, address: str, settings: Settings, redis: Redis) -> ChatResponse:
    with get_database(settings).session(readonly=True) as session:
        community = session.scalar(select(Community).where(Community.code == body.community))
        if community is None:
            raise NotFound("找不到该小区")
        company_id, community_id = community.company_id, community.id
        if limits.over_limit(
            redis, settings=settings, session_id=body.session_id, address=address, text=body.text
        ):
            raise limits.refusal(
                duty_phone=community.duty_phone, service_phone=community.company.service_phone
            )
    # Stored in the intake like every channel's message, then answered in the request (the page
    # waits for it); if this process dies first, the sweeper answers it into the history.
    message_id = body.message_id or uuid.uuid4().hex
    key = hashlib.sha256(f"{body.session_id}\0{message_id}".encode()).hexdigest()[:40]
    pending = batching.Pending(
        company_id=company_id,
        community_id=community_id,
        channel=Channel.web,
        external_id=key,
        sender=body.session_id,
        text=body.text,
        queue_job=False,
    )
    stored = batching.submit(settings, pending).result()
    result = intake.answer_now(settings, stored.id)
    if result.emergency:
        limits.emergency_declared(redis, settings=settings, session_id=body.session_id)
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
    session_id: str = Query(min_length=16, max_length=128),
    after: int = Query(default=0, ge=0, description="only messages with a larger id (new ones)"),
) -> list[HistoryMessage]:
    """The messages of this web chat session, oldest first (the page restores them on reload,
    and fetches an agent's reply when its live stream says one arrived)."""
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
        select(Message)
        .where(Message.conversation_id == conversation.id, Message.id > after)
        .order_by(Message.id.desc())
        .limit(100)
    ).all()
    messages = list(reversed(messages))
    marks = surveys.chat_marks(
        session=session,
        conversation_id=conversation.id,
        messages=[(m.id, m.case_id, m.created_at, m.action == "survey") for m in messages if m.case_id],
    )
    out = []
    for m in messages:
        mark = marks.get(m.id)
        out.append(
            HistoryMessage(
                id=m.id,
                sender=m.sender.value,  # type: ignore[arg-type]
                text=m.text,
                action=m.action,  # type: ignore[arg-type]
                citations=[CitationOut(**c) for c in m.citations or []],
                created_at=m.created_at.isoformat(),
                case_id=m.case_id,
                work_order_id=m.work_order_id,
                emergency=mark.emergency_kind if mark else None,
                case_active=mark.case_active if mark else None,
                survey_score=mark.survey_score if mark else None,
                survey_answered=mark.survey_answered if mark else False,
            )
        )
    return out


@router.get("/api/chat/stream")
async def chat_stream(
    settings: SettingsDep,
    community: str = Query(max_length=64),
    session_id: str = Query(min_length=16, max_length=128),
) -> StreamingResponse:
    """Server-sent events for the chat page: a person wrote to this session (an agent's reply,
    the survey). The page then fetches the new messages from the history."""

    def find() -> int | None:
        with get_database(settings).session(readonly=True) as session:
            return session.scalar(
                select(Conversation.id)
                .join(Community, Community.id == Conversation.community_id)
                .where(
                    Community.code == community,
                    Conversation.channel == Channel.web,
                    Conversation.external_id == session_id,
                )
            )

    conversation_id = await run_in_threadpool(find)
    if conversation_id is None:
        raise NotFound("会话还不存在：发出第一条消息后再连接")
    return StreamingResponse(
        stream(settings, [conversation_topic(conversation_id)]),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
