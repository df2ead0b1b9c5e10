"""What the channels' HTTP endpoints accept and answer."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


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


class Accepted(BaseModel):
    id: int
    status: str
    duplicate: bool  # the same message_id was accepted before: nothing new stored or processed
