"""The knowledge base: uploaded sources (standards documents and FAQ tables), their passages and
FAQ entries, each scoped to the whole company or to some of its communities."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, Column, Date, Enum, ForeignKey, Index, LargeBinary, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, TimestampMixin, UTCDateTime, utcnow
from core.tenancy import Tenant

if TYPE_CHECKING:
    from org.models import Community


class SourceKind(enum.StrEnum):
    document = "document"  # a standard, policy or notice: searched passage by passage
    faq = "faq"  # a question-and-answer table: matched question by question, before passages


class SourceStatus(enum.StrEnum):
    """Where the latest upload of a source is. The current version (if any) serves throughout."""

    parsing = "parsing"  # stored, waiting for or in its parse job
    ready = "ready"  # the latest upload is the current version
    failed = "failed"  # the latest upload could not be parsed (``error`` says why); nothing changed


source_community = Table(
    "knowledge_source_community",
    Base.metadata,
    Column("source_id", ForeignKey("knowledge_source.id", ondelete="CASCADE"), primary_key=True),
    Column("community_id", ForeignKey("community.id", ondelete="CASCADE"), primary_key=True),
)

faq_entry_community = Table(
    "faq_entry_community",
    Base.metadata,
    Column("entry_id", ForeignKey("faq_entry.id", ondelete="CASCADE"), primary_key=True),
    Column("community_id", ForeignKey("community.id", ondelete="CASCADE"), primary_key=True),
)


class KnowledgeSource(TimestampMixin, Base):
    """One uploaded file. Replacing it keeps the id and bumps ``version``; the original bytes are
    kept so the index can be rebuilt on any machine.

    An upload is parsed by a worker, never by the API: until then its bytes wait in ``pending_*``
    and the current version (``content``, passages, entries, scope) keeps serving; a new source
    has version 0 (nothing to serve) until its first parse succeeds.
    """

    __tablename__ = "knowledge_source"
    __tenant__ = Tenant.company()
    __table_args__ = (Index("ix_knowledge_source_company_sha", "company_id", "content_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"), index=True)
    kind: Mapped[SourceKind] = mapped_column(Enum(SourceKind, native_enum=False, length=16))
    title: Mapped[str] = mapped_column(String(300))
    filename: Mapped[str] = mapped_column(String(255))
    content_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column()
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    # Empty communities with all_communities False never happens: the service refuses it.
    all_communities: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    status: Mapped[SourceStatus] = mapped_column(
        Enum(SourceStatus, native_enum=False, length=16), default=SourceStatus.ready
    )
    error: Mapped[str | None] = mapped_column(Text)  # why the latest upload failed, for the admin
    # FAQ rows the current version left out: [{"row", "column", "message"}]
    row_errors: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    # The upload waiting for its parse (None once parsed or failed; the name stays for the page).
    pending_content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    pending_sha256: Mapped[str | None] = mapped_column(String(64))
    pending_filename: Mapped[str | None] = mapped_column(String(255))
    pending_scope: Mapped[list[int] | None] = mapped_column(JSON)  # None: every community
    # Parse jobs started for the pending upload: one that keeps killing its worker is failed.
    parse_attempts: Mapped[int] = mapped_column(default=0)

    communities: Mapped[list[Community]] = relationship(secondary=source_community, order_by="Community.id")
    passages: Mapped[list[Passage]] = relationship(
        back_populates="source",
        order_by="Passage.ordinal",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    faq_entries: Mapped[list[FaqEntry]] = relationship(
        back_populates="source", order_by="FaqEntry.row", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def community_ids(self) -> list[int]:
        return [c.id for c in self.communities]

    def applies_to(self, community_id: int) -> bool:
        return self.all_communities or community_id in self.community_ids


class Passage(Base):
    """A piece of a document, small enough to rank, with the headings above it for citation."""

    __tablename__ = "passage"
    __tenant__ = Tenant.via("source_id", "knowledge_source")

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("knowledge_source.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column()
    section: Mapped[str] = mapped_column(String(500))  # 三、品质管理要求 › 3 应急处置要求 › 3.2 …
    text: Mapped[str] = mapped_column(Text)

    source: Mapped[KnowledgeSource] = relationship(back_populates="passages")


class FaqEntry(Base):
    """One question of an FAQ table. Its own communities, when given, narrow its source's scope."""

    __tablename__ = "faq_entry"
    __tenant__ = Tenant.via("source_id", "knowledge_source")

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("knowledge_source.id", ondelete="CASCADE"), index=True)
    row: Mapped[int] = mapped_column()  # the spreadsheet row, for staff fixing the table
    question: Mapped[str] = mapped_column(String(200))
    similar: Mapped[list[str]] = mapped_column(JSON, default=list)
    answer: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64), default="")
    effective_from: Mapped[date | None] = mapped_column(Date)
    effective_until: Mapped[date | None] = mapped_column(Date)

    source: Mapped[KnowledgeSource] = relationship(back_populates="faq_entries")
    communities: Mapped[list[Community]] = relationship(
        secondary=faq_entry_community, order_by="Community.id"
    )

    def applies_to(self, community_id: int, day: date) -> bool:
        """May a resident of this community be answered from this entry on this day?"""
        if not self.source.applies_to(community_id):
            return False
        if self.communities and community_id not in [c.id for c in self.communities]:
            return False
        if self.effective_from and day < self.effective_from:
            return False
        return not (self.effective_until and day > self.effective_until)


class IndexStatus(enum.StrEnum):
    building = "building"
    ready = "ready"
    failed = "failed"


class KnowledgeIndex(Base):
    """One built search index of a company's knowledge base (dense vectors and BM25 weights).

    The artifact lives in the database so every API process and worker, on any machine, loads the
    same version; a query uses the newest ready version, loaded whole before it is swapped in.
    """

    __tablename__ = "knowledge_index"
    __tenant__ = Tenant.company()
    __table_args__ = (Index("ix_knowledge_index_company_status", "company_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    status: Mapped[IndexStatus] = mapped_column(Enum(IndexStatus, native_enum=False, length=16))
    # What the index was built from (sources, versions, scopes, model): the same fingerprint
    # means the build can be skipped.
    fingerprint: Mapped[str] = mapped_column(String(64))
    embedding_model: Mapped[str] = mapped_column(String(200))
    passages: Mapped[int] = mapped_column(default=0)
    faq_entries: Mapped[int] = mapped_column(default=0)
    size_bytes: Mapped[int] = mapped_column(default=0)
    build_seconds: Mapped[float] = mapped_column(default=0.0)
    embedded: Mapped[int] = mapped_column(default=0)  # texts embedded in this build (others reused)
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
