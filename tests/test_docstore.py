"""The SQLite passage store: row numbering, vectors, deletes, read-only opening."""
import pytest

from sprig.core.errors import DuplicateId, IndexCorrupt
from sprig.core.types import SparseVec
from sprig.corpus.chunking import Passage
from sprig.index.docstore import DocStore


def passages(*ids):
    return [Passage(i, i.split("#")[0], f"title {i}", f"text {i}", {"n": i}) for i in ids]


def test_rows_vectors_and_deletes(tmp_path):
    store = DocStore(tmp_path / "d.sqlite")
    vec = SparseVec.from_pairs([5, 2], [0.5, 1.5])
    rows = store.add(passages("a", "b#0"), {"splade": [vec, SparseVec.empty()]}, rows=[1, 2])
    assert rows.tolist() == [1, 2]
    assert store.get_by_id("b#0").doc_id == "b" and store.get([1])[1].metadata == {"n": "a"}
    got = store.vectors("splade", [1])[1]
    assert got.term_ids.tolist() == [2, 5] and got.weights.tolist() == [1.5, 0.5]
    assert store.delete("a") == 1 and store.delete("a") is None
    assert store.vectors("splade", [1]) == {}  # vectors go with their passage
    assert store.add(passages("c")).tolist() == [3]  # numbers are never reused
    assert store.all_vectors("splade")[0].tolist() == [2]
    with pytest.raises(DuplicateId, match="already exists"):  # the API answers it 409, as a lost race for the id
        store.add(passages("c"))
    store.delete_rows(1, 3)
    assert len(store) == 0 and store.max_row() == 3


def test_readonly_needs_an_existing_file(tmp_path):
    with pytest.raises(IndexCorrupt, match="missing"):
        DocStore(tmp_path / "nope.sqlite", readonly=True)
