"""The synthetic-corpus generator (eval/bench/synthetic.py) on a corpus with planted topics.

Fit data: 600 documents, each drawn from one of 6 disjoint term blocks plus a few shared terms, so
the true co-occurrence structure is known. Independent term sampling would make block-mates no more
likely to co-occur than strangers; the generator must keep them together.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sprig.eval.bench import synthetic
from sprig.eval.bench.vectors import VectorSet

DIM, BLOCKS, BLOCK_TERMS, SHARED = 400, 6, 50, 20


def _planted(n: int, rng: np.random.Generator, lo: int, hi: int) -> sp.csr_matrix:
    rows = []
    for _ in range(n):
        b = rng.integers(BLOCKS)
        length = int(rng.integers(lo, hi))
        own = rng.choice(np.arange(b * BLOCK_TERMS, (b + 1) * BLOCK_TERMS), length, replace=False)
        shared = rng.choice(np.arange(DIM - SHARED, DIM), 3, replace=False)
        terms = np.concatenate([own, shared])
        rows.append(sp.csr_matrix((rng.gamma(2.0, 0.5, terms.size).astype(np.float32), (np.zeros(terms.size, int), terms)), shape=(1, DIM)))
    m = sp.vstack(rows, format="csr")
    m.sort_indices()
    return m


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(7)
    real = VectorSet(_planted(600, rng, 10, 30), _planted(100, rng, 2, 6))
    return real, synthetic.fit(real, n_topics=BLOCKS, seed=0, max_iter=300)


def _block_mate_rate(m: sp.csr_matrix) -> float:
    """Share of co-occurring block-term pairs whose two terms are in the same block."""
    b = (m[:, : BLOCKS * BLOCK_TERMS] > 0).astype(np.float64)
    co = (b.T @ b).toarray()
    np.fill_diagonal(co, 0)
    block = np.arange(BLOCKS * BLOCK_TERMS) // BLOCK_TERMS
    same = block[:, None] == block[None, :]
    return float(co[same].sum() / co.sum())


def test_same_seed_same_corpus_other_seed_other_corpus(fitted):
    _, model = fitted
    a, b, c = (synthetic.generate(model, 300, 20, seed) for seed in (1, 1, 2))
    for x, y in ((a.docs, b.docs), (a.queries, b.queries)):
        assert np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices) and np.array_equal(x.data, y.data)
    assert not (a.docs.shape == c.docs.shape and np.array_equal(a.docs.indices, c.docs.indices))


def test_rows_are_valid_sparse_vectors(fitted):
    _, model = fitted
    s = synthetic.generate(model, 300, 50, 3)
    for m in (s.docs, s.queries):
        assert m.shape[1] == DIM and m.dtype == np.float32 and m.has_canonical_format
        assert np.all(m.data > 0)


def test_lengths_and_weights_follow_the_fit_data(fitted):
    real, model = fitted
    s = synthetic.generate(model, 3000, 1000, 4)
    for r, g in ((real.docs, s.docs), (real.queries, s.queries)):
        lr, lg = np.diff(r.indptr), np.diff(g.indptr)
        assert lg.min() >= lr.min() and lg.max() <= lr.max()
        assert abs(lg.mean() - lr.mean()) < 0.05 * lr.mean()
        assert np.allclose(np.quantile(g.data, [0.1, 0.5, 0.9]), np.quantile(r.data, [0.1, 0.5, 0.9]), rtol=0.1)


def test_cooccurrence_is_kept_where_independent_sampling_loses_it(fitted):
    real, model = fitted
    s = synthetic.generate(model, 600, 10, 5)
    ind = synthetic.independent(real, 600, 10, 5)
    chance = 1 / BLOCKS
    assert _block_mate_rate(real.docs) > 0.95
    assert _block_mate_rate(s.docs) > 0.8
    assert abs(_block_mate_rate(ind.docs) - chance) < 0.05
    stats, base = synthetic.compare(real.docs, s.docs, n_terms=200, skip=0), synthetic.compare(real.docs, ind.docs, n_terms=200, skip=0)
    assert stats["lift_corr"] > base["lift_corr"] + 0.3


def test_a_cached_model_generates_the_same_corpus(fitted, tmp_path):
    real, model = fitted
    synthetic.save_model(model, tmp_path / "model.npz")
    again = synthetic.load_model(tmp_path / "model.npz")
    a, b = synthetic.generate(model, 200, 20, 9), synthetic.generate(again, 200, 20, 9)
    for x, y in ((a.docs, b.docs), (a.queries, b.queries)):
        assert np.array_equal(x.indices, y.indices) and np.array_equal(x.data, y.data)
    assert again.docs.beta == model.docs.beta and isinstance(again.dim, int)


def test_integer_view_is_sprigs_quantisation(fitted, tmp_path):
    """What Lucene is given equals what sprig's index stores and searches with, entry by entry."""
    from sprig.core.types import SparseVec
    from sprig.eval.bench.vectors import with_integers
    from sprig.index.sparse_format import choose_scale, quantize_docs, quantize_query

    real, _ = fitted
    with_integers(real).save(tmp_path / "v.npz")
    ints = VectorSet.load(tmp_path / "v.npz").integers()
    assert np.array_equal(ints.docs.data, quantize_docs(real.docs.data, choose_scale(real.docs.data)))
    q = real.queries
    for i in range(q.shape[0]):
        a, b = q.indptr[i], q.indptr[i + 1]
        terms, vals, _ = quantize_query(SparseVec(q.indices[a:b].astype(np.int32), q.data[a:b]), DIM)
        row = ints.queries[i]
        assert np.array_equal(row.indices[row.data > 0], terms) and np.array_equal(row.data[row.data > 0], vals)
