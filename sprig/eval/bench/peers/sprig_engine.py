"""sprig's own sparse index (sprig/index/sparse.py), built through its public API."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sprig.core.types import SparseVec
from sprig.index.sparse import SparseIndex


def build(docs: sp.csr_matrix, workdir: Path) -> SparseIndex:
    SparseIndex.create(workdir / "index", docs, np.arange(docs.shape[0]), docs.shape[1])
    return SparseIndex.open(workdir / "index", verify=False)


def index_bytes(index: SparseIndex, workdir: Path) -> int:
    return int(index.nbytes)


def prepare(queries: sp.csr_matrix) -> list[SparseVec]:
    q = queries.tocsr()
    return [SparseVec(q.indices[a:b].astype(np.int32), q.data[a:b].astype(np.float32)) for a, b in zip(q.indptr[:-1], q.indptr[1:])]


def search(index: SparseIndex, q: SparseVec, k: int, **knobs) -> np.ndarray:
    return index.search(q, k, **knobs)[0]
