from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from org.models import ImportStatus, ResidentRole


class CommunityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    city: str | None
    address: str | None
    duty_phone: str | None


class CommunityCreate(BaseModel):
    code: str = Field(min_length=2, max_length=63)
    name: str = Field(min_length=1, max_length=200)
    city: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=300)
    duty_phone: str | None = Field(default=None, max_length=32)


class RoomRead(BaseModel):
    id: int
    number: str


class UnitRead(BaseModel):
    id: int
    name: str
    rooms: list[RoomRead]


class BuildingRead(BaseModel):
    id: int
    name: str
    units: list[UnitRead]


class ResidentRead(BaseModel):
    """A directory entry as staff see it: personal data masked."""

    id: int
    community_id: int
    name: str
    role: ResidentRole
    room: str | None
    mobile: str | None
    has_wechat: bool
    has_app: bool
    note: str | None
    created_at: datetime


class ResidentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: ResidentRole = ResidentRole.owner
    mobile: str | None = Field(default=None, max_length=32)
    building: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=64)
    room: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=500)


class ResidentPage(BaseModel):
    items: list[ResidentRead]
    total: int
    offset: int
    limit: int


class ImportRead(BaseModel):
    id: int
    community_id: int
    filename: str
    status: ImportStatus
    attempts: int
    total_rows: int
    processed_rows: int
    report: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
