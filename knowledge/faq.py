"""FAQ tables (CSV/XLSX) as customer-service teams keep them: one question per row with its
similar phrasings, the answer, a category, the communities it applies to and the dates it is
valid. Bad rows are reported with row number, column and reason; good rows are kept.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from core.errors import InvalidInput
from core.tables import keyed_rows, read_raw_rows
from core.uploads import UploadLimits
from org.imports import RowError

COLUMNS: dict[str, str] = {
    "问题": "question",
    "标准问题": "question",
    "标准问": "question",
    "question": "question",
    "相似问题": "similar",
    "相似问法": "similar",
    "相似问": "similar",
    "similar": "similar",
    "similar_questions": "similar",
    "答案": "answer",
    "回答": "answer",
    "标准答案": "answer",
    "answer": "answer",
    "分类": "category",
    "类别": "category",
    "category": "category",
    "适用小区": "communities",
    "适用项目": "communities",
    "小区": "communities",
    "communities": "communities",
    "生效日期": "effective_from",
    "生效时间": "effective_from",
    "开始日期": "effective_from",
    "effective_from": "effective_from",
    "失效日期": "effective_until",
    "截止日期": "effective_until",
    "结束日期": "effective_until",
    "effective_until": "effective_until",
}
MAX_QUESTION_CHARS = 200
MAX_ANSWER_CHARS = 2000
ALL_COMMUNITIES = {"", "全部", "全部小区", "所有小区", "通用", "all", "*"}
_LIST_SEPARATORS = re.compile(r"[\n|｜;；]+")
_COMMUNITY_SEPARATORS = re.compile(r"[,，、;；\s]+")
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]00:00(?::00)?)?$")


@dataclass(frozen=True)
class FaqRow:
    row: int
    question: str
    answer: str
    similar: tuple[str, ...] = ()
    category: str = ""
    community_ids: tuple[int, ...] = ()  # empty: every community of the company
    effective_from: dt.date | None = None
    effective_until: dt.date | None = None

    def in_force(self, day: dt.date) -> bool:
        if self.effective_from and day < self.effective_from:
            return False
        return not (self.effective_until and day > self.effective_until)


@dataclass
class FaqTable:
    rows: list[FaqRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def parse_date(text: str) -> dt.date | None:
    """2026-03-01, 2026/3/1, 2026.3.1, 2026年3月1日; None for blank; ValueError otherwise."""
    text = text.strip()
    if not text:
        return None
    m = _DATE.match(text)
    if not m:
        raise ValueError(text)
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def read_faq_table(
    filename: str,
    content: bytes,
    *,
    communities: dict[str, int],
    out_of_scope: frozenset[str] = frozenset(),
    limits: UploadLimits | None = None,
) -> FaqTable:
    """Parse and check an FAQ table. ``communities`` maps the code and name of each community the
    table may apply to onto its id; ``out_of_scope`` names the company's other communities. A row
    naming any other community is an error, never silently applied everywhere."""
    rows = keyed_rows(
        read_raw_rows(filename, content, limits=limits),
        columns=COLUMNS,
        required="question",
        missing_message="缺少“问题”列；表头应包含：问题、相似问题、答案、分类、适用小区、生效日期、失效日期",
    )
    if not rows:
        raise InvalidInput("表格里只有表头，没有问答")
    if "answer" not in rows[0]:
        raise InvalidInput("缺少“答案”列")
    table = FaqTable()
    seen: dict[str, int] = {}
    for index, row in enumerate(rows, start=2):
        errors: list[RowError] = []
        question = row.get("question", "").strip()
        answer = row.get("answer", "").strip()
        if not question:
            errors.append(RowError(index, "问题", "问题不能为空"))
        elif len(question) > MAX_QUESTION_CHARS:
            errors.append(RowError(index, "问题", f"问题不能超过 {MAX_QUESTION_CHARS} 字"))
        elif question in seen:
            errors.append(RowError(index, "问题", f"与第 {seen[question]} 行问题重复"))
        if not answer:
            errors.append(RowError(index, "答案", "答案不能为空"))
        elif len(answer) > MAX_ANSWER_CHARS:
            errors.append(RowError(index, "答案", f"答案不能超过 {MAX_ANSWER_CHARS} 字"))
        ids: list[int] = []
        named = row.get("communities", "").strip()
        if named.lower() not in ALL_COMMUNITIES:
            for name in _COMMUNITY_SEPARATORS.split(named):
                if not name:
                    continue
                if name in out_of_scope:
                    errors.append(RowError(index, "适用小区", f"小区“{name}”不在本文件的适用范围内"))
                elif name not in communities:
                    errors.append(RowError(index, "适用小区", f"找不到小区“{name}”"))
                elif communities[name] not in ids:
                    ids.append(communities[name])
        dates: dict[str, dt.date | None] = {}
        for key, column in (("effective_from", "生效日期"), ("effective_until", "失效日期")):
            try:
                dates[key] = parse_date(row.get(key, ""))
            except ValueError:
                errors.append(RowError(index, column, f"日期格式应为 2026-03-01，而不是“{row.get(key)}”"))
        start, end = dates.get("effective_from"), dates.get("effective_until")
        if start and end and end < start:
            errors.append(RowError(index, "失效日期", "失效日期早于生效日期"))
        if errors:
            table.errors.extend(errors)
            continue
        seen[question] = index
        similar = tuple(
            dict.fromkeys(
                s.strip()
                for s in _LIST_SEPARATORS.split(row.get("similar", ""))
                if s.strip() and s.strip() != question
            )
        )
        table.rows.append(
            FaqRow(
                row=index,
                question=question,
                answer=answer,
                similar=similar,
                category=row.get("category", "").strip(),
                community_ids=tuple(ids),
                effective_from=start,
                effective_until=end,
            )
        )
    return table
