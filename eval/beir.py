"""BEIR evaluation: index a BEIR folder, run its judged queries, write run.trec and metrics.json."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from eval.metrics import evaluate
from eval.provenance import provenance
from eval.runs import Run, write_trec
from indexer.readers import read_corpus, read_qrels, read_queries
from retriever.brute import DenseBruteForce, SparseBruteForce
from retriever.factory import make_encoder
from sprig.config import SprigConfig
from sprig.errors import InputError

log = logging.getLogger(__name__)


def passage_text(title: str, text: str) -> str:
    """BEIR's convention for title-bearing corpora (and pyserini's "flat" BM25): title, a space, text."""
    return f"{title} {text}".strip() if title else text


def brute_force(kind: str, config: SprigConfig, texts: list[str], progress: bool):
    """An exact searcher over ``texts`` for one retriever kind (BM25 is fitted on the same texts)."""
    encoder = make_encoder(kind, config)
    if kind == "bm25":
        encoder.fit(texts)
    searcher = DenseBruteForce(encoder) if kind == "dense" else SparseBruteForce(encoder)
    searcher.index(texts, progress=progress)
    return searcher


def run_beir(data_dir: str | Path, retriever: str, out_dir: str | Path, config: SprigConfig, split: str = "test", hits: int = 1000, progress: bool = True) -> dict:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise InputError("dataset folder not found (expected a BEIR folder: corpus.jsonl, queries.jsonl, qrels/)", str(data_dir))
    qrels = read_qrels(data_dir, split)
    queries = read_queries(data_dir)
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise InputError(f"none of the {len(qrels)} judged queries of split '{split}' is in queries.jsonl", str(data_dir))
    docs = list(read_corpus(data_dir, fmt="beir"))
    texts = [passage_text(d.title, d.text) for d in docs]

    t0 = time.perf_counter()
    searcher = brute_force(retriever, config, texts, progress)
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
