"""Reading the spreadsheets staff upload: CSV (UTF-8, UTF-8 with BOM, or GBK as Excel saves it)
and XLSX, with Chinese or English headers mapped to field names.

The request only runs :func:`check_table` (type, not empty, no declared zip bomb); rows are read
by a worker, and whatever a malformed file makes a parser raise becomes an InvalidInput.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from typing import Any

from core.errors import AnjuError, InvalidInput, PayloadTooLarge
from core.uploads import UploadLimits, check_container, check_xml_parts, default_limits, is_timeout

log = logging.getLogger(__name__)

MAX_ROWS = 50_000
# Rows read from a sheet, empty ones included: openpyxl fills a gap between <row r="2"> and
# <row r="1048576"> with a million empty rows, which a few bytes of XML can ask for.
MAX_SHEET_ROWS = 2 * MAX_ROWS
# Columns kept per row: the tables read here have a dozen; a cell at column XFD would otherwise
# make every row 16,384 wide.
MAX_COLUMNS = 64


def check_table(filename: str, content: bytes, *, limits: UploadLimits) -> None:
    """What the request checks before storing a table: type, not empty, no declared bomb."""
    if not filename.lower().endswith((".xlsx", ".xlsm", ".csv", ".txt")):
        raise InvalidInput("只支持 CSV 或 XLSX 文件")
    if not content.strip():
        raise InvalidInput("文件是空的")
    check_container(filename, content, limits=limits)


def read_raw_rows(filename: str, content: bytes, *, limits: UploadLimits | None = None) -> list[list[Any]]:
    """The non-empty rows of the first sheet, header first (for the worker)."""
    check_table(filename, content, limits=limits or default_limits())
    rows = _xlsx_rows(content) if filename.lower().endswith((".xlsx", ".xlsm")) else _csv_rows(content)
    if not rows:
        raise InvalidInput("文件是空的")
    if len(rows) - 1 > MAX_ROWS:
        raise InvalidInput(f"单个文件最多 {MAX_ROWS} 行，请拆分后导入")
    return rows


def keyed_rows(
    raw_rows: list[list[Any]], *, columns: dict[str, str], required: str, missing_message: str
) -> list[dict[str, str]]:
    """Data rows as {field: text}, by the header row; InvalidInput when ``required`` has no column."""
    header = [str(h or "").strip().lower() for h in raw_rows[0]]
    fields = [columns.get(h) for h in header]
    if required not in fields:
        raise InvalidInput(missing_message)
    return [{f: _text(v) for f, v in zip(fields, raw, strict=False) if f} for raw in raw_rows[1:]]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()  # Excel keeps dates as midnight datetimes
    return str(value).strip()


def _csv_rows(content: bytes) -> list[list[Any]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise InvalidInput("无法识别文件编码，请另存为 UTF-8 CSV")
    reader = csv.reader(io.StringIO(text))
    rows: list[list[Any]] = []
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(row[:MAX_COLUMNS])
    except csv.Error as exc:  # a field over csv's 128 KiB limit, a NUL byte, a stray quote
        limit_kb = csv.field_size_limit() // 1024
        if "field larger than field limit" in str(exc):
            raise InvalidInput(
                f"CSV 第 {reader.line_num} 行有超过 {limit_kb} KB 的单元格（常见原因：引号没有成对），"
                "请检查后再导入"
            ) from None
        raise InvalidInput(f"CSV 第 {reader.line_num} 行格式有误，请用 Excel 另存为 CSV 后再导入") from None
    return rows


def _xlsx_rows(content: bytes) -> list[list[Any]]:
    from openpyxl import load_workbook  # deferred: only imports need it

    check_xml_parts(content, label="xlsx 文件")
    rows: list[list[Any]] = []
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            for read, values in enumerate(sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS), start=1):
                if read > MAX_SHEET_ROWS:
                    raise InvalidInput(f"单个文件最多 {MAX_ROWS} 行（含空行），请删除多余的空行或拆分后导入")
                if any(c not in (None, "") for c in values):
                    row = list(values)
                    while row[-1] in (None, ""):  # openpyxl pads every row to max_col
                        row.pop()
                    rows.append(row)
        finally:
            workbook.close()
    except AnjuError:
        raise
    except MemoryError:
        raise PayloadTooLarge("表格过于庞大，解析时内存不足，请拆分后导入") from None
    except Exception as exc:  # untrusted bytes in openpyxl: it raises many kinds for a broken file
        if is_timeout(exc):
            raise
        log.warning("could not read an uploaded xlsx file: %s: %s", type(exc).__name__, exc)
        raise InvalidInput("无法读取 XLSX 文件，文件可能已损坏") from exc
    for r in rows:  # Excel stores phone numbers as numbers: 13812345678.0
        for i, v in enumerate(r):
            if isinstance(v, float) and v.is_integer():
                r[i] = int(v)
    return rows
