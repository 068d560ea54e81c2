"""Rank fusion: several retrievers' ranked lists -> one ranked list, as pure functions behind ``fuse``.

Both methods score a candidate as a weighted sum of per-retriever contributions; a retriever that did not
return the candidate contributes nothing. They differ only in the contribution:

- ``rrf``: weight / (k + rank), rank from 1 (Cormack, Clarke & Büttcher, SIGIR 2009, "Reciprocal Rank
  Fusion outperforms Condorcet and individual rank learning methods"; k = 60 there).
- ``convex``: weight · min-max-normalised score (Bruch, Gai & Ingber, TOIS 2023, "An Analysis of Fusion
  Functions for Hybrid Retrieval": a tuned convex combination of normalised scores beats RRF and needs
  few training queries to tune).

Ties are broken by ascending id, so fused runs are deterministic (pyserini's (-score, docid) rule).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sprig.core.config import FUSION_METHODS, FusionConfig, FusionMethod
from sprig.core.errors import SprigError
from sprig.index.topk import top_k

DEFAULTS = FusionConfig()  # defaults are read from the config section, their one home


@dataclass(frozen=True)
class Run:
    """One retriever's result list: ids with scores, best first."""

    ids: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Fused:
    """A fused ranking plus, per input retriever, the raw score and 1-based rank of each fused id
    (NaN score / rank 0 where that retriever did not return it) — the material for explanations."""

    ids: np.ndarray
    scores: np.ndarray
    names: tuple[str, ...]
    run_scores: np.ndarray  # [len(ids), len(names)] raw retriever scores
    run_ranks: np.ndarray  # [len(ids), len(names)] int32, 0 = absent

    def explain(self, i: int) -> dict[str, dict[str, float | int | None]]:
        return {
            name: {"score": None if self.run_ranks[i, j] == 0 else float(self.run_scores[i, j]),
                   "rank": None if self.run_ranks[i, j] == 0 else int(self.run_ranks[i, j])}
            for j, name in enumerate(self.names)
        }


def rrf_contribution(scores: np.ndarray, ranks: np.ndarray, k: float = DEFAULTS.rrf_k) -> np.ndarray:
    """1 / (k + rank): only positions matter, so retrievers with incomparable scores mix freely."""
    return 1.0 / (k + ranks)


def minmax_contribution(scores: np.ndarray, ranks: np.ndarray, k: float = 0.0) -> np.ndarray:
    """(s - min) / (max - min) over the returned list; a list of equal scores maps to 1."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 1e-12:
        return np.ones_like(scores, dtype=np.float64)
    return (scores.astype(np.float64) - lo) / (hi - lo)


_CONTRIBUTIONS: dict[str, Callable[..., np.ndarray]] = {"rrf": rrf_contribution, "convex": minmax_contribution}


def fuse(
    runs: Mapping[str, Run],
    method: FusionMethod = DEFAULTS.method,
    weights: Mapping[str, float] | None = None,
    k: int | None = None,
    rrf_k: float = DEFAULTS.rrf_k,
) -> Fused:
    """Fuse ``runs`` (name -> Run) into one ranking of at most ``k`` ids (all candidates when None).

    A run missing from ``weights`` gets weight 1, so callers may weight only some retrievers; a weight
    naming a retriever that was not run is an error (it is almost always a typo).
    """
    if method not in _CONTRIBUTIONS:
        raise SprigError(f"unknown fusion method '{method}' (expected one of {', '.join(FUSION_METHODS)})")
    weights = dict(weights or {})
    unknown = set(weights) - set(runs)
    if unknown:
        raise SprigError(f"fusion weights name retrievers that were not run: {', '.join(sorted(unknown))} (ran: {', '.join(runs)})")
    names = tuple(runs)
    contribution = _CONTRIBUTIONS[method]
    non_empty = [r.ids for r in runs.values() if len(r.ids)]
    if not non_empty:
        empty = np.zeros(0)
        return Fused(empty.astype(np.int64), empty, names, np.zeros((0, len(names))), np.zeros((0, len(names)), np.int32))
    uniq, inverse = np.unique(np.concatenate(non_empty), return_inverse=True)  # sorted: a position order is an id order
    total = np.zeros(uniq.size, dtype=np.float64)
    run_scores = np.full((uniq.size, len(names)), np.nan)
    run_ranks = np.zeros((uniq.size, len(names)), dtype=np.int32)
    offset = 0
    for j, name in enumerate(names):
        run = runs[name]
        n = len(run.ids)
        if n == 0:
            continue
        rows = inverse[offset : offset + n]
        offset += n
        ranks = np.arange(1, n + 1)
        total[rows] += float(weights.get(name, 1.0)) * contribution(np.asarray(run.scores), ranks, rrf_k)
        run_scores[rows, j] = run.scores
        run_ranks[rows, j] = ranks
    order = top_k(total, uniq.size if k is None else k)[0]  # (-total, position) = (-total, id): the tie rule, without sorting all
    return Fused(uniq[order], total[order], names, run_scores[order], run_ranks[order])
