"""Hostile and honest files, built the way an attacker (or an office suite) would: for the upload
tests and bench/upload_bomb.py. Everything is made in memory with the standard library, python-docx,
openpyxl and reportlab; nothing here knows anju's code."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from xml.sax.saxutils import escape

MB = 1024 * 1024


def docx(paragraphs: Iterable[str], *, title: str | None = None) -> bytes:
    """A real Word document (python-docx's own template): lines starting with "#" become headings.

    The paragraphs are written as WordprocessingML directly: python-docx's add_paragraph looks for
    the section properties on every call, which makes a 60,000-paragraph book take ten minutes."""
    import docx as python_docx

    buffer = io.BytesIO()
    python_docx.Document().save(buffer)
    template = buffer.getvalue()

    def paragraph(text: str, style: str | None) -> str:
        properties = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
        return f'<w:p>{properties}<w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'

    body = [paragraph(title, "Title")] if title else []
    for text in paragraphs:
        if text.startswith("#"):
            level = min(len(text) - len(text.lstrip("#")), 9)
            body.append(paragraph(text.lstrip("#").strip(), f"Heading{level}"))
        elif text.strip():
            body.append(paragraph(text, None))
    document = part(template, "word/document.xml").decode()
    at = document.index("<w:sectPr")
    document = document[:at] + "".join(body) + document[at:]
    return rezip(template, {"word/document.xml": document.encode()})


def rezip(archive: bytes, parts: dict[str, bytes], *, level: int = 6) -> bytes:
    """The archive with these parts replaced or added (deflated), the others copied."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as target,
    ):
        for info in source.infolist():
            if info.filename not in parts:
                target.writestr(info.filename, source.read(info.filename))
        for name, data in parts.items():
            target.writestr(name, data)
    return out.getvalue()


def part(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        return source.read(name)


def zero_bomb(archive: bytes, name: str, size: int) -> bytes:
    """A part of ``size`` zero-ish bytes that deflates ~1000:1 (finding 3: 512 KB → 200 MB)."""
    return rezip(archive, {name: b"0" * size}, level=9)


def many_entries(archive: bytes, count: int) -> bytes:
    return rezip(archive, {f"customXml/item{i}.bin": b"" for i in range(count)})


def entity_bomb(document_xml: bytes) -> bytes:
    """word/document.xml with a "billion laughs" DTD whose last entity sits in the first run."""
    entities = ['<!ENTITY lol0 "哈哈哈哈哈哈哈哈哈哈">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    doctype = "<!DOCTYPE w:document [" + "".join(entities) + "]>"
    body = document_xml.split(b"?>", 1)[1]
    body = body.replace(b"<w:t>", b"<w:t>&lol9;", 1)
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + doctype.encode() + body


def lying_sizes(archive: bytes, name: str, real_size: int, declared: int) -> bytes:
    """A part that inflates to ``real_size`` while the central directory says ``declared``."""
    built = rezip(archive, {name: b"1" * real_size}, level=9)
    data = bytearray(built)
    target = name.encode()
    offset = data.rfind(b"PK\x01\x02")  # walk the central directory back to the entry
    while offset >= 0:
        name_len = struct.unpack_from("<H", data, offset + 28)[0]
        if bytes(data[offset + 46 : offset + 46 + name_len]) == target:
            struct.pack_into("<L", data, offset + 24, declared)  # uncompressed size
            return bytes(data)
        offset = data.rfind(b"PK\x01\x02", 0, offset)
    raise ValueError(name)


def xlsx(rows: Iterable[Iterable[object]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def shared_strings_bomb(size: int) -> bytes:
    """An XLSX whose xl/sharedStrings.xml holds one string of ``size`` characters."""
    table = xlsx([["问题", "答案"], ["快递放在哪里", "南门快递柜"]])
    strings = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
        b"<si><t>" + b"A" * size + b"</t></si></sst>"
    )
    return rezip(table, {"xl/sharedStrings.xml": strings}, level=9)


def row_gap_bomb() -> bytes:
    """A few hundred bytes of sheet XML asking for a million rows 16,384 cells wide."""
    table = xlsx([["问题", "答案"], ["快递放在哪里", "南门快递柜"]])
    sheet = part(table, "xl/worksheets/sheet1.xml")
    sheet = sheet.replace(b'<dimension ref="A1:B2"/>', b'<dimension ref="A1:XFD1048576"/>')
    sheet = sheet.replace(
        b"</sheetData>",
        b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>',
    )
    return rezip(table, {"xl/worksheets/sheet1.xml": sheet})


def pdf(pages: Iterable[Iterable[str]]) -> bytes:
    """A real PDF with Chinese text (reportlab's built-in STSong-Light, no font file needed)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    for lines in pages:
        page.setFont("STSong-Light", 11)
        y = 800
        for line in lines:
            page.drawString(50, y, line)
            y -= 16
            if y < 40:
                page.showPage()
                page.setFont("STSong-Light", 11)
                y = 800
        page.showPage()
    page.save()
    return buffer.getvalue()


def pdf_with_content(content: bytes, *, pages: int = 1) -> bytes:
    """A hand-written PDF whose pages share one FlateDecode content stream (with a font, so a
    text extractor decodes it): a stream of 200 MB of spaces deflates to ~200 KB."""
    compressed = zlib.compress(content, 9)
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(compressed) + compressed + b"\nendstream",
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 3 0 R "
        b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
    )
    objects += [page] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def pdf_bomb(size: int = 200 * MB) -> bytes:
    return pdf_with_content(b" " * size)


def slow_pdf(operations: int = 100_000, pages: int = 3) -> bytes:
    """Text operators by the hundred thousand: 4 MB inflated, ~25 s of pypdf's parsing per page."""
    return pdf_with_content(b"BT /F1 12 Tf 72 712 Td (Hello) Tj ET\n" * operations, pages=pages)
