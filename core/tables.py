"""Reading the spreadsheets staff upload: CSV (UTF-8, UTF-8 with BOM, or GBK as Excel saves it)
and XLSX, with Chinese or English headers mapped to field names."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from core.errors import InvalidInput

MAX_ROWS = 50_000


def read_raw_rows(filename: str, content: bytes) -> list[list[Any]]:
    """The non-empty rows of the first sheet, header first."""
    name = filename.lower()
    if name.endswith((".xlsx", ".xlsm")):
        rows = _xlsx_rows(content)
    elif name.endswith((".csv", ".txt")):
        rows = _csv_rows(content)
    else:
        raise InvalidInput("只支持 CSV 或 XLSX 文件")
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
    return [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]


def _xlsx_rows(content: bytes) -> list[list[Any]]:
    from openpyxl import load_workbook  # deferred: only imports need it

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise InvalidInput("无法读取 XLSX 文件，文件可能已损坏") from exc
    sheet = workbook.worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True) if any(c not in (None, "") for c in r)]
    workbook.close()
    for r in rows:  # Excel stores phone numbers as numbers: 13812345678.0
        for i, v in enumerate(r):
            if isinstance(v, float) and v.is_integer():
                r[i] = int(v)
    return rows
