import numpy as np
import pytest

from sprig.core.types import SparseVec, to_csr


def dense(vec: SparseVec, dim: int) -> np.ndarray:
    out = np.zeros(dim, np.float32)
    out[vec.term_ids] = vec.weights
    return out


def test_from_pairs_sorts_sums_duplicates_and_drops_zeros():
    v = SparseVec.from_pairs([7, 2, 7, 5], [1.0, 2.0, 0.5, 0.0])
    assert v.term_ids.tolist() == [2, 7]
    assert v.weights.tolist() == [2.0, 1.5]
    assert v.term_ids.dtype == np.int32 and v.weights.dtype == np.float32


def test_rejects_wrong_dtypes_and_unsorted_ids():
    with pytest.raises(TypeError):
        SparseVec(np.array([1, 2]), np.array([1.0, 2.0], np.float32))
    with pytest.raises(ValueError):
        SparseVec(np.array([3, 1], np.int32), np.array([1, 2], np.float32))


def test_dot_and_csr_match_dense_reference():
    rng = np.random.default_rng(0)
    vecs = [SparseVec.from_pairs(rng.choice(97, size=n, replace=False), rng.random(n) + 0.1) for n in (0, 1, 13, 40)]
    mat = to_csr(vecs, 97).toarray()
    for i, a in enumerate(vecs):
        assert np.allclose(mat[i], dense(a, 97))
        for b in vecs:
            assert a.dot(b) == pytest.approx(float(dense(a, 97) @ dense(b, 97)), rel=1e-6)


def test_top_keeps_largest_weights_in_id_order():
    v = SparseVec.from_pairs([1, 4, 9, 12], [0.5, 3.0, 1.0, 2.0])
    assert v.top(2).term_ids.tolist() == [4, 12]
    assert v.top(0) is v and len(SparseVec.empty()) == 0
