"""The spreadsheets staff download: CSV that Excel opens (UTF-8 with a BOM, CRLF), every cell
safe to open.

A cell that begins with ``= + - @``, a tab or a carriage return is a formula to Excel, WPS and
LibreOffice: ``=HYPERLINK("http://…","点我")`` sends the supervisor to a site, DDE formulas once
ran programs. Residents' messages, crawled posts and names staff type can all begin that way, so
every export writes its rows through ``csv_text`` and every text cell through ``safe_cell``:
OWASP's advice, a leading single quote, which spreadsheets show as text. The full-width forms
(＝ ＋ － ＠) are quoted too: Chinese spreadsheet software may read them as the ASCII ones.
Numbers are written as they are: they cannot be formulas, and stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def safe_cell(value: object) -> object:
    """The value as a spreadsheet will read it as data, never as a formula."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A whole CSV file: BOM, header, then each row with every cell through ``safe_cell``."""
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads UTF-8 (and so the Chinese) only with the BOM
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()
