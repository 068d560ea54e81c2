"""Shortcuts on the search path give exactly what the plain code gave: explanation rounding, stored vectors."""
import numpy as np

from sprig.core.types import SparseVec
from sprig.corpus.chunking import Passage
from sprig.index.docstore import DocStore
from sprig.retriever.searcher import _round4


def test_round4_is_round_of_each_value():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random(100_000) * 30, (np.arange(1000) + 0.5) / 1e4]).astype(np.float32)  # halves: ties to even
    assert _round4(x) == [round(float(v), 4) for v in x]


def test_stored_vectors_read_back_equal_and_writable(tmp_path):
    vecs = [SparseVec.from_pairs([5, 2, 9], [0.5, 1.25, 3.0]), SparseVec.empty()]
    store = DocStore(tmp_path / "docs.sqlite")
    store.add([Passage(f"p{i}", "d", "", "t") for i in range(2)], {"splade": vecs})
    got = store.vectors("splade", [1, 2])
    for want, vec in zip(vecs, (got[1], got[2])):
        assert isinstance(vec, SparseVec) and np.array_equal(vec.term_ids, want.term_ids) and np.array_equal(vec.weights, want.weights)
        assert vec.term_ids.dtype == np.int32 and vec.weights.dtype == np.float32 and vec.weights.flags.writeable
