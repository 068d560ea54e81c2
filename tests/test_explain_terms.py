"""Term contributions in explanations (sprig.retriever.searcher.terms_per_document) against a per-document loop."""
import numpy as np
import pytest

from sprig.core.types import SparseVec
from sprig.retriever.searcher import EXPLAIN_TERMS, term_contributions, terms_per_document

VOCAB = [f"t{i}" for i in range(50)]


def reference(query: SparseVec, doc: SparseVec, top: int = EXPLAIN_TERMS) -> list[dict]:
    q, d = dict(zip(query.term_ids.tolist(), query.weights)), dict(zip(doc.term_ids.tolist(), doc.weights))
    common = [(-float(q[t] * d[t]), t) for t in q if t in d]  # float32 products, as the searcher's
    return [{"term": VOCAB[t], "query_weight": round(float(q[t]), 4), "doc_weight": round(float(d[t]), 4), "contribution": round(-p, 4)}
            for p, t in sorted(common)[:top]]


def random_vec(rng: np.random.Generator, n: int, levels: int = 3) -> SparseVec:
    ids = np.sort(rng.choice(len(VOCAB), size=n, replace=False)).astype(np.int32)
    return SparseVec(ids, rng.integers(1, levels + 1, n).astype(np.float32) / 2)  # few levels: tied products


@pytest.mark.parametrize("seed", range(5))
def test_every_document_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    query = random_vec(rng, 20)
    docs = [random_vec(rng, int(n)) for n in rng.integers(0, 30, 12)] + [SparseVec.empty()]
    got = terms_per_document(query, docs, VOCAB)
    assert got == [reference(query, d) for d in docs]
    assert term_contributions(query, docs[0], VOCAB) == reference(query, docs[0])


def test_an_empty_query_or_no_documents_explain_nothing():
    rng = np.random.default_rng(0)
    assert terms_per_document(SparseVec.empty(), [random_vec(rng, 5)], VOCAB) == [[]]
    assert terms_per_document(random_vec(rng, 5), [], VOCAB) == []
