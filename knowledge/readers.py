"""Turn an uploaded file (txt, md, html, docx, pdf) into lines of text, headings marked with ``#``.

Readers keep what the chunker needs: one line per paragraph, list item or table row; headings
that the format knows (HTML ``h1``–``h6``, Word's heading styles, Markdown) as ``#`` lines.
Everything else (scripts, navigation, page furniture) is left out or removed by cleaning later.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

from core.errors import InvalidInput

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".docx", ".pdf")


@dataclass(frozen=True)
class ReadDocument:
    title: str | None  # what the file itself calls its title, when it says
    lines: list[str]


def decode_text(content: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (what Chinese Windows saves as "ANSI")."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput("无法识别文件编码，请另存为 UTF-8 后再上传")


def read_document(filename: str, content: bytes) -> ReadDocument:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUPPORTED:
        raise InvalidInput(f"不支持的文件类型 {suffix or '（无扩展名）'}；支持 txt、md、html、docx、pdf")
    if not content.strip():
        raise InvalidInput("文件是空的")
    if suffix in (".txt", ".md", ".markdown"):
        document = ReadDocument(title=None, lines=decode_text(content).splitlines())
    elif suffix in (".html", ".htm"):
        document = _read_html(content)
    elif suffix == ".docx":
        document = _read_docx(content)
    else:
        document = _read_pdf(content)
    if not any(line.strip() for line in document.lines):
        raise InvalidInput("文件里没有可读取的文字（扫描件需要先做文字识别）")
    return document


_HTML_DROP = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "iframe", "svg")
_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "pre", "blockquote", "dt", "dd")


def _read_html(content: bytes) -> ReadDocument:
    from bs4 import BeautifulSoup  # deferred: only HTML uploads need it

    soup = BeautifulSoup(content, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(_HTML_DROP):
        tag.decompose()
    root = soup.find("article") or soup.find("main") or soup.body or soup
    lines: list[str] = []
    for block in root.find_all(_HTML_BLOCKS):
        if block.find_parent(_HTML_BLOCKS) is not None:
            continue  # text of a nested block is read with its outer block
        if block.name == "tr":
            cells = [c.get_text(" ", strip=True) for c in block.find_all(["td", "th"])]
            text = " | ".join(c for c in cells if c)
        else:
            text = block.get_text(" ", strip=True)
        if not text:
            continue
        if re.fullmatch(r"h[1-6]", block.name):
            text = "#" * int(block.name[1]) + " " + text
        lines.append(text)
    if not lines:  # a page without block tags: its text, line by line
        lines = root.get_text("\n").splitlines()
    return ReadDocument(title=title or None, lines=lines)


_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def _read_docx(content: bytes) -> ReadDocument:
    import docx  # deferred: python-docx loads lxml and its templates
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(content))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidInput("docx 文件已损坏或不是 Word 文档") from exc
    title = (document.core_properties.title or "").strip() or None
    lines: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(child, document)
            text = paragraph.text.strip()
            if not text:
                continue
            style = paragraph.style.name if paragraph.style is not None else ""
            if style.lower() == "title":
                title = title or text
                continue
            if m := _HEADING_STYLE.match(style or ""):
                text = "#" * int(m.group(1)) + " " + text
            lines.append(text)
        elif tag == "tbl":
            table = Table(child, document)
            for row in table.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = cell.text.strip()
                    if value and (not cells or cells[-1] != value):  # merged cells repeat
                        cells.append(value)
                if cells:
                    lines.append(" | ".join(cells))
    return ReadDocument(title=title, lines=lines)


def _read_pdf(content: bytes) -> ReadDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(content))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise InvalidInput("pdf 文件已损坏或无法读取") from exc
    lines: list[str] = []
    for page in pages:
        lines.extend(page.splitlines())
    return ReadDocument(title=title.strip() if title else None, lines=lines)
