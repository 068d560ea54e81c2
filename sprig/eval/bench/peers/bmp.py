"""bmp 0.2.8 (Block-Max Pruning: Mallia, Suel, Tonellotto, SIGIR 2024).

BMP stores 8-bit document impacts and silently wraps values above 255, so weights are multiplied
by ``doc_scale`` (40 by default: exact relative to its own quantisation in shared/PEERS.md) and
clipped to 255. Search knobs: alpha (block threshold factor) and beta (query term pruning).
"""
from __future__ import annotations

from pathlib import Path

import bmp
import numpy as np
import scipy.sparse as sp


def build(docs: sp.csr_matrix, workdir: Path, doc_scale: float = 40.0, block: int = 32):
    (workdir / "index").mkdir(parents=True, exist_ok=True)
    path = str(workdir / "index" / "index.bmp")
    indexer = bmp.Indexer(path, bsize=block, compress_range=False)
    impacts = np.clip(np.rint(docs.data * doc_scale), 0, 255).astype(np.int64)
    for i, (a, b) in enumerate(zip(docs.indptr[:-1], docs.indptr[1:])):
        indexer.add_document(str(i), {str(t): int(v) for t, v in zip(docs.indices[a:b].tolist(), impacts[a:b].tolist()) if v > 0})
    indexer.finish()
    return bmp.Searcher(path)


def prepare(queries: sp.csr_matrix) -> list[dict[str, float]]:
    return [{str(t): float(v) for t, v in zip(queries.indices[a:b].tolist(), queries.data[a:b].tolist())}
            for a, b in zip(queries.indptr[:-1], queries.indptr[1:])]


def search(searcher, q: dict[str, float], k: int, alpha: float = 1.0, beta: float = 1.0) -> np.ndarray:
    docnos, _ = searcher.search(q, k=k, alpha=alpha, beta=beta)
    return np.array([int(d) for d in docnos], np.int64)
