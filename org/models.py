"""Company → community (项目/小区) → building → unit → room, and the residents directory."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, TimestampMixin, UTCDateTime, utcnow
from core.tenancy import Tenant


class Company(TimestampMixin, Base):
    __tablename__ = "company"
    __tenant__ = Tenant.the_company()

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    service_phone: Mapped[str | None] = mapped_column(String(32))

    communities: Mapped[list[Community]] = relationship(back_populates="company", order_by="Community.id")


class Community(TimestampMixin, Base):
    """A managed property (项目/小区). Every record of later domains belongs to one."""

    __tablename__ = "community"
    __tenant__ = Tenant.itself()

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="RESTRICT"), index=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # used in URLs: /chat/<code>
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(300))
    duty_phone: Mapped[str | None] = mapped_column(String(32))  # 24 小时值班电话, given in emergencies

    company: Mapped[Company] = relationship(back_populates="communities")
    buildings: Mapped[list[Building]] = relationship(back_populates="community", order_by="Building.id")


class Building(Base):
    __tablename__ = "building"
    __tenant__ = Tenant.community()
    __table_args__ = (UniqueConstraint("community_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # 3栋

    community: Mapped[Community] = relationship(back_populates="buildings")
    units: Mapped[list[Unit]] = relationship(back_populates="building", order_by="Unit.id")


class Unit(Base):
    __tablename__ = "unit"
    __tenant__ = Tenant.via("building_id", "building")
    __table_args__ = (UniqueConstraint("building_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("building.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # 1单元

    building: Mapped[Building] = relationship(back_populates="units")
    rooms: Mapped[list[Room]] = relationship(back_populates="unit", order_by="Room.id")


class Room(Base):
    __tablename__ = "room"
    __tenant__ = Tenant.via("unit_id", "unit")
    __table_args__ = (UniqueConstraint("unit_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32))  # 1502

    unit: Mapped[Unit] = relationship(back_populates="rooms")


class ResidentRole(enum.StrEnum):
    owner = "业主"
    tenant = "租户"
    family = "家属"


class IdentityKind(enum.StrEnum):
    mobile = "mobile"
    wechat_openid = "wechat_openid"
    app_user_id = "app_user_id"


class Resident(TimestampMixin, Base):
    __tablename__ = "resident"
    __tenant__ = Tenant.community()

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("room.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[ResidentRole] = mapped_column(
        Enum(ResidentRole, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=ResidentRole.owner,
    )
    note: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    room: Mapped[Room | None] = relationship()
    identities: Mapped[list[ResidentIdentity]] = relationship(
        back_populates="resident", cascade="all, delete-orphan", order_by="ResidentIdentity.id"
    )

    def identity(self, kind: IdentityKind) -> str | None:
        return next((i.value for i in self.identities if i.kind == kind), None)


class ResidentIdentity(Base):
    """How a resident is known on a channel. One identity points at one resident per community,
    so a message from a known mobile number or openid finds its history."""

    __tablename__ = "resident_identity"
    __tenant__ = Tenant.community()
    __table_args__ = (
        UniqueConstraint("community_id", "kind", "value"),
        Index("ix_resident_identity_kind_value", "kind", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("resident.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    kind: Mapped[IdentityKind] = mapped_column(Enum(IdentityKind, native_enum=False, length=32))
    value: Mapped[str] = mapped_column(String(128))

    resident: Mapped[Resident] = relationship(back_populates="identities")


class ImportStatus(enum.StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


class ResidentImport(TimestampMixin, Base):
    """An uploaded residents file and what importing it did, row by row.

    The file is kept in the database so any worker on any machine can process it.
    """

    __tablename__ = "resident_import"
    __tenant__ = Tenant.community()

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[ImportStatus] = mapped_column(Enum(ImportStatus, native_enum=False, length=16))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(default=0)
    total_rows: Mapped[int] = mapped_column(default=0)
    # Rows already applied and committed; a retried job resumes after them.
    processed_rows: Mapped[int] = mapped_column(default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
