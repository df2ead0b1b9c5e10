"""The versioned index and hybrid retrieval: scope, validity, stale entries never shown, whole-index
swaps under concurrent queries, the LangChain retriever, and the evaluation command."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from core.db import get_database
from core.settings import Settings
from knowledge import service
from knowledge.models import KnowledgeIndex
from knowledge.retrieval import KnowledgeRetriever, get_search
from org.models import Community, Company
from tests.conftest import run_burst_worker, settings_env

FAQ = (
    "问题,相似问题,答案,分类,适用小区,生效日期,失效日期\n"
    "游泳池几点开放,泳池开放时间,翠湖花园泳池每天 9:00-21:00 开放。,设施,翠湖花园,,\n"
    "锦江苑泳池几点开放,泳池开放时间,锦江苑泳池每天 10:00-20:00 开放。,设施,锦江苑,,\n"
    "去年的春节停车优惠,春节停车,春节期间临时停车免费。,停车,全部,2020-01-01,2020-02-01\n"
)
STANDARD = (
    "# 示范标准\n\n## 一、设施\n\n### 1.1 游泳池\n\n"
    "游泳池由持证救生员值守，开放前检测水质，雷雨天气暂停开放。\n"
)


def _company_and_communities(settings: Settings) -> tuple[int, dict[str, int]]:
    with get_database(settings).session() as session:
        company = session.scalars(select(Company)).one()
        codes = {c.code: c.id for c in session.scalars(select(Community))}
        return company.id, codes


def _ingest(settings: Settings, company_id: int, name: str, text: str, **kw: object) -> int:
    with get_database(settings).session() as session:
        return service.ingest(
            session=session, company_id=company_id, filename=name, content=text.encode(), **kw
        ).source.id  # type: ignore[arg-type]


def _search(settings: Settings, company_id: int, community_id: int, query: str, **kw: object) -> list:
    with get_database(settings).session(readonly=True) as session:
        return get_search(settings).search(
            session, company_id=company_id, community_id=community_id, query=query, **kw
        )  # type: ignore[arg-type]


def test_scope_validity_and_faq_first(demo: Settings) -> None:
    company_id, codes = _company_and_communities(demo)
    _ingest(demo, company_id, "faq.csv", FAQ)
    _ingest(demo, company_id, "standard.md", STANDARD)
    first = service.rebuild_index(demo, company_id=company_id)
    assert first.built and first.index.passages == 1 and first.index.faq_entries == 3

    cuihu = _search(demo, company_id, codes["cuihu"], "泳池几点开门")
    assert cuihu[0].kind == "faq" and "9:00-21:00" in cuihu[0].text
    assert not any("锦江苑" in r.text for r in cuihu)
    jinjiang = _search(demo, company_id, codes["jinjiang"], "泳池几点开门")
    assert "10:00-20:00" in jinjiang[0].text
    assert not any("翠湖" in r.text for r in jinjiang)
    assert any(r.kind == "passage" and "救生员" in r.text for r in jinjiang)  # passages follow the FAQ
    assert jinjiang[-1].document == "示范标准" or any(r.section == "一、设施 › 1.1 游泳池" for r in jinjiang)

    expired = _search(demo, company_id, codes["cuihu"], "春节停车优惠")
    assert not any("春节期间临时停车免费" in r.text for r in expired)
    back_then = _search(demo, company_id, codes["cuihu"], "春节停车优惠", day=dt.date(2020, 1, 20))
    assert back_then[0].text == "春节期间临时停车免费。"

    # The same knowledge again: nothing to build.
    assert not service.rebuild_index(demo, company_id=company_id).built


PARCELS = (
    "问题,相似问题,答案,分类,适用小区,生效日期,失效日期\n"
    "快递放在哪里,快递柜在哪,快递员会放在门岗旁的智能快递柜；物业不代收贵重物品和生鲜。,快递,全部,,\n"
    "锦江苑快递放在哪里,快递柜在哪,锦江苑快递请到南门驿站领取；驿站可以代收生鲜并放冰柜。,快递,锦江苑,,\n"
)


def test_a_fact_only_an_faq_answer_holds_is_found_once_and_within_its_community(demo: Settings) -> None:
    """ "物业能代收生鲜吗" shares no word with any FAQ question, only with an answer: the entry is
    found by its answer, cited as the FAQ entry, listed once, and another community's answer stays
    in that community."""
    company_id, codes = _company_and_communities(demo)
    _ingest(demo, company_id, "parcels.csv", PARCELS)
    _ingest(demo, company_id, "standard.md", STANDARD)
    service.rebuild_index(demo, company_id=company_id)

    cuihu = _search(demo, company_id, codes["cuihu"], "物业能帮忙代收生鲜吗")
    assert cuihu[0].kind == "faq" and cuihu[0].via == "answer" and "不代收贵重物品和生鲜" in cuihu[0].text
    assert cuihu[0].section == "快递放在哪里"
    assert not any("驿站" in r.text for r in cuihu)
    assert len({(r.kind, r.item_id) for r in cuihu}) == len(cuihu)  # an entry found twice is listed once
    jinjiang = _search(demo, company_id, codes["jinjiang"], "物业能帮忙代收生鲜吗")
    assert any("驿站可以代收生鲜" in r.text for r in jinjiang)

    by_question = _search(demo, company_id, codes["cuihu"], "快递柜在哪")
    assert by_question[0].via == "question" and "智能快递柜" in by_question[0].text
    with get_database(demo).session(readonly=True) as session:
        index = session.scalars(select(KnowledgeIndex).order_by(KnowledgeIndex.id.desc())).first()
        assert index is not None and (index.passages, index.faq_entries) == (1, 2)  # answers are not passages


def test_deleted_source_never_shown_even_before_the_index_is_rebuilt(demo: Settings) -> None:
    company_id, codes = _company_and_communities(demo)
    source_id = _ingest(demo, company_id, "standard.md", STANDARD)
    service.rebuild_index(demo, company_id=company_id)
    assert _search(demo, company_id, codes["cuihu"], "游泳池救生员")
    with get_database(demo).session() as session:
        service.delete_source(session=session, source_id=source_id, company_id=company_id)
    assert _search(demo, company_id, codes["cuihu"], "游泳池救生员") == []  # stale index, nothing shown


def test_community_scoped_document_stays_in_its_community(demo: Settings) -> None:
    company_id, codes = _company_and_communities(demo)
    _ingest(demo, company_id, "standard.md", STANDARD, community_ids=[codes["binjiang"]])
    service.rebuild_index(demo, company_id=company_id)
    assert _search(demo, company_id, codes["binjiang"], "游泳池救生员")
    assert _search(demo, company_id, codes["cuihu"], "游泳池救生员") == []


def test_queries_during_rebuilds_always_see_one_whole_version(demo: Settings) -> None:
    company_id, codes = _company_and_communities(demo)
    _ingest(demo, company_id, "faq.csv", FAQ)
    service.rebuild_index(demo, company_id=company_id)
    seen: set[int] = set()
    problems: list[str] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            results = _search(demo, company_id, codes["cuihu"], "泳池开放时间 救生员", k=5)
            versions = {r.index_id for r in results}
            if len(versions) != 1:
                problems.append(f"mixed or empty versions: {versions}")
            seen.update(versions)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(3):
            _ingest(demo, company_id, f"standard-{n}.md", STANDARD.replace("游泳池", f"游泳池{n}号"))
            service.rebuild_index(demo, company_id=company_id)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not problems, problems[:3]
    with get_database(demo).session() as session:
        kept = select(KnowledgeIndex.id).where(KnowledgeIndex.company_id == company_id)
        ready = session.scalars(kept).all()
    assert len(ready) == 3  # older versions pruned
    assert len(seen) >= 2  # queries moved to newer versions while running


def test_langchain_retriever(demo: Settings) -> None:
    company_id, codes = _company_and_communities(demo)
    _ingest(demo, company_id, "faq.csv", FAQ)
    service.rebuild_index(demo, company_id=company_id)
    retriever = KnowledgeRetriever(settings=demo, company_id=company_id, community_id=codes["cuihu"], k=2)
    documents = retriever.invoke("泳池开放时间")
    assert documents[0].page_content == "翠湖花园泳池每天 9:00-21:00 开放。"
    assert documents[0].metadata["kind"] == "faq"
    assert documents[0].metadata["section"] == "游泳池几点开放"


def test_eval_retrieval_command_prints_product_and_baselines(demo: Settings, tmp_path: Path) -> None:
    company_id, _ = _company_and_communities(demo)
    _ingest(demo, company_id, "faq.csv", FAQ)
    _ingest(demo, company_id, "standard.md", STANDARD)
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"q": "泳池几点开", "expect_any": ["9:00-21:00"]},
        {"q": "救生员", "expect_any": ["持证救生员"], "community": "jinjiang"},
    ]
    cases.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "anju.cli", "eval", "retrieval", "--cases", str(cases), "--json"],
        env=settings_env(demo), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 2 and report["hit_at_3"] == 1.0
    assert set(report["baselines"]) == {"bm25", "dense"}
    assert set(report["baselines"]["bm25"]) == {"hit_at_1", "hit_at_3", "mrr"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "x"}\n', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "anju.cli", "eval", "retrieval", "--cases", str(bad)],
        env=settings_env(demo), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1 and "第 1 行" in out.stderr


def test_the_sweep_rebuilds_an_index_whose_build_was_never_queued(demo: Settings) -> None:
    """A source changed while Redis was down (no build queued), or an upgrade changed the dictionary:
    the periodic sweep queues one build, a real worker runs it, and then nothing is stale."""
    from core.queue import get_queue

    company_id, codes = _company_and_communities(demo)
    _ingest(demo, company_id, "standard.md", STANDARD)
    service.rebuild_index(demo, company_id=company_id)
    assert service.queue_stale_index_builds(demo) == []  # current: nothing to do

    _ingest(demo, company_id, "parcels.csv", PARCELS)  # committed; its build request never made it
    assert service.queue_stale_index_builds(demo) == [company_id]
    assert service.queue_stale_index_builds(demo) == []  # already waiting: not queued twice
    assert get_queue("low", settings=demo).count == 1

    run_burst_worker(demo)
    with get_database(demo).session(readonly=True) as session:
        assert service.companies_with_stale_index(session, model=get_search(demo).encoder.name) == []
    found = _search(demo, company_id, codes["cuihu"], "物业能帮忙代收生鲜吗")
    assert found and "不代收贵重物品和生鲜" in found[0].text
