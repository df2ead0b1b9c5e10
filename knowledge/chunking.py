"""Split a cleaned standard into passages by its own structure, each with its heading path.

Chinese standards number their headings in layers: ``一、`` › ``(一)`` › ``1`` › ``1.1`` ›
``1.1.1``; Word exports mark real headings with ``[bookmark: _Toc…]``; Markdown, HTML and docx
headings arrive as ``#`` lines from the readers. A numbered line is a heading when it is marked
as one, or short and not a sentence; otherwise it is a list item of the body. A heading written
as ``3.2电梯困人应急处置标准：规范接警响应…`` is split into the heading and its first sentence.

Two shapes of real documents need more than that:

- Headings run into their text, as pasted articles have them:
  ``四、品质检查与评估(一)日常检查品质部应安排专人…``. The part before the next number is the
  heading (``四、品质检查与评估``); where no number follows (``(二)专项检查根据季节特点…``) the
  heading's end cannot be told, so the line starts a new passage under its parent's path without
  a made-up title. A collection repeats its article title in front of the first number
  (``物业公司品质部管理制度一、总则…``): that prefix is dropped.
- Slides: a short title line over one line of text (``分级响应机制`` / ``根据投诉紧急程度…``).
  The title heads that text alone.

Each passage keeps the path of headings above it, so an answer can cite
《物业品质管理工作指引》三、品质管理要求 › 3 应急处置要求 › 3.2 电梯困人应急处置标准.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from knowledge.cleaning import BOOKMARK, clean_items

MAX_PASSAGE_CHARS = 360  # about three sentences: enough context to answer, small enough to rank
MAX_HEADING_CHARS = 32  # longer numbered lines are list items, not headings

_CN_NUM = "一二三四五六七八九十百"
_LEVEL_1 = re.compile(rf"^([{_CN_NUM}]+)[、.．]\s*(.+)$")
_LEVEL_2 = re.compile(rf"^[(（]([{_CN_NUM}]+)[)）]\s*(.+)$")
_ARABIC = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,3})([、.．](?!\d)|\s)?\s*([^\d.、．].*)$")
_MARKDOWN = re.compile(r"^(#{1,6})\s+(.+)$")
_NOT_A_TITLE = re.compile(r"[。；;！!？?，,]")  # titles are not sentences or clauses
_TRAILING_MARKS = re.compile(r"[:：\-—\s]+$")
_SPACED_BODY = re.compile(r"^([^\s，,。：:；;]{2,12}) (\S.{8,})$")
_PLAIN_TITLE = re.compile(r"^[^\s，,。.：:；;！!？?、()（）“”\"'《》\-—*·]{2,16}$")
_INLINE_BODY = re.compile(r"^(.{2,30}?)[：:]\s*(.+)$")
# The next number inside a run-in heading's line: "(一)", "1、", "1." (not "1.5", not "3.2").
_NESTED_NUMBER = re.compile(rf"[(（][{_CN_NUM}]+[)）]|(?<![\d.])\d{{1,2}}[、.．](?!\d)")
_RUN_IN_TITLE_CHARS = 20
_SENTENCE = re.compile(r"[。；;！!？?，,]")


@dataclass(frozen=True)
class Passage:
    heading_path: tuple[str, ...]
    text: str
    ordinal: int

    def section(self) -> str:
        return " › ".join(self.heading_path)


@dataclass
class _Heading:
    level: float
    title: str


@dataclass
class _Section:
    path: tuple[str, ...]
    paragraphs: list[str] = field(default_factory=list)


def _heading(raw: str, line: str) -> tuple[float, str, str | None] | None:
    """(level, title, inline body) when the line is a heading, else None."""
    marked = BOOKMARK.search(raw) is not None and "_Toc" in raw
    if m := _MARKDOWN.match(line):
        return float(len(m.group(1))) - 0.5, m.group(2).strip(), None  # above numbered levels
    if m := _LEVEL_1.match(line):
        level, label, rest, separator = 1.0, f"{m.group(1)}、", m.group(2), "、"
    elif m := _LEVEL_2.match(line):
        level, label, rest, separator = 2.0, f"({m.group(1)})", m.group(2), ")"
    elif m := _ARABIC.match(line):
        number, separator = m.group(1), m.group(2) or ""
        if separator == "、" and not marked:
            return None  # "1、…" numbers the items of a list in Chinese documents
        level, label, rest = 3.0 + number.count("."), f"{number} ", m.group(3)
    elif marked and len(line) <= MAX_HEADING_CHARS:
        return 3.0, line, None
    else:
        return None
    rest = rest.strip()
    body: str | None = None
    if marked and (inline := _INLINE_BODY.match(rest)):
        rest, body = inline.group(1).strip(), inline.group(2).strip()
    list_item = level == 3.0 and separator in ".．"  # "2. 马上报警 拨打 119…" numbers a step
    if not marked and level >= 3.0 and not list_item and (space := _SPACED_BODY.match(rest)):
        rest, body = space.group(1), space.group(2)  # "1 指导思想 以…为核心宗旨"
    rest = _TRAILING_MARKS.sub("", rest)
    if not marked and (len(rest) > MAX_HEADING_CHARS or _NOT_A_TITLE.search(rest)):
        return None  # a numbered list item of the body
    return level, f"{label}{rest}", body


def _run_in(line: str) -> tuple[float, str | None, str] | None:
    """A ``一、`` or ``(一)`` line too long to be a heading: (level, title or None, body)."""
    if m := _LEVEL_1.match(line):
        level, label = 1.0, f"{m.group(1)}、"
    elif m := _LEVEL_2.match(line):
        level, label = 2.0, f"({m.group(1)})"
    else:
        return None
    rest = m.group(2).strip()
    nested = _NESTED_NUMBER.search(rest, 2, _RUN_IN_TITLE_CHARS + 1)
    if nested is not None:
        title = _TRAILING_MARKS.sub("", rest[: nested.start()])
        if len(title) >= 2 and not _SENTENCE.search(title):
            return level, f"{label}{title}", rest[nested.start() :]
    return level, None, line


def _numbered(line: str) -> bool:
    return any(p.match(line) for p in (_LEVEL_1, _LEVEL_2, _ARABIC))


def _split_long(text: str, limit: int) -> list[str]:
    """Cut a paragraph at sentence ends (or commas when a sentence is too long) into pieces."""
    if len(text) <= limit:
        return [text]
    sentences = re.findall(r"[^。；;！!？?]+[。；;！!？?]?", text)
    pieces: list[str] = []
    current = ""
    for sentence in sentences:
        while len(sentence) > limit:  # a run-on sentence: cut at a comma near the limit
            cut = max(sentence.rfind("，", 0, limit), sentence.rfind(",", 0, limit))
            cut = cut + 1 if cut > limit // 3 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if len(current) + len(sentence) > limit and current:
            pieces.append(current)
            current = ""
        current += sentence
    if current:
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def _pack(paragraphs: list[str], limit: int) -> list[str]:
    """Join paragraphs into passages of at most ``limit`` characters, never splitting mid-sentence
    unless one sentence alone is longer."""
    passages: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in paragraphs:
        for piece in _split_long(paragraph, limit):
            if current and size + len(piece) + 1 > limit:
                passages.append("\n".join(current))
                current, size = [], 0
            current.append(piece)
            size += len(piece) + 1
    if current:
        passages.append("\n".join(current))
    return passages


def split_passages(
    raw_lines: list[str], *, title: str | None = None, limit: int = MAX_PASSAGE_CHARS
) -> tuple[str, list[Passage]]:
    """The document's title and its passages. ``raw_lines`` are the reader's lines, uncleaned:
    bookmark markers are read as heading signals before cleaning removes them."""
    cleaned = clean_items(raw_lines)
    if title is None:  # the first line is the title (a Markdown "# 标题" as well), unless numbered
        first = cleaned[0][1] if cleaned else ""
        title = "" if _numbered(first) or len(first) > 60 else first
    title_lines = {title, f"# {title}"}
    # The title, or the title repeated as a page header, is not part of any section.
    items = [(raw, line) for raw, line in cleaned if line not in title_lines]
    items = _without_repeated_titles(items)

    stack: list[_Heading] = []
    sections: list[_Section] = [_Section(path=())]
    for index, (raw, line) in enumerate(items):
        found = _heading(raw, line)
        following = items[index + 1][1] if index + 1 < len(items) else ""
        if found is None and _PLAIN_TITLE.match(line) and _numbered(following):
            found = (0.5, line, None)  # an unnumbered part title above numbered sections
        elif found is None and _PLAIN_TITLE.match(line) and _is_body(following):
            found = (9.0, line, None)  # a slide's point title over its one line of text
        elif found is None and (run_in := _run_in(line)) is not None:
            run_level, run_title, run_body = run_in
            while stack and stack[-1].level >= run_level:
                stack.pop()
            if run_title is None:  # a new block whose heading's end cannot be told
                sections.append(_Section(path=tuple(h.title for h in stack), paragraphs=[run_body]))
                continue
            found = (run_level, run_title, run_body)
            deeper = _run_in(run_body)
            if deeper is not None and deeper[0] > run_level and deeper[1] is not None:
                stack.append(_Heading(run_level, run_title))
                found = (deeper[0], deeper[1], deeper[2])  # "二、职责与权限(一)职责1、制定…"
        if found is None:
            sections[-1].paragraphs.append(line)
            if stack and stack[-1].level == 9.0:  # a slide point heads one line only
                stack.pop()
                sections.append(_Section(path=tuple(h.title for h in stack)))
            continue
        level, heading_title, body = found
        while stack and stack[-1].level >= level:
            stack.pop()
        stack.append(_Heading(level, heading_title))
        sections.append(_Section(path=tuple(h.title for h in stack)))
        if body:
            sections[-1].paragraphs.append(body)
    passages: list[Passage] = []
    carried: tuple[str, ...] = ()
    for section in sections:
        if not section.paragraphs:
            continue
        if all(_PLAIN_TITLE.match(p) for p in section.paragraphs):
            # Only titles (a slide's agenda, a group title): the last one heads the next passage.
            carried = (section.paragraphs[-1],)
            continue
        path = carried + section.path if carried and carried[0] not in section.path else section.path
        carried = ()
        for text in _pack(section.paragraphs, limit):
            passages.append(Passage(heading_path=path, text=text, ordinal=len(passages)))
    return title, passages


def _is_body(line: str) -> bool:
    """A line of running text (sentences), not a title or a number."""
    return len(line) > MAX_HEADING_CHARS and _SENTENCE.search(line) is not None and not _numbered(line)


def _without_repeated_titles(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """ "物业公司品质部管理制度一、总则…": a collection's article title glued to the first
    number is dropped when that title also stands on a line of its own."""
    plain = {line for _raw, line in items if _PLAIN_TITLE.match(line)}
    out = []
    for raw, line in items:
        for title in plain:
            if line.startswith(title) and len(line) > len(title) and _LEVEL_1.match(line[len(title) :]):
                line = line[len(title) :]
                break
        out.append((raw, line))
    return out
