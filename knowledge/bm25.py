"""BM25 over a precomputed sparse matrix: each document's term weights are computed once, so a
query is a sum of a few matrix columns (well under a millisecond at 10,000 passages, where a
per-document Python loop costs tens of milliseconds)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

K1 = 1.5  # term-frequency saturation (the usual 1.2–2.0)
B = 0.75  # length normalisation


class BM25Index:
    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = K1, b: float = B) -> None:
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[float] = []
        lengths = np.zeros(len(documents), dtype=np.float32)
        for row, terms in enumerate(documents):
            lengths[row] = len(terms)
            for term, count in Counter(terms).items():
                rows.append(row)
                cols.append(vocabulary.setdefault(term, len(vocabulary)))
                counts.append(count)
        self.vocabulary = vocabulary
        n = len(documents)
        tf = sparse.csr_matrix(
            (np.asarray(counts, dtype=np.float32), (rows, cols)), shape=(n, max(len(vocabulary), 1))
        )
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=tf.shape[1]).astype(np.float32)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        average = float(lengths.mean()) if n else 0.0
        norm = k1 * (1 - b + b * lengths / (average or 1.0))
        weights = tf.tocoo()
        data = weights.data * (k1 + 1) / (weights.data + norm[weights.row]) * self.idf[weights.col]
        # Column-major: a query reads the columns of its terms.
        self.matrix = sparse.csc_matrix((data.astype(np.float32), (weights.row, weights.col)), shape=tf.shape)
        self.size = n

    @classmethod
    def from_arrays(
        cls, *, matrix: sparse.csc_matrix, idf: np.ndarray, vocabulary: dict[str, int]
    ) -> BM25Index:
        """An index saved earlier (see knowledge.index), without tokenising anything again."""
        index = cls.__new__(cls)
        index.matrix = matrix
        index.idf = idf
        index.vocabulary = vocabulary
        index.size = matrix.shape[0]
        return index

    def upper_bound(self, query_terms: Sequence[str], *, k1: float = K1) -> float:
        """The most a document could score for these terms: scales scores to [0, 1]."""
        columns = {self.vocabulary[t] for t in query_terms if t in self.vocabulary}
        return float(sum(self.idf[c] for c in columns) * (k1 + 1))

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for these terms (a repeated term counts once)."""
        columns = sorted({self.vocabulary[t] for t in query_terms if t in self.vocabulary})
        if not columns or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.matrix[:, columns].sum(axis=1)).ravel()

    def top(self, query_terms: Sequence[str], k: int = 10) -> list[tuple[int, float]]:
        scores = self.scores(query_terms)
        if not len(scores):
            return []
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        ranked = sorted(best.tolist(), key=lambda i: -scores[i])
        return [(i, float(scores[i])) for i in ranked if scores[i] > 0]
