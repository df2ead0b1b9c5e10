from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from accounts.models import Role
from core.types import Id


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserCreate(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8, max_length=256)
    display_name: str | None = Field(default=None, max_length=64)
    role: Role
    community_ids: list[Id] = Field(default_factory=list)
    all_communities: bool = False


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    all_communities: bool
    is_active: bool
    community_ids: list[int]
    last_login_at: datetime | None
