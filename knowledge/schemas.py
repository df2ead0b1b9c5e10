"""The knowledge-base API's shapes: sources with their passages or FAQ entries, uploads, the index."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from knowledge.models import SourceKind, SourceStatus


class CommunityRef(BaseModel):
    id: int
    name: str


class FlagRead(BaseModel):
    """A part of a source held back from residents (疑似指令文本、非官方电话号码…), and why."""

    where: str  # 第 3 段 一、收费 › 1.2, or 第 5 行 <question> for an FAQ table
    excerpt: str
    reason: str  # e.g. 疑似指令文本，未用于回答
    detail: str = ""  # the phone number, fee or link concerned


class RowErrorRead(BaseModel):
    row: int
    column: str
    message: str


class SourceRead(BaseModel):
    """One uploaded file as the list shows it: its current version (what answers residents) and
    where its latest upload is."""

    id: int
    kind: SourceKind
    title: str
    filename: str
    size_bytes: int
    version: int  # 0: the first upload is not parsed yet (or failed): nothing serves
    all_communities: bool
    communities: list[CommunityRef]  # empty when all_communities
    passage_count: int
    faq_entry_count: int
    created_at: datetime
    updated_at: datetime
    flags: list[FlagRead] = Field(default_factory=list)  # what residents are never shown, and why
    status: SourceStatus  # parsing (a worker reads the latest upload), ready, failed
    error: str | None  # why the latest upload could not be used (failed)
    pending_filename: str | None  # the upload being parsed or that failed
    row_errors: list[RowErrorRead]  # FAQ rows the current version left out


class PassageRead(BaseModel):
    ordinal: int
    section: str
    text: str


class FaqEntryRead(BaseModel):
    id: int
    row: int  # the spreadsheet row it came from
    question: str
    similar: list[str]
    answer: str
    category: str
    communities: list[CommunityRef]  # empty: the source's own scope
    effective_from: date | None
    effective_until: date | None


class SourceDetail(SourceRead):
    passages: list[PassageRead] = Field(default_factory=list)  # documents
    faq_entries: list[FaqEntryRead] = Field(default_factory=list)  # FAQ tables


class SourceUpload(BaseModel):
    """The answer to an upload or a replacement (202: stored, a worker parses it; poll the
    source for its status)."""

    source: SourceRead
    # False when the same file with the same scope was already stored (nothing changed), and for
    # a replacement (the source keeps its id; its version goes up once the new file is parsed).
    created: bool
    parse_job_id: str | None  # the queued parse (None when nothing changed or the queue was down)


class IndexRead(BaseModel):
    id: int
    passages: int
    faq_entries: int
    embedding_model: str
    built_at: datetime | None
    build_seconds: float
    size_bytes: int


class IndexStatus(BaseModel):
    index: IndexRead | None  # None until the first build finished
    stale: bool  # sources changed since the current index was built: a re-index is due or running
