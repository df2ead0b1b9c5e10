"""The knowledge base in the database: sources scoped to communities, replaced, deleted; FAQ
entries a community may use today. Real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
from importlib.resources import files
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import get_database
from core.errors import InvalidInput, NotFound
from core.settings import Settings
from knowledge import service
from knowledge.models import FaqEntry, Passage
from org import service as org_service
from tests.anju.test_cli import anju
from tests.knowledge.test_ingestion import CORPUS, needs_corpus

DEMO_FAQ = files("knowledge").joinpath("demo/faq.csv").read_bytes()
LIFT = "一、电梯困人\n接到报警后，值班人员立即安抚被困人员，并通知维保单位到场救援。\n".encode()


def _ids(session, *codes: str) -> list[int]:  # type: ignore[no-untyped-def]
    return [org_service.get_community_by_code(session=session, code=c).id for c in codes]


def test_documents_are_stored_once_scoped_replaced_and_deleted(demo: Settings) -> None:
    db = get_database(demo)
    with db.session() as session:
        cuihu, jinjiang = _ids(session, "cuihu", "jinjiang")
        first = service.ingest(
            session=session, company_id=1, filename="电梯.txt", content=LIFT, community_ids=[cuihu]
        )
        again = service.ingest(
            session=session, company_id=1, filename="电梯副本.txt", content=LIFT, community_ids=[cuihu]
        )
        everywhere = service.ingest(session=session, company_id=1, filename="电梯.txt", content=LIFT)
        assert first.created and not again.created and again.source.id == first.source.id
        assert everywhere.created and everywhere.source.id != first.source.id  # another scope
        [passage] = first.source.passages
        assert passage.section == "一、电梯困人" and "维保单位" in passage.text
        source_id = first.source.id
    with db.session() as session:
        for_cuihu = {s.id for s in service.list_sources(session=session, company_id=1, community_id=cuihu)}
        for_jinjiang = {
            s.id for s in service.list_sources(session=session, company_id=1, community_id=jinjiang)
        }
        assert source_id in for_cuihu and source_id not in for_jinjiang
        replaced = service.ingest(
            session=session,
            company_id=1,
            filename="电梯.txt",
            content="一、电梯困人\n值班人员 5 分钟内到达。\n二、电梯停运\n停运前一天通知住户。\n".encode(),
            community_ids=[cuihu],
            replace_source_id=source_id,
        )
        assert replaced.source.id == source_id and replaced.source.version == 2
        assert [p.section for p in replaced.source.passages] == ["一、电梯困人", "二、电梯停运"]
    with db.session() as session:
        service.delete_source(session=session, source_id=source_id, company_id=1)
    with db.session() as session:
        assert (
            session.scalar(select(func.count()).select_from(Passage).where(Passage.source_id == source_id))
            == 0
        )
        with pytest.raises(NotFound):
            service.get_source(session=session, source_id=source_id)


def test_faq_entries_follow_community_and_dates(demo: Settings) -> None:
    db = get_database(demo)
    with db.session() as session:
        result = service.ingest(session=session, company_id=1, filename="faq.csv", content=DEMO_FAQ)
        assert result.created and result.errors == []
        cuihu, jinjiang, binjiang = _ids(session, "cuihu", "jinjiang", "binjiang")
    with db.session() as session:
        today = dt.date(2026, 11, 22)
        questions = {
            c: {e.question for e in service.faq_entries_for(session=session, community_id=c, day=today)}
            for c in (cuihu, jinjiang, binjiang)
        }
        assert "翠湖花园停车费多少" in questions[cuihu] and "翠湖花园停车费多少" not in questions[jinjiang]
        assert "锦江苑物业费标准" in questions[jinjiang] and "锦江苑物业费标准" not in questions[binjiang]
        assert "物业费怎么交" in questions[cuihu] & questions[jinjiang] & questions[binjiang]
        before = {
            e.question
            for e in service.faq_entries_for(session=session, community_id=cuihu, day=dt.date(2025, 6, 1))
        }
        assert "物业费多少钱一平方" not in before  # effective from 2026-01-01
        assert "物业费怎么交" in before


def test_a_scoped_faq_table_cannot_reach_other_communities(demo: Settings) -> None:
    table = "问题,答案,适用小区\n翠湖班车几点,早 7:30 发车。,翠湖花园\n锦江班车几点,早 8 点发车。,锦江苑\n"
    with get_database(demo).session() as session:
        [cuihu] = _ids(session, "cuihu")
        result = service.ingest(
            session=session, company_id=1, filename="班车.csv", content=table.encode(), community_ids=[cuihu]
        )
        assert [e.question for e in result.source.faq_entries] == ["翠湖班车几点"]
        [error] = result.errors
        assert (error.row, error.column) == (3, "适用小区") and "不在本文件的适用范围内" in error.message
        assert session.scalar(select(func.count()).select_from(FaqEntry)) == 1


def test_bad_uploads_store_nothing(demo: Settings) -> None:
    with get_database(demo).session() as session:
        with pytest.raises(InvalidInput, match="不支持的文件类型"):
            service.ingest(session=session, company_id=1, filename="a.exe", content=b"MZ")
        with pytest.raises(InvalidInput, match="请选择适用的小区"):
            service.ingest(session=session, company_id=1, filename="a.txt", content=LIFT, community_ids=[])
        with pytest.raises(NotFound):
            service.ingest(session=session, company_id=1, filename="a.txt", content=LIFT, community_ids=[999])
        with pytest.raises(InvalidInput, match="没有问答"):
            service.ingest(session=session, company_id=1, filename="a.csv", content="问题,答案\n,\n".encode())
        with pytest.raises(InvalidInput, match="类型需与原文件一致"):
            doc = service.ingest(session=session, company_id=1, filename="a.txt", content=LIFT)
            service.ingest(
                session=session,
                company_id=1,
                filename="b.csv",
                content=DEMO_FAQ,
                replace_source_id=doc.source.id,
            )


@needs_corpus
def test_anju_ingest_loads_a_folder_of_standards(demo: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "标准"
    assert CORPUS is not None
    shutil.copytree(CORPUS, folder)
    (folder / "notes.exe").write_bytes(b"MZ")  # not a knowledge file: skipped
    first = anju(demo, "ingest", str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("已导入") == 5
    assert "《物业品质管理工作指引》" in first.stdout
    again = anju(demo, "ingest", str(folder))
    assert again.returncode == 0 and again.stdout.count("已存在，未改动") == 5
    scoped = anju(demo, "ingest", str(folder / "service-assurance-plan.txt"), "--community", "nowhere")
    assert scoped.returncode == 1
