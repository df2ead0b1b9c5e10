"""FAQ tables as customer-service teams keep them, with every bad row reported."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import Workbook

from core.errors import InvalidInput
from knowledge.faq import read_faq_table

COMMUNITIES = {"cuihu": 1, "翠湖花园": 1, "jinjiang": 2, "锦江苑": 2, "binjiang": 3, "滨江壹号": 3}

TABLE = """问题,相似问题,答案,分类,适用小区,生效日期,失效日期
物业费怎么交,在哪交物业费|物业费可以微信交吗,可在 App “缴费”页或物业服务中心前台缴纳。,缴费,全部,,
翠湖花园停车月卡多少钱,月卡价格；停车费,地面车位每月 200 元。,停车,翠湖花园,2026-01-01,2026-12-31
,没有问题的行,答案,其他,,,
装修可以几点施工,,,装修,,,
宠物可以进电梯吗,,请抱起或牵短绳，避开高峰。,宠物,锦江苑、海景湾,,
门禁卡丢了怎么办,,带身份证到前台补办。,门禁,,2026/13/01,
夏季用电高峰停电通知,,以公告为准。,停电,,2026-08-01,2026-07-01
物业费怎么交,,重复的问题。,缴费,,,
滨江壹号快递放哪,快递放哪里|快递柜在哪,快递柜在 2 号门岗旁。,快递,binjiang jinjiang,2026年3月1日,
"""


def test_good_rows_kept_and_each_bad_row_reported() -> None:
    table = read_faq_table("faq.csv", TABLE.encode("utf-8"), communities=COMMUNITIES)
    assert [r.question for r in table.rows] == ["物业费怎么交", "翠湖花园停车月卡多少钱", "滨江壹号快递放哪"]
    fee, parking, parcels = table.rows
    assert fee.similar == ("在哪交物业费", "物业费可以微信交吗") and fee.community_ids == ()
    assert parking.community_ids == (1,) and parking.similar == ("月卡价格", "停车费")
    assert (parking.effective_from, parking.effective_until) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert parcels.community_ids == (3, 2) and parcels.effective_from == dt.date(2026, 3, 1)
    errors = {(e.row, e.column): e.message for e in table.errors}
    assert errors == {
        (4, "问题"): "问题不能为空",
        (5, "答案"): "答案不能为空",
        (6, "适用小区"): "找不到小区“海景湾”",
        (7, "生效日期"): "日期格式应为 2026-03-01，而不是“2026/13/01”",
        (8, "失效日期"): "失效日期早于生效日期",
        (9, "问题"): "与第 2 行问题重复",
    }


def test_validity_dates() -> None:
    table = read_faq_table("faq.csv", TABLE.encode("utf-8"), communities=COMMUNITIES)
    parking = table.rows[1]
    assert parking.in_force(dt.date(2026, 6, 1))
    assert not parking.in_force(dt.date(2025, 12, 31)) and not parking.in_force(dt.date(2027, 1, 1))
    assert table.rows[0].in_force(dt.date(1999, 1, 1))


def test_xlsx_with_dates_as_excel_keeps_them() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["标准问题", "相似问法", "标准答案", "类别", "适用项目", "生效时间", "截止日期"])
    sheet.append(
        [
            "停水怎么办",
            "没水了\n家里停水",
            "先看公告栏或 App 通知。",
            "停水",
            "cuihu",
            dt.datetime(2026, 5, 1),
            None,
        ]
    )
    buffer = io.BytesIO()
    workbook.save(buffer)
    [row] = read_faq_table("faq.xlsx", buffer.getvalue(), communities=COMMUNITIES).rows
    assert row.similar == ("没水了", "家里停水") and row.effective_from == dt.date(2026, 5, 1)
    assert row.community_ids == (1,) and row.category == "停水"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "文件是空的"),
        ("标题,内容\n一,二\n".encode(), "缺少“问题”列"),
        ("问题,分类\n物业费怎么交,缴费\n".encode(), "缺少“答案”列"),
        ("问题,答案\n".encode(), "只有表头"),
    ],
)
def test_unusable_tables_are_refused(content: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_faq_table("faq.csv", content, communities=COMMUNITIES)


def test_the_demo_faq_reads_cleanly_and_covers_what_residents_ask() -> None:
    import re
    from importlib.resources import files

    content = files("knowledge").joinpath("demo/faq.csv").read_bytes()
    table = read_faq_table("faq.csv", content, communities=COMMUNITIES)
    assert table.errors == []
    assert len(table.rows) >= 30
    categories = {r.category for r in table.rows}
    assert {"缴费", "报修", "停车", "装修", "宠物", "门禁", "停水停电", "应急"} <= categories
    # Answers name no phone number but the public emergency ones: the duty phone comes from the
    # community's own record, never from text that might go stale.
    for row in table.rows:
        phones = re.findall(r"\d{3,4}-\d{3,4}(?:-\d{3,4})?|\d{5,}", row.answer)
        assert phones == [], (row.question, phones)
