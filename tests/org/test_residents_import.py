"""Importing the residents directory: bad rows reported, good rows stored once, via API and worker."""

import io

from openpyxl import Workbook
from sqlalchemy import func, select

from core.db import get_database
from core.settings import Settings
from org import service
from org.imports import import_rows, read_table
from org.models import IdentityKind, Resident
from tests.conftest import LiveServer, wait_for

GOOD_AND_BAD = """姓名,手机号,楼栋,单元,房号,身份,备注
周晓燕,13900001111,7栋,1单元,301,业主,
,13900002222,7栋,1单元,302,业主,没有姓名
吴强,1390000333,7栋,1单元,303,租户,手机号少一位
郑洁,13900004444,7栋,,304,业主,缺单元
冯磊,13900005555,7栋,2单元,101,房东,身份不对
何静,+86 139-0000-6666,7栋,2单元,102,家属,
韩梅,13900006666,7栋,2单元,103,业主,与上一行手机号相同
"""


def _import(settings: Settings, text: str, community_code: str = "cuihu"):  # type: ignore[no-untyped-def]
    with get_database(settings).session() as session:
        community = service.get_community_by_code(session=session, code=community_code)
        return import_rows(
            session=session, community_id=community.id, rows=read_table("r.csv", text.encode())
        )


def test_bad_rows_are_reported_and_good_rows_imported(demo: Settings) -> None:
    report = _import(demo, GOOD_AND_BAD)
    assert (report.total, report.created) == (7, 2)
    by_row = {(e.row, e.column): e.message for e in report.errors}
    assert by_row[(3, "姓名")] == "姓名不能为空"
    assert "手机号格式不正确" in by_row[(4, "手机号")]
    assert by_row[(4, "手机号")].endswith("******0333")  # the bad value is shown masked
    assert by_row[(5, "房号")] == "楼栋、单元、房号需同时填写"
    assert "房东" in by_row[(6, "身份")]
    assert by_row[(8, "手机号")] == "与第 7 行手机号重复"
    with get_database(demo).session() as session:
        community = service.get_community_by_code(session=session, code="cuihu")
        he = service.find_resident(
            session=session, community_id=community.id, kind=IdentityKind.mobile, value="13900006666"
        )
        assert he is not None and he.name == "何静"
        assert service.room_label(he.room) == "7栋2单元102"


def test_importing_the_same_file_again_changes_nothing(demo: Settings) -> None:
    first = _import(demo, GOOD_AND_BAD)
    second = _import(demo, GOOD_AND_BAD)
    assert first.created == 2
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2)
    changed = _import(demo, "姓名,手机号\n周晓燕,13900001111\n何静,13900006666\n".replace("何静", "何静怡"))
    assert (changed.updated, changed.unchanged) == (1, 1)


def test_gbk_csv_from_excel_and_xlsx_both_read(demo: Settings) -> None:
    gbk = "姓名,手机号,楼栋,单元,房号\n陶然,13900007777,1栋,1单元,101\n".encode("gbk")
    assert read_table("excel.csv", gbk)[0]["name"] == "陶然"
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["姓名", "手机号", "楼栋", "单元", "房号"])
    sheet.append(["蒋楠", 13900008888, "2栋", "1单元", 502])  # Excel keeps numbers as numbers
    buffer = io.BytesIO()
    workbook.save(buffer)
    rows = read_table("residents.xlsx", buffer.getvalue())
    assert rows == [
        {"name": "蒋楠", "mobile": "13900008888", "building": "2栋", "unit": "1单元", "room": "502"}
    ]


def test_upload_through_the_api_is_imported_by_a_worker(server: LiveServer, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(server.settings)
    with server.login("admin") as admin:
        r = admin.post(
            "/api/communities/1/residents/imports",
            files={"file": ("residents.csv", GOOD_AND_BAD.encode(), "text/csv")},
        )
        assert r.status_code == 202, r.text
        import_id = r.json()["id"]
        done = wait_for(
            lambda: (j := admin.get(f"/api/resident-imports/{import_id}").json())["status"] == "done" and j,
            message="the import to finish",
        )
        listed = admin.get("/api/communities/1/residents", params={"q": "13900001111"}).json()
    assert done["report"]["created"] == 2
    assert len(done["report"]["errors"]) == 5
    assert listed["total"] == 1
    assert listed["items"][0]["mobile"] == "139****1111"
    assert listed["items"][0]["name"] == "周**"


def test_upload_errors_are_clear(server: LiveServer) -> None:
    """What the request itself can tell (a header or a row is the worker's: test_import_bombs)."""
    with server.login("admin") as admin:
        wrong_type = admin.post(
            "/api/communities/1/residents/imports", files={"file": ("a.pdf", b"%PDF", "x")}
        )
        empty = admin.post("/api/communities/1/residents/imports", files={"file": ("a.csv", b"")})
        broken_xlsx = admin.post(
            "/api/communities/1/residents/imports", files={"file": ("a.xlsx", b"PK\x03\x04")}
        )
        unknown = admin.post("/api/communities/99/residents/imports", files={"file": ("a.csv", b"x")})
    assert (
        wrong_type.status_code == 422 and wrong_type.json()["error"]["message"] == "只支持 CSV 或 XLSX 文件"
    )
    assert empty.status_code == 422 and empty.json()["error"]["message"] == "文件是空的"
    assert broken_xlsx.status_code == 422
    assert unknown.status_code == 404
    with get_database(server.settings).session() as session:
        assert (
            session.scalar(select(func.count()).select_from(Resident).where(Resident.community_id == 1)) == 8
        )


def test_only_admins_import(server: LiveServer) -> None:
    with server.login("supervisor") as supervisor:
        r = supervisor.post(
            "/api/communities/1/residents/imports", files={"file": ("a.csv", GOOD_AND_BAD.encode())}
        )
    assert r.status_code == 403


def test_an_overlong_cell_is_that_rows_error_not_the_imports(demo: Settings) -> None:
    text = (
        "姓名,手机号,备注\n"
        + "长" * 70
        + ",13900009999,\n沈清,13900008880,"
        + "备" * 600
        + "\n严宽,13900008881,\n"
    )
    report = _import(demo, text)
    assert report.created == 1
    assert {(e.row, e.column) for e in report.errors} == {(2, "姓名"), (3, "备注")}
