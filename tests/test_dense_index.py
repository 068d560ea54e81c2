"""FAISS kinds against exact numpy search; tombstones; save/open round trip."""
import numpy as np
import pytest

from sprig.core.errors import SprigError
from sprig.index.dense import DenseIndex, recall_at_k


def data(n=600, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.arange(100, 100 + n, dtype=np.int64)


def exact(x, rows, q, k):
    scores = q @ x.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows[order], np.take_along_axis(scores, order, 1)


def test_flat_is_exact():
    x, rows = data()
    q = x[:20] + 0.1
    got_rows, got_scores = DenseIndex.build(x, rows, "flat").search(q, 10)
    want_rows, want_scores = exact(x, rows, q, 10)
    np.testing.assert_array_equal(got_rows, want_rows)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)


@pytest.mark.parametrize("kind,floor", [("hnsw", 0.9), ("ivfpq", 0.3)])
def test_approximate_kinds_find_most_exact_neighbours(kind, floor):
    x, rows = data()
    q = x[:50]
    approx, _ = DenseIndex.build(x, rows, kind, ivf_nprobe=8).search(q, 10)
    assert recall_at_k(approx, exact(x, rows, q, 10)[0]) >= floor


def test_tombstones_hide_rows_and_survive_save(tmp_path):
    x, rows = data(50)
    index = DenseIndex.build(x, rows, "hnsw")
    top = index.search(x[:1], 3)[0][0]
    index.delete([top[0]])
    index.add(x[:1] * 0.5, np.array([999]))
    index.save(tmp_path / "d")
    reopened = DenseIndex.open(tmp_path / "d")
    got = reopened.search(x[:1], 3)[0][0].tolist()
    assert top[0] not in got and 999 in got and len(reopened) == 50
    assert reopened.settings["hnsw_ef_search"] == index.settings["hnsw_ef_search"]


def test_fewer_vectors_than_k_pads_with_minus_one():
    x, rows = data(3)
    got, scores = DenseIndex.build(x, rows).search(x[:1], 5)
    assert got[0, 3:].tolist() == [-1, -1] and np.isinf(scores[0, 4])


def test_bad_kind_and_pq_shape_are_user_errors():
    x, rows = data(100)
    with pytest.raises(SprigError, match="flat, hnsw, ivfpq"):
        DenseIndex.build(x, rows, "annoy")
    with pytest.raises(SprigError, match="must divide"):
        DenseIndex.build(x, rows, "ivfpq", pq_m=5)
