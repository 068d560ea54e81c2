"""BEIR evaluation: index a BEIR folder, run its judged queries, write run.trec and metrics.json."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sprig.core.config import SprigConfig
from sprig.core.errors import InputError
from sprig.corpus.chunking import passage_text
from sprig.corpus.readers import read_corpus, read_qrels, read_queries
from sprig.encoders.factory import make_encoder
from sprig.eval.metrics import evaluate
from sprig.eval.provenance import provenance
from sprig.eval.runs import Run, write_trec
from sprig.retriever.brute import DenseBruteForce, SparseBruteForce

log = logging.getLogger(__name__)


def brute_force(kind: str, config: SprigConfig, texts: list[str], progress: bool):
    """An exact searcher over ``texts`` for one retriever kind (BM25, and inference-free's corpus IDF, are fitted on the same texts)."""
    encoder = make_encoder(kind, config)
    if kind in ("bm25", "inference-free"):
        encoder.fit(texts)
    searcher = DenseBruteForce(encoder) if kind == "dense" else SparseBruteForce(encoder)
    searcher.index(texts, progress=progress)
    return searcher


class HybridBruteForce:
    """BM25, SPLADE and dense brute force, fused with ``config.fusion`` (sprig/retriever/fusion.py)."""

    def __init__(self, config: SprigConfig, texts: list[str], progress: bool):
        self.fusion = config.fusion
        self.parts = {n: brute_force(n, config, texts, progress) for n in ("bm25", "splade", "dense")}
        self.encoder = self  # the report asks searcher.encoder.settings()

    def settings(self) -> dict:
        return {"fusion": self.fusion.model_dump(), **{n: p.encoder.settings() for n, p in self.parts.items()}}

    def search(self, queries: list[str], k: int):
        from sprig.retriever.fusion import Run as Ranked
        from sprig.retriever.fusion import fuse

        per = {n: p.search(queries, self.fusion.depth) for n, p in self.parts.items()}
        fused = (fuse({n: Ranked(*per[n][i]) for n in per}, self.fusion.method, self.fusion.weights, k, self.fusion.rrf_k) for i in range(len(queries)))
        return [(f.ids, f.scores) for f in fused]


class IndexSearcher:
    """Any retriever (hybrid included) through a built index: the engine path `sprig serve` uses, no corpus re-encoding.
    Rows come back as corpus positions (``doc_ids``' order), so the index must have been built from this corpus
    without chunking (passage id = doc id); a dict, not a store lookup per hit, which would be a round trip on Milvus."""

    def __init__(self, index_dir: str | Path, retriever: str, config: SprigConfig, doc_ids: Sequence[str]):
        from sprig.retriever.searcher import Searcher

        self.searcher, self.retriever = Searcher(index_dir, config), retriever
        self.positions = {doc_id: i for i, doc_id in enumerate(doc_ids)}
        self.encoder = self

    def settings(self) -> dict:
        return {"index": str(self.searcher.dir), "encoders": self.searcher.index.encoder_settings, "fusion": self.searcher.config.fusion.model_dump()}

    def search(self, queries: list[str], k: int):
        depth = self.searcher.config.fusion.depth if self.retriever == "hybrid" else k
        runs = self.searcher.search_batch(queries, k, self.retriever, explain=False, depth=depth)
        return [(np.array([self._position(h) for h in hits], np.int64), np.array([h.score for h in hits])) for hits in runs]

    def _position(self, hit) -> int:
        return self.positions[hit.passage_id]


def run_beir(data_dir: str | Path, retriever: str, out_dir: str | Path, config: SprigConfig, split: str = "test", hits: int = 1000,
             progress: bool = True, index: str | Path | None = None) -> dict:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise InputError("dataset folder not found (expected a BEIR folder: corpus.jsonl, queries.jsonl, qrels/)", str(data_dir))
    qrels = read_qrels(data_dir, split)
    queries = read_queries(data_dir)
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise InputError(f"none of the {len(qrels)} judged queries of split '{split}' is in queries.jsonl", str(data_dir))
    docs = list(read_corpus(data_dir, fmt="beir"))
    texts = [passage_text(d) for d in docs]

    t0 = time.perf_counter()
    if index is not None:
        searcher = IndexSearcher(index, retriever, config, [d.doc_id for d in docs])
        if len(searcher.searcher.store) != len(docs):
            raise InputError(f"index {index} holds {len(searcher.searcher.store)} passages, the corpus {len(docs)}: build it from this corpus", str(data_dir))
    else:
        searcher = HybridBruteForce(config, texts, progress) if retriever == "hybrid" else brute_force(retriever, config, texts, progress)
    t1 = time.perf_counter()
    results = searcher.search([queries[q] for q in qids], hits)
    t2 = time.perf_counter()

    run: Run = {q: {docs[r].doc_id: float(s) for r, s in zip(rows, scores)} for q, (rows, scores) in zip(qids, results)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_trec(run, out_dir / "run.trec", tag=f"sprig-{retriever}")
    metrics = evaluate(run, qrels)
    report = {
        **metrics,
        "dataset": str(data_dir), "split": split, "retriever": retriever, "hits": hits,
        "n_docs": len(docs), "n_queries": len(qids),
        "timings": {
            "index_s": round(t1 - t0, 3), "docs_per_s": round(len(docs) / (t1 - t0), 2),
            "search_s": round(t2 - t1, 3), "queries_per_s": round(len(qids) / (t2 - t1), 2),
            "search": "brute force (exact); query encoding included",
        },
        "settings": {"encoder": searcher.encoder.settings(), "config": config.model_dump()},
        "provenance": provenance(),
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    log.info("%s %s: nDCG@10 %.4f R@100 %.4f", data_dir.name, retriever, metrics["nDCG@10"], metrics["R@100"])
    return report
