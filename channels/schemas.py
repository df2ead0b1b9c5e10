"""What the channels' HTTP endpoints accept and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image", "voice", "video", "file", "location"]
    url: str | None = Field(default=None, max_length=2000)
    text: str | None = Field(default=None, max_length=2000)  # a voice message's transcript, a place name


class AppMessageIn(BaseModel):
    """One message from the resident app's backend."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")  # idempotency key
    community: str = Field(min_length=1, max_length=64)  # the community's code
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^\S+$")  # the app's user id of the resident
    text: str = Field(default="", max_length=2000)
    attachments: list[Attachment] = Field(default_factory=list, max_length=9)
    sent_at: AwareDatetime | None = None  # with its offset: "2026-11-23T10:00:00+08:00"
    # The mobile number the app verified for this user: links the user to the directory entry
    # with that number, so app, WeChat and phone share one history. Never stored with the message.
    mobile: str | None = Field(default=None, max_length=32)


class Accepted(BaseModel):
    id: int
    status: str
    duplicate: bool  # the same message_id was accepted before: nothing new stored or processed


class Utterance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: Literal["customer", "agent"]
    begin_ms: int = Field(ge=0)  # from the start of the call
    end_ms: int | None = Field(default=None, ge=0)
    text: str = Field(max_length=2000)


class CallTranscriptIn(BaseModel):
    """A finished call from the call centre: its metadata and either our generic utterances or a
    speech provider's result as it returned it (``aliyun``: Alibaba Cloud file transcription's
    GetTaskResult response, with ``customer_channel`` naming the caller's track)."""

    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")  # idempotency key
    community: str = Field(min_length=1, max_length=64)
    caller: str = Field(min_length=1, max_length=32)  # the calling number as the switch saw it
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    agent: str | None = Field(default=None, max_length=64)  # the agent's work number or name
    utterances: list[Utterance] | None = Field(default=None, max_length=2000)
    aliyun: dict[str, Any] | None = None
    customer_channel: int = Field(default=0, ge=0, le=7)

    @model_validator(mode="after")
    def one_transcript(self) -> CallTranscriptIn:
        if (self.utterances is None) == (self.aliyun is None):
            raise ValueError("需要 utterances 或 aliyun 二者之一")
        return self


class HistoryItem(BaseModel):
    """One message of a resident's history as staff see it: personal data in the text masked."""

    conversation_id: int
    channel: str
    sender: str
    text: str
    action: str | None
    case_id: int | None
    work_order_id: int | None
    created_at: datetime


class FailedMessage(BaseModel):
    id: int
    channel: str
    sender: str  # masked
    text: str  # masked
    error: str | None
    attempts: int
    received_at: datetime


class FailedDelivery(BaseModel):
    id: int
    channel: str
    conversation_id: int
    recipient: str  # masked
    reply: str
    error: str | None
    attempts: int
    created_at: datetime


class IntakeProblems(BaseModel):
    """What the intake could not do on its own: for agents to see, answer or retry."""

    failed_messages: list[FailedMessage]
    failed_deliveries: list[FailedDelivery]
