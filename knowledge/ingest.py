"""From an uploaded file to titled, cited passages (storage and indexing build on this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from core.errors import InvalidInput
from core.uploads import UploadLimits
from knowledge.chunking import MAX_PASSAGE_CHARS, Passage, split_passages
from knowledge.readers import read_document


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    passages: list[Passage]

    def citation(self, passage: Passage) -> str:
        """《标题》一、… › 1.1 …: how an answer names its source."""
        section = passage.section()
        return f"《{self.title}》{section}" if section else f"《{self.title}》"


def parse_document(
    filename: str, content: bytes, *, limit: int = MAX_PASSAGE_CHARS, limits: UploadLimits | None = None
) -> ParsedDocument:
    read = read_document(filename, content, limits=limits)
    title, passages = split_passages(read.lines, title=read.title, limit=limit)
    title = title.lstrip("#").strip() or PurePath(filename).stem
    if not passages:
        raise InvalidInput("没有从文件中读到正文内容")
    return ParsedDocument(title=title, passages=passages)
