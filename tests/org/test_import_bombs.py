"""Residents files an attacker builds (issue 19, finding 3 and the CSV 5xx of finding 6): a zip bomb
is refused in the request; anything else is read by the import job, and a file that cannot be read
ends "failed" with its reason once, never a 5xx, never a retried job, never a half-imported file."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from core.db import get_database
from core.queue import get_queue
from core.settings import Settings
from org.models import Resident, ResidentImport
from tests import bombs
from tests.conftest import LiveServer, wait_for

IMPORTS = "/api/communities/1/residents/imports"


def _residents(settings: Settings) -> int:
    with get_database(settings).session() as session:
        return (
            session.scalar(select(func.count()).select_from(Resident).where(Resident.community_id == 1)) or 0
        )


def _finished(client: httpx.Client, import_id: int) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (j := client.get(f"/api/resident-imports/{import_id}").json())["status"] in ("done", "failed")
            and j
        ),
        timeout=60,
        message=f"import {import_id}",
    )


def test_a_zip_bomb_spreadsheet_is_refused_before_anything_reads_it(server: LiveServer) -> None:
    strings = bombs.shared_strings_bomb(300 * bombs.MB)  # 0.3 MB uploaded, 300 MB unzipped
    dense = bombs.shared_strings_bomb(50 * bombs.MB)
    with server.login("admin") as admin:
        big = admin.post(IMPORTS, files={"file": ("住户.xlsx", strings)})
        ratio = admin.post(IMPORTS, files={"file": ("住户.xlsx", dense)})
    assert big.status_code == 413
    assert big.json()["error"]["message"].startswith("xlsx 文件解压后有 300 MB（上限 64 MB）")
    assert ratio.status_code == 422 and "疑似压缩炸弹" in ratio.json()["error"]["message"]
    with get_database(server.settings).session() as session:
        assert session.scalar(select(func.count()).select_from(ResidentImport)) == 0
    assert get_queue("low", settings=server.settings).count == 0


def test_files_the_worker_cannot_read_fail_once_with_their_reason(
    server: LiveServer, start_worker: Any
) -> None:
    start_worker(server.settings)
    before = _residents(server.settings)
    header = "姓名,手机号,楼栋,单元,房号\n"
    cases = [
        (
            "超长单元格.csv",
            f"{header}周晓燕,13900001111,7栋,1单元,301\n吴强,13900003333,{'栋' * 200 * 1024},1单元,303\n",
            "CSV 第 3 行有超过 128 KB 的单元格（常见原因：引号没有成对），请检查后再导入",
        ),
        (
            "没有姓名列.csv",
            "手机号,房号\n13900001111,301\n",
            "缺少“姓名”列；表头应包含：姓名、手机号、楼栋、单元、房号、身份",
        ),
        (
            "百万空行.xlsx",
            bombs.row_gap_bomb(),
            "单个文件最多 50000 行（含空行），请删除多余的空行或拆分后导入",
        ),
    ]
    with server.login("admin") as admin:
        uploads = []
        for name, content, _ in cases:
            response = admin.post(
                IMPORTS, files={"file": (name, content.encode() if isinstance(content, str) else content)}
            )
            assert response.status_code == 202, (name, response.text)
            uploads.append(response.json()["id"])
        reports = [_finished(admin, import_id) for import_id in uploads]
    for (name, _, reason), report in zip(cases, reports, strict=True):
        assert report["status"] == "failed", name
        assert report["report"]["error"] == reason, name
        assert report["processed_rows"] == 0 and report["finished_at"], name
    queue = get_queue("low", settings=server.settings)
    assert queue.failed_job_registry.count == 0 and queue.scheduled_job_registry.count == 0  # not retried
    assert _residents(server.settings) == before  # not one row of a failed file
