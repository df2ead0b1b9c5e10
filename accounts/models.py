"""Staff accounts, their community scope, and the tokens behind sessions and API access."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, TimestampMixin, UTCDateTime
from core.tenancy import Tenant


class Role(enum.StrEnum):
    agent = "agent"  # 客服: takes escalated cases
    supervisor = "supervisor"  # 主管: SLA breaches, reassignment, reports
    pr = "pr"  # 品牌/舆情: the opinion risk feed
    admin = "admin"  # 管理员: communities, residents, knowledge, sources, accounts


ROLE_LABELS = {Role.agent: "客服", Role.supervisor: "主管", Role.pr: "品牌/舆情", Role.admin: "管理员"}


class StaffUser(TimestampMixin, Base):
    __tablename__ = "staff_user"
    __tenant__ = Tenant.company()

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="RESTRICT"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    # True: every community of the company, present and future (admins, head-office PR).
    all_communities: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Skill groups whose cases this agent takes (客服, 投诉, 应急, …); empty: all of them.
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    scopes: Mapped[list[StaffCommunity]] = relationship(cascade="all, delete-orphan")

    @property
    def community_ids(self) -> set[int]:
        return {s.community_id for s in self.scopes}


class StaffCommunity(Base):
    __tablename__ = "staff_community"
    __tenant__ = Tenant.community()
    __table_args__ = (UniqueConstraint("user_id", "community_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)


class TokenKind(enum.StrEnum):
    session = "session"  # the web pages' cookie
    api = "api"  # Authorization: Bearer


class AuthToken(TimestampMixin, Base):
    """A login: only the SHA-256 of the token is stored, so a leaked database opens no account."""

    __tablename__ = "auth_token"
    __tenant__ = Tenant.via("user_id", "staff_user")

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TokenKind] = mapped_column(Enum(TokenKind, native_enum=False, length=16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[StaffUser] = relationship()
