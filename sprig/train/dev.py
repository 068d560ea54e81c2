"""Model selection on dev qrels: nDCG@10 of the student by exact brute-force search over the dev corpus.

The student is searched as sprig searches any sparse encoder (SparseBruteForce over its SparseVecs). The score is
ir_measures' nDCG@10 averaged over the judged queries (a query with no hit counts as 0), as `sprig eval beir`
reports it; sprig.eval cannot be imported from this layer, and ir_measures does the metric.
"""
from __future__ import annotations

from itertools import islice

import ir_measures
from ir_measures import nDCG

from sprig.retriever.brute import SparseBruteForce
from sprig.train.datasets import Judged

NDCG10 = nDCG @ 10


class DevSet:
    """The dev split's judged queries over its corpus; ``max_queries`` / ``max_docs`` (0: all) cut it for quick runs,
    keeping the kept queries' judged documents plus ``max_docs`` others."""

    def __init__(self, judged: Judged, max_queries: int = 0, max_docs: int = 0):
        qids = [q for q in judged.qrels if q in judged.queries and any(r > 0 for r in judged.qrels[q].values())]
        self.qids = qids[:max_queries] if max_queries else qids
        self.qrels = {q: judged.qrels[q] for q in self.qids}
        if max_docs:
            keep = {d for q in self.qids for d in self.qrels[q]} | set(islice(judged.docs, max_docs))
            self.doc_ids = [d for d in judged.docs if d in keep]
        else:
            self.doc_ids = list(judged.docs)
        self.texts = [judged.docs[d] for d in self.doc_ids]
        self.queries = [judged.queries[q] for q in self.qids]
        self.name = f"{judged.name}:{judged.split}"

    def evaluate(self, encoder) -> dict:
        """Dev nDCG@10, and the mean non-zeros of the dev documents (the sparsity the FLOPS terms buy)."""
        doc_vecs = encoder.encode_documents(self.texts)
        searcher = SparseBruteForce(encoder)
        searcher.add(doc_vecs)
        hits = searcher.search(self.queries, 10)
        run = {q: {self.doc_ids[r]: float(s) for r, s in zip(rows, scores)} for q, (rows, scores) in zip(self.qids, hits)}
        per_query = {m.query_id: m.value for m in ir_measures.iter_calc([NDCG10], self.qrels, {q: r for q, r in run.items() if r})}
        return {"dev_ndcg10": round(sum(per_query.values()) / len(self.qids), 5),
                "dev_doc_nnz": round(sum(len(v) for v in doc_vecs) / max(len(doc_vecs), 1), 1)}
