"""Vocabularies far past 65,536 ids (Gemma 3's LM head is 262,144 wide) on the whole sparse path.

Audit for 16-bit assumptions: SparseVec holds int32 ids; the passage store writes them as int32 blobs; the
sparse format sizes ``term_ptr`` / ``term_chunk`` (int64) and ``range_max`` (uint8 [vocab, ranges]) by the
vocabulary, and the numba kernels index terms with int32/int64 (sprig/kernels/sparse_search.py); queries
are filtered by ``vocab_size`` only. None narrowed an id; these tests pin that with ids up to 262,143.
"""
from __future__ import annotations

import numpy as np

from sprig.core.types import SparseVec, to_csr
from sprig.corpus.chunking import Passage
from sprig.index.docstore import DocStore
from sprig.index.sparse import SparseIndex
from sprig.retriever.searcher import term_contributions
from tests.test_sparse_index import assert_same, reference

VOCAB = 262_144  # Gemma 3


def vecs_over(rng: np.random.Generator, pool: np.ndarray, n: int, max_terms: int) -> list[SparseVec]:
    out = []
    for _ in range(n):
        ids = np.sort(rng.choice(pool, size=int(rng.integers(1, max_terms + 1)), replace=False)).astype(np.int32)
        out.append(SparseVec(ids, (rng.gamma(0.8, 1.0, size=ids.size) + 0.02).astype(np.float32)))
    return out


def id_pool(rng: np.random.Generator) -> np.ndarray:
    """Ids crowding the top of the vocabulary (262,143 included) and straddling 65,536 and 131,072."""
    return np.unique(np.concatenate([np.arange(VOCAB - 200, VOCAB), np.arange(65_436, 65_636), np.arange(131_000, 131_100),
                                     rng.choice(VOCAB, 150, replace=False)]))


def test_sparse_index_with_262k_vocabulary_equals_brute_force(tmp_path):
    rng = np.random.default_rng(18)
    pool = id_pool(rng)
    docs = vecs_over(rng, pool, 700, 40)
    numbers = np.arange(1, len(docs) + 1, dtype=np.int64)
    index = SparseIndex.create(tmp_path / "idx", docs, numbers, VOCAB)
    queries = [*vecs_over(rng, pool, 60, 12), SparseVec(np.array([VOCAB - 1], np.int32), np.array([1.0], np.float32))]
    reopened = SparseIndex.open(tmp_path / "idx")
    assert reopened.vocab_size == VOCAB
    for q in queries:
        want = reference(docs, numbers, index, q, 10)
        assert_same(index.search(q, 10), want)
        assert_same(reopened.search(q, 10), want)
    assert len(index.search(queries[-1], len(docs))[0]) == sum(VOCAB - 1 in d.term_ids for d in docs) > 0
    # A second segment, then a merge: postings regrouped over all 262,144 term lists.
    extra = vecs_over(rng, pool, 100, 40)
    index.add(extra, np.arange(701, 801, dtype=np.int64))
    index.merge()
    every, every_numbers = docs + extra, np.arange(1, 801, dtype=np.int64)
    for q in queries[:20]:
        assert_same(SparseIndex.open(tmp_path / "idx").search(q, 10), reference(every, every_numbers, index, q, 10))


def test_docstore_round_trip_and_explanations(tmp_path):
    rng = np.random.default_rng(5)
    vecs = vecs_over(rng, id_pool(rng), 5, 30)
    vecs[0] = SparseVec(np.array([3, 65_535, 65_536, VOCAB - 1], np.int32), np.array([0.5, 1.0, 2.0, 3.0], np.float32))
    ids = [f"p{i}" for i in range(len(vecs))]
    with DocStore(tmp_path / "docs.sqlite") as store:
        rows = store.add([Passage(i, i, "", f"text {i}", {}) for i in ids], {"splade": vecs})
        got = store.vectors("splade", rows)
        all_rows, every = store.all_vectors("splade")
    assert all_rows.tolist() == rows.tolist()
    for row, vec, again in zip(rows, vecs, every):
        for stored in (got[int(row)], again):
            np.testing.assert_array_equal(stored.term_ids, vec.term_ids)
            np.testing.assert_array_equal(stored.weights, vec.weights)
    vocab = [f"tok{i}" for i in range(VOCAB)]
    query = SparseVec(np.array([65_536, VOCAB - 1], np.int32), np.array([1.0, 1.0], np.float32))
    assert [t["term"] for t in term_contributions(query, got[int(rows[0])], vocab)] == [f"tok{VOCAB - 1}", "tok65536"]
    assert to_csr(vecs, VOCAB)[0, VOCAB - 1] == 3.0
