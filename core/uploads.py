"""Uploaded files an attacker may have built: what is checked before any parser reads them.

Two steps, split by cost:

* :func:`check_container`, in the request: the file's type by name, and for a docx/xlsx (a zip
  archive) what its central directory declares — entry count, total inflated size and each
  part's compression ratio — read without decompressing anything. Python's zipfile never inflates
  a part past the size its directory declares (and fails a part that would), so the declared
  sizes are limits a parser cannot exceed. A refused file answers 413/422 with the reason.
* :func:`check_xml_parts`, in the worker before parsing: no part of a docx/xlsx carries a DTD
  (Word and Excel never write one; a DTD is how an entity bomb — "billion laughs" — gets in).

Parsing itself runs in an rq job (see knowledge.tasks, org.tasks), never in the API process.
"""

from __future__ import annotations

import io
import signal
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from core.errors import InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from core.settings import Settings

ZIP_SUFFIXES = (".docx", ".xlsx", ".xlsm")
# A part this small cannot be a bomb whatever its ratio (styles.xml of a big workbook compresses
# well past 100x); only larger parts are held to the ratio limit.
RATIO_FLOOR_BYTES = 1024 * 1024
# Bytes of central directory allowed per permitted entry (46 fixed + name + extra fields): a
# directory larger than this says more entries than it admits to in its end record.
DIRECTORY_BYTES_PER_ENTRY = 512
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .doc/.xls, and a password-protected .docx/.xlsx
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_DTD_NEEDLES = tuple(
    text.encode(encoding)
    for text in ("<!doctype", "<!entity")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)  # searched in lower-cased bytes: XML may be stored as UTF-8 or UTF-16


@dataclass(frozen=True)
class UploadLimits:
    """The limits of core.settings (upload_max_*), handed to parsers as one value."""

    unzipped_bytes: int
    zip_entries: int
    zip_ratio: int
    pdf_pages: int
    pdf_stream_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            unzipped_bytes=settings.upload_max_unzipped_bytes,
            zip_entries=settings.upload_max_zip_entries,
            zip_ratio=settings.upload_max_zip_ratio,
            pdf_pages=settings.upload_max_pdf_pages,
            pdf_stream_bytes=settings.upload_max_pdf_stream_bytes,
        )


def default_limits() -> UploadLimits:
    """The process's settings' limits (for callers that are not handed any: CLI, tests)."""
    from core.settings import get_settings

    return UploadLimits.from_settings(get_settings())


def size_label(size: int) -> str:
    """10 MB, 201 MB, 1.5 MB, 4 KB."""
    return f"{size / (1024 * 1024):.3g} MB" if size >= 1024 * 1024 else f"{max(size // 1024, 1)} KB"


def kind_label(filename: str) -> str:
    """How a message names the file's kind: docx → "docx 文件"."""
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    return f"{suffix} 文件" if suffix else "文件"


def check_container(filename: str, content: bytes, *, limits: UploadLimits) -> None:
    """Refuse a docx/xlsx whose zip directory declares a bomb, and a pdf that is not one.

    Cheap enough for the request (the central directory only, no part is inflated); other types
    pass unchanged. Raises PayloadTooLarge (413) for sizes and counts, InvalidInput (422) else.
    """
    suffix = PurePath(filename).suffix.lower()
    if suffix in ZIP_SUFFIXES:
        check_zip(content, limits=limits, label=kind_label(filename))
    elif suffix == ".pdf" and b"%PDF-" not in content[:1024]:
        raise InvalidInput("pdf 文件已损坏或不是 PDF 文件")


def _corrupt(label: str) -> InvalidInput:
    return InvalidInput(f"{label}已损坏或不是 Office 文档（无法作为压缩包读取）")


def _declared_directory(content: bytes, label: str) -> tuple[int, int]:
    """(entries, directory bytes) as the end of central directory record declares them."""
    tail_start = max(0, len(content) - (_EOCD.size + 0xFFFF))  # the record ends with a comment
    position = content.rfind(b"PK\x05\x06", tail_start)
    if position < 0 or len(content) - position < _EOCD.size:
        raise _corrupt(label)
    _, _, _, _, entries, directory_size, _, _ = _EOCD.unpack_from(content, position)
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:  # ZIP64: the real values are earlier
        locator = position - _ZIP64_LOCATOR.size
        record = locator - _ZIP64_EOCD.size
        if record < 0 or content[locator : locator + 4] != b"PK\x06\x07":
            raise _corrupt(label)
        fields = _ZIP64_EOCD.unpack_from(content, record)
        if fields[0] != b"PK\x06\x06":
            raise _corrupt(label)
        entries, directory_size = fields[7], fields[8]
    return entries, directory_size


def check_zip(content: bytes, *, limits: UploadLimits, label: str = "文件") -> None:
    """Entry count, total inflated size and per-part ratio, from the central directory."""
    if content.startswith(_OLE_MAGIC):
        raise InvalidInput(
            f"{label}是旧版 Office 格式（.doc/.xls）或设置了打开密码，请另存为 .docx/.xlsx 并取消密码后再上传"
        )
    too_many = PayloadTooLarge(f"{label}包含的部件过多（上限 {limits.zip_entries} 个），不予解析")
    entries, directory_size = _declared_directory(content, label)
    if entries > limits.zip_entries or directory_size > limits.zip_entries * DIRECTORY_BYTES_PER_ENTRY:
        raise too_many  # refused before zipfile reads every entry of a huge listing
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as exc:
        raise _corrupt(label) from exc
    if len(infos) > limits.zip_entries:
        raise too_many
    if not infos:
        raise _corrupt(label)
    total = sum(info.file_size for info in infos)
    if total > limits.unzipped_bytes:
        raise PayloadTooLarge(
            f"{label}解压后有 {size_label(total)}（上限 {size_label(limits.unzipped_bytes)}），不予解析；"
            "请删去多余的图片或拆分后上传"
        )
    for info in infos:
        if info.flag_bits & 0x1:
            raise InvalidInput(f"{label}中有加密的部件，请取消密码保护后上传")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidInput(f"{label}使用了 Office 不会使用的压缩方式，不予解析")
        if info.file_size > RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.zip_ratio:
                raise InvalidInput(
                    f"{label}中有部件的压缩比异常（{ratio:.0f}:1，上限 {limits.zip_ratio}:1），"
                    "疑似压缩炸弹，不予解析"
                )


def check_xml_parts(content: bytes, *, label: str = "文件") -> None:
    """No XML part of the archive declares a DTD or entities (Word and Excel never write them;
    entity bombs need them). Reads every XML part once, in 1 MB pieces: for the worker, after
    :func:`check_zip` bounded what there is to read."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for info in archive.infolist():
                if not info.filename.lower().endswith((".xml", ".rels", ".vml")):
                    continue
                with archive.open(info) as part:
                    tail = b""
                    while chunk := part.read(1024 * 1024):
                        window = (tail + chunk).lower()
                        if any(needle in window for needle in _DTD_NEEDLES):
                            raise InvalidInput(
                                f"{label}中含有 XML 文档类型声明（DTD/实体），"
                                "Word 和 Excel 保存的文件不会有，出于安全原因不予解析"
                            )
                        tail = window[-32:]
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, struct.error) as exc:
        raise _corrupt(label) from exc  # a part whose data is longer than declared fails its CRC here


class ParseTimeout(BaseException):
    """The parse spent its CPU budget. A BaseException, so that no parser's own ``except
    Exception`` (pypdf has many) swallows it and carries on."""


# A parse job's wall-clock limit (rq's job timeout) per CPU second of budget: rq workers run niced,
# and on a busy machine a worker may get a quarter of a CPU, so a parse within its CPU budget can
# take several times as long; rq's limit only frees a worker stuck outside Python.
WALL_SECONDS_PER_CPU_SECOND = 5


def parse_job_timeout(cpu_seconds: int) -> int:
    return cpu_seconds * WALL_SECONDS_PER_CPU_SECOND + 60


def is_timeout(exc: BaseException) -> bool:
    """The CPU budget, or rq's job timeout raised inside a parser: the parse took too long, which
    is not the same as a broken file (and must not be reported as one)."""
    from rq.timeouts import BaseTimeoutException

    return isinstance(exc, (ParseTimeout, BaseTimeoutException))


@contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Raise ParseTimeout in this thread once the process has used ``seconds`` of CPU time.

    The profiling timer (SIGPROF), not the real-time one: rq's job timeout owns SIGALRM, and a
    parse that waits (for the database, a busy machine) has not cost anything. Only the main
    thread receives signals: elsewhere (a test's server thread) no budget is set.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum: int, _frame: Any) -> None:
        raise ParseTimeout()

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
