import numpy as np

from sprig.retriever.brute import top_k


def test_top_k_matches_full_sort_with_row_tiebreak():
    rng = np.random.default_rng(1)
    for _ in range(50):
        scores = rng.integers(0, 5, size=rng.integers(1, 40)).astype(np.float32)  # many ties
        k = int(rng.integers(1, 45))
        expected = sorted(range(scores.size), key=lambda i: (-scores[i], i))[:k]
        rows, got = top_k(scores, k)
        assert rows.tolist() == expected and np.array_equal(got, scores[expected])
