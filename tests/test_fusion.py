"""Fusion against a plain dict-and-loop reference."""
import numpy as np
import pytest

from sprig.core.errors import SprigError
from sprig.retriever.fusion import Run, fuse


def reference(runs: dict[str, dict[int, float]], method: str, weights: dict[str, float], rrf_k: float = 60.0) -> dict[int, float]:
    fused: dict[int, float] = {}
    for name, hits in runs.items():
        ranked = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        lo, hi = min(hits.values()), max(hits.values())
        for rank, (doc, score) in enumerate(ranked, 1):
            if method == "rrf":
                part = 1 / (rrf_k + rank)
            else:
                part = (score - lo) / (hi - lo) if hi > lo else 1.0
            fused[doc] = fused.get(doc, 0.0) + weights.get(name, 1.0) * part
    return fused


def as_run(hits: dict[int, float]) -> Run:
    ranked = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
    return Run(np.array([d for d, _ in ranked], np.int64), np.array([s for _, s in ranked], np.float32))


@pytest.mark.parametrize("method", ["convex", "rrf"])
@pytest.mark.parametrize("seed", range(5))
def test_fuse_matches_reference(method, seed):
    rng = np.random.default_rng(seed)
    runs = {
        name: {int(d): float(s) for d, s in zip(rng.choice(60, size=n, replace=False), rng.normal(scale, 1, n))}
        for name, n, scale in (("bm25", 40, 10.0), ("splade", 25, 20.0), ("dense", 50, 0.5))
    }
    weights = {"bm25": 0.2, "splade": 0.5}  # dense keeps the default weight 1
    fused = fuse({k: as_run(v) for k, v in runs.items()}, method, weights, k=30)
    want = reference({k: {d: float(np.float32(s)) for d, s in v.items()} for k, v in runs.items()}, method, weights)
    want_order = sorted(want, key=lambda d: (-want[d], d))[:30]
    assert fused.ids.tolist() == want_order
    np.testing.assert_allclose(fused.scores, [want[d] for d in want_order], rtol=1e-6)


@pytest.mark.parametrize("k", [1, 7, 20, None])
def test_ties_at_the_kth_score_keep_the_smallest_ids(k):
    """RRF over runs of equal rank positions ties many candidates: the cut at k must still follow (-score, id)."""
    rng = np.random.default_rng(k or 0)
    runs = {name: {int(d): float(-r) for r, d in enumerate(rng.choice(40, size=15, replace=False))} for name in ("a", "b")}
    fused = fuse({name: as_run(hits) for name, hits in runs.items()}, "rrf", k=k)
    want = reference(runs, "rrf", {})
    want_order = sorted(want, key=lambda d: (-want[d], d))[:k]
    assert fused.ids.tolist() == want_order
    assert fused.run_ranks.shape == (len(want_order), 2)


def test_explain_reports_each_retrievers_rank_and_score():
    fused = fuse({"a": Run(np.array([7, 3]), np.array([2.0, 1.0])), "b": Run(np.array([3]), np.array([0.5]))}, "rrf")
    i = fused.ids.tolist().index(7)
    assert fused.explain(i) == {"a": {"score": 2.0, "rank": 1}, "b": {"score": None, "rank": None}}
    assert fused.ids.tolist() == [3, 7]  # in both lists beats first in one


def test_ties_break_by_id_and_empty_runs_are_fine():
    fused = fuse({"a": Run(np.array([9, 4]), np.array([1.0, 1.0])), "b": Run(np.zeros(0, np.int64), np.zeros(0))}, "convex")
    assert fused.ids.tolist() == [4, 9]
    assert len(fuse({"a": Run(np.zeros(0, np.int64), np.zeros(0))}).ids) == 0


def test_bad_method_and_weights_name_the_allowed_values():
    runs = {"a": Run(np.array([1]), np.array([1.0]))}
    with pytest.raises(SprigError, match="convex, rrf"):
        fuse(runs, "borda")
    with pytest.raises(SprigError, match="not run: zz"):
        fuse(runs, weights={"zz": 1.0})
