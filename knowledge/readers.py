"""Turn an uploaded file (txt, md, html, docx, pdf) into lines of text, headings marked with ``#``.

Readers keep what the chunker needs: one line per paragraph, list item or table row; headings
that the format knows (HTML ``h1``–``h6``, Word's heading styles, Markdown) as ``#`` lines.
Everything else (scripts, navigation, page furniture) is left out or removed by cleaning later.

The bytes are an upload anyone with an admin account (of any company sharing the installation)
chose: readers run in a worker (knowledge.tasks), after core.uploads bounded what the file may
inflate to, and every failure of a parser becomes an InvalidInput with a reason an admin can act
on, never an exception of its own.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import PurePath

from core.errors import AnjuError, InvalidInput, PayloadTooLarge
from core.uploads import UploadLimits, check_container, check_xml_parts, default_limits, is_timeout

log = logging.getLogger(__name__)

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".docx", ".pdf")
# Text a document may hold: a 300-page standard has ~500,000 characters; ten times that would be
# ~20,000 passages to embed. Longer documents are split by the admin.
MAX_DOCUMENT_CHARS = 5_000_000
_BROKEN = {
    ".html": "html 文件无法解析",
    ".htm": "html 文件无法解析",
    ".docx": "docx 文件已损坏或不是 Word 文档",
    ".pdf": "pdf 文件已损坏或无法读取",
}


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


def check_document(filename: str, content: bytes, *, limits: UploadLimits) -> None:
    """What the request checks before storing an upload: type, not empty, no declared bomb."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUPPORTED:
        raise InvalidInput(f"不支持的文件类型 {suffix or '（无扩展名）'}；支持 txt、md、html、docx、pdf")
    if not content.strip():
        raise InvalidInput("文件是空的")
    check_container(filename, content, limits=limits)


def read_document(filename: str, content: bytes, *, limits: UploadLimits | None = None) -> ReadDocument:
    """The file's lines (for the worker: this is the expensive part)."""
    limits = limits or default_limits()
    check_document(filename, content, limits=limits)
    suffix = PurePath(filename).suffix.lower()
    try:
        if suffix in (".txt", ".md", ".markdown"):
            document = ReadDocument(title=None, lines=decode_text(content).splitlines())
        elif suffix in (".html", ".htm"):
            document = _read_html(content)
        elif suffix == ".docx":
            check_xml_parts(content, label="docx 文件")
            document = _read_docx(content)
        else:
            document = _read_pdf(content, limits)
    except AnjuError:
        raise
    except MemoryError:
        raise PayloadTooLarge("文件内容过于庞大，解析时内存不足，请拆分后上传") from None
    except Exception as exc:  # untrusted bytes in third-party parsers: any failure is the file's
        if is_timeout(exc):
            raise
        log.warning("could not parse an uploaded %s file: %s: %s", suffix, type(exc).__name__, exc)
        raise InvalidInput(_BROKEN.get(suffix, "文件无法解析")) from exc
    if not any(line.strip() for line in document.lines):
        raise InvalidInput("文件里没有可读取的文字（扫描件需要先做文字识别）")
    if sum(len(line) for line in document.lines) > MAX_DOCUMENT_CHARS:
        raise PayloadTooLarge(f"文档正文超过 {MAX_DOCUMENT_CHARS // 10_000} 万字，请拆分后上传")
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

    document = docx.Document(io.BytesIO(content))
    title = (document.core_properties.title or "").strip() or None
    # Style names by id, read once: python-docx's paragraph.style scans every style of the file
    # for the default on each unstyled paragraph (1.7 ms each: 100 s for a 60,000-paragraph book).
    style_names = {s.style_id: s.name or "" for s in document.styles}
    lines: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(child, document)
            text = paragraph.text.strip()
            if not text:
                continue
            style = style_names.get(child.style, "") if child.style else ""  # none: the default, Normal
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


def _read_pdf(content: bytes, limits: UploadLimits) -> ReadDocument:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    bound = limits.pdf_stream_bytes  # what any one stream may inflate to, whatever its filter
    try:
        with apply_configuration(
            zlib_maximum_output_length=bound,
            lzw_maximum_output_length=bound,
            run_length_maximum_output_length=bound,
            brotli_maximum_output_length=bound,
            jbig2_maximum_output_length=bound,
            array_based_stream_maximum_output_length=bound,
            image_maximum_buffer_size=bound,
            stream_decoding_work_maximum_length=4 * bound,
        ):
            reader = PdfReader(io.BytesIO(content))
            if reader.is_encrypted and not reader.decrypt(""):
                raise InvalidInput("pdf 设置了打开密码，请去除密码后上传")
            count = len(reader.pages)
            if count > limits.pdf_pages:
                raise PayloadTooLarge(f"pdf 有 {count} 页（上限 {limits.pdf_pages} 页），请拆分后上传")
            lines: list[str] = []
            chars = 0
            for page in reader.pages:
                text = page.extract_text() or ""
                chars += len(text)
                if chars > MAX_DOCUMENT_CHARS:
                    raise PayloadTooLarge(f"文档正文超过 {MAX_DOCUMENT_CHARS // 10_000} 万字，请拆分后上传")
                lines.extend(text.splitlines())
            title = (reader.metadata.title if reader.metadata else None) or None
    except LimitReachedError as exc:
        if "decompress" in str(exc).lower():
            raise InvalidInput(
                f"pdf 中有数据解压后超过 {bound // (1024 * 1024)} MB（上限），疑似压缩炸弹，不予解析"
            ) from exc
        raise InvalidInput("pdf 的结构或页面内容超出解析上限，疑似恶意构造，不予解析") from exc
    except FileNotDecryptedError as exc:
        raise InvalidInput("pdf 设置了打开密码，请去除密码后上传") from exc
    title = title.strip() if isinstance(title, str) else None
    return ReadDocument(title=title or None, lines=lines)
