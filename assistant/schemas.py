"""Request and response bodies of the chat API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ActionName = Literal["answer", "clarify", "chitchat", "work_order", "human", "emergency"]


class ChatRequest(BaseModel):
    community: str = Field(min_length=1, max_length=64, description="小区编码，如 cuihu")
    session_id: str = Field(
        min_length=16,
        max_length=128,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="会话编号（至少 16 位随机字母数字）：同一住户的连续对话用同一个；凭它可以读取这段对话",
    )
    text: str = Field(max_length=2000, description="住户的消息")
    message_id: str | None = Field(
        default=None, max_length=128, description="客户端消息编号：网络重试时重复发送不会重复处理"
    )


class CitationOut(BaseModel):
    document: str
    section: str
    snippet: str


class ChatResponse(BaseModel):
    reply: str
    action: ActionName
    citations: list[CitationOut]
    confidence: float
    case_id: int | None = None
    work_order_id: int | None = None
    conversation_id: int
    emergency: str | None = None
    duty_phone: str | None = None
    suggestions: list[str] = []


class HistoryMessage(BaseModel):
    id: int
    sender: Literal["resident", "assistant", "agent", "system"]
    text: str
    # The assistant's action; a person's messages: "survey" (回访), "work_order" (a work order done).
    action: ActionName | Literal["survey"] | None = None
    citations: list[CitationOut] = []
    created_at: str
    # What the page shows again after a reload: the case and work-order tags, the emergency banner
    # (while its case is open, with its kind), a survey already answered (no buttons, the score).
    case_id: int | None = None
    work_order_id: int | None = None
    emergency: str | None = None
    case_active: bool | None = None
    survey_score: int | None = None
    survey_answered: bool = False
