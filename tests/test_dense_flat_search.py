"""The flat dense index's numpy search: FAISS's flat scores, ties to the lower row (FAISS's own tie order is
unspecified: the higher id first in a list, but which tied ids reach the k-th place depends on its scan)."""
import numpy as np
import pytest

import sprig.index.dense as dense
from sprig.index.dense import DenseIndex


@pytest.mark.parametrize("score_bytes", [dense._SCORE_BYTES, 4 * 8 * 37])  # one block; blocks of 37 documents
def test_flat_search_is_exact_with_the_row_tie_rule(monkeypatch, score_bytes):
    monkeypatch.setattr(dense, "_SCORE_BYTES", score_bytes)
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(300, 16)).astype(np.float32)  # small integers: exact scores, many ties
    index = DenseIndex.build(x, np.arange(1, 301, dtype=np.int64))
    index.add(x[:5], np.arange(301, 306))  # duplicates of rows 1-5, added later: each tie goes to the older row
    q = rng.integers(-2, 3, size=(8, 16)).astype(np.float32)
    all_x, all_rows = np.concatenate([x, x[:5]]), np.arange(1, 306)
    for k in (1, 10, 200, 305):
        scores, rows = index._flat_search(q, k)
        np.testing.assert_array_equal(scores, index.index.search(q, k)[0])  # FAISS's scores, in its order
        want = [all_rows[np.lexsort((all_rows, -s))[:k]] for s in q @ all_x.T]
        np.testing.assert_array_equal(rows, want)


def test_batches_take_it_with_tombstones_and_short_corpora_as_before():
    x = np.eye(4, dtype=np.float32)
    index = DenseIndex.build(x, np.arange(10, 14, dtype=np.int64))
    index.delete([10])
    batch = np.repeat(np.array([[4, 3, 2, 1]], np.float32), dense._BLAS_QUERIES, axis=0)
    for q in (batch, batch[:1]):  # numpy, FAISS
        rows, scores = index.search(q, 5)
        assert rows[:, :3].tolist() == [[11, 12, 13]] * len(q) and (rows[:, 3:] == -1).all() and np.isinf(scores[:, 3:]).all()
