"""The exact top-k of one score row, with the tie rule every ranking in sprig follows: score descending, then
position ascending. Here (below the retrievers) because the flat dense index ranks with it too."""
from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of one score row as (rows, scores): score descending, then row ascending."""
    k = min(k, scores.size)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    # Rows that tie with the k-th score but fell outside the partition must compete on row number (counted
    # first: the union sorts, and costs more than the partition when k is large).
    kth = scores[part].min()
    cand = part
    if np.count_nonzero(scores == kth) > np.count_nonzero(scores[part] == kth):
        cand = np.union1d(part, np.flatnonzero(scores == kth))
    order = np.lexsort((cand, -scores[cand]))[:k]
    best = cand[order]
    return best.astype(np.int64), scores[best].astype(np.float32)
