"""The data types that cross module boundaries: one sparse vector type, one hit type."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SparseVec:
    """A sparse vector over an encoder's vocabulary.

    ``term_ids`` are int32, strictly increasing; ``weights`` are float32 and non-zero. Every sparse
    encoder emits this type and every sparse index consumes it, so nothing converts between
    encoder-specific formats.
    """

    term_ids: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        if self.term_ids.dtype != np.int32 or self.weights.dtype != np.float32:
            raise TypeError(
                f"SparseVec wants int32 term ids and float32 weights, got {self.term_ids.dtype} / {self.weights.dtype}"
            )
        if self.term_ids.shape != self.weights.shape or self.term_ids.ndim != 1:
            raise ValueError(f"term ids {self.term_ids.shape} and weights {self.weights.shape} must be equal 1-d shapes")
        if self.term_ids.size > 1 and not np.all(np.diff(self.term_ids) > 0):
            raise ValueError("SparseVec term ids must be strictly increasing; build it with SparseVec.from_pairs")

    @classmethod
    def from_pairs(cls, term_ids, weights) -> "SparseVec":
        """Build from unsorted ids (duplicates are summed, zeros dropped)."""
        ids = np.asarray(term_ids, dtype=np.int64).ravel()
        w = np.asarray(weights, dtype=np.float32).ravel()
        if ids.size == 0:
            return cls.empty()
        uniq, inverse = np.unique(ids, return_inverse=True)
        summed = np.zeros(uniq.size, dtype=np.float32)
        np.add.at(summed, inverse, w)
        keep = summed != 0
        return cls(uniq[keep].astype(np.int32), summed[keep])

    @classmethod
    def trusted(cls, term_ids: np.ndarray, weights: np.ndarray) -> "SparseVec":
        """Wrap arrays that already passed these checks (a vector read back from where one was written) without
        repeating them: ~15 µs a vector, a third of a millisecond per hybrid hit list (issue 22)."""
        vec = object.__new__(cls)
        object.__setattr__(vec, "term_ids", term_ids)  # as a frozen dataclass's own __init__ does
        object.__setattr__(vec, "weights", weights)
        return vec

    @classmethod
    def empty(cls) -> "SparseVec":
        return cls(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.term_ids.size)

    def dot(self, other: "SparseVec") -> float:
        common, i, j = np.intersect1d(self.term_ids, other.term_ids, assume_unique=True, return_indices=True)
        return float(np.dot(self.weights[i].astype(np.float64), other.weights[j].astype(np.float64))) if common.size else 0.0

    def top(self, k: int) -> "SparseVec":
        """The k largest weights (ids stay sorted); k <= 0 keeps all."""
        if k <= 0 or k >= len(self):
            return self
        keep = np.sort(np.argpartition(-self.weights, k - 1)[:k])
        return SparseVec(self.term_ids[keep], self.weights[keep])

    def to_dict(self, vocab: list[str] | None = None) -> dict[str | int, float]:
        keys = [vocab[t] for t in self.term_ids] if vocab is not None else self.term_ids.tolist()
        return dict(zip(keys, self.weights.tolist()))


def to_csr(vectors: list[SparseVec], dim: int):
    """Stack vectors as rows of a scipy CSR matrix (float32)."""
    from scipy.sparse import csr_matrix

    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in vectors], out=indptr[1:])
    indices = np.concatenate([v.term_ids for v in vectors]) if vectors else np.zeros(0, np.int32)
    data = np.concatenate([v.weights for v in vectors]) if vectors else np.zeros(0, np.float32)
    return csr_matrix((data, indices, indptr), shape=(len(vectors), dim))


@dataclass
class Hit:
    """One ranked passage. ``explain`` holds per-retriever scores and ranks, or top contributing terms."""

    passage_id: str
    score: float
    rank: int = 0
    doc_id: str = ""
    title: str = ""
    text: str = ""
    explain: dict = field(default_factory=dict)
