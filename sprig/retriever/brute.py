"""Exact brute-force retrieval: every query scored against every passage.

The reference the indexes are checked against, and a fine searcher for small corpora (a sparse
matrix product beats any inverted index below ~10^4 documents). Results are row numbers into the
indexed list, best first, ties broken by the lower row number.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sprig.core.types import SparseVec, to_csr
from sprig.index.topk import top_k


class SparseBruteForce:
    """Exact dot products between SparseVecs through one sparse matrix product per query block."""

    def __init__(self, encoder, block: int = 256):
        self.encoder, self.block = encoder, block
        self.matrix_t = None

    def add(self, doc_vectors: Sequence[SparseVec]) -> None:
        self.matrix_t = to_csr(list(doc_vectors), self.encoder.vocab_size).T.tocsr()

    def index(self, texts: Sequence[str], progress: bool = False) -> None:
        self.add(self.encoder.encode_documents(texts, progress=progress))

    def search_vectors(self, queries: Sequence[SparseVec], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for start in range(0, len(queries), self.block):
            scores = (to_csr(list(queries[start : start + self.block]), self.encoder.vocab_size) @ self.matrix_t).toarray()
            out.extend(_positive_top_k(row, k) for row in scores)
        return out

    def search(self, queries: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.search_vectors(self.encoder.encode_queries(queries), k)


class DenseBruteForce:
    """Exact inner products (cosine for normalised models) with float32 matrix products."""

    def __init__(self, encoder, block: int = 256):
        self.encoder, self.block = encoder, block
        self.matrix = np.zeros((0, 0), np.float32)

    def add(self, doc_vectors: np.ndarray) -> None:
        self.matrix = np.ascontiguousarray(doc_vectors, dtype=np.float32)

    def index(self, texts: Sequence[str], progress: bool = False) -> None:
        self.add(self.encoder.encode_documents(texts, progress=progress))

    def search_vectors(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for start in range(0, len(queries), self.block):
            out.extend(top_k(row, k) for row in queries[start : start + self.block] @ self.matrix.T)
        return out

    def search(self, queries: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.search_vectors(self.encoder.encode_queries(queries), k)


def _positive_top_k(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse scores of zero mean "no term in common": not a match, as in an inverted index."""
    rows, scores = top_k(row, k)
    keep = scores > 0
    return rows[keep], scores[keep]
