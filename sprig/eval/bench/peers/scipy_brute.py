"""Exact brute force with scipy: the transposed document matrix kept in RAM, one sparse product per query.

The ground truth the other systems' recall is measured against (float32 dot products, no quantisation).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp


def build(docs: sp.csr_matrix, workdir: Path) -> sp.csr_matrix:
    return docs.T.tocsr()  # [terms, docs]: a query's rows are its terms' postings


def index_bytes(index: sp.csr_matrix, workdir: Path) -> int:
    """Nothing is written to disk; report the bytes the matrix holds in RAM."""
    return int(index.data.nbytes + index.indices.nbytes + index.indptr.nbytes)


def prepare(queries: sp.csr_matrix) -> list[sp.csr_matrix]:
    return [queries[i] for i in range(queries.shape[0])]


def search(index: sp.csr_matrix, q: sp.csr_matrix, k: int) -> np.ndarray:
    scores = (q @ index).tocsr()  # [1, docs], only documents sharing a term
    docs, vals = scores.indices, scores.data
    if docs.size > k:
        part = np.argpartition(-vals, k - 1)[:k]
        docs, vals = docs[part], vals[part]
    order = np.lexsort((docs, -vals))  # score descending, then doc number
    return docs[order]
