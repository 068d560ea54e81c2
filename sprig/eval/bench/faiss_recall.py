"""Recall@10 and speed of the approximate FAISS kinds (HNSW, IVF-PQ) against Flat on real embeddings.

Document vectors come from a built index (reconstructed from its dense/ FAISS index) or from .npy files;
queries are a BEIR queries file encoded with the index's dense model (default model otherwise).

    python -m sprig.eval.bench.faiss_recall --index IDX --queries DATA/scifact --out docs/benchmarks/faiss.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sprig.core.config import SprigConfig
from sprig.corpus.readers import read_queries
from sprig.encoders.factory import make_encoder
from sprig.eval.provenance import provenance
from sprig.index.dense import DenseIndex, recall_at_k


def _vectors(args) -> tuple[np.ndarray, str]:
    if args.index:
        import faiss

        index = DenseIndex.open(Path(args.index) / "dense")
        if index.kind != "flat":
            raise SystemExit(f"{args.index}: needs a flat dense index to read exact vectors from (it has {index.kind})")
        base = faiss.downcast_index(index.index.index)
        return base.reconstruct_n(0, base.ntotal).astype(np.float32), f"index {args.index}"
    return np.concatenate([np.load(p) for p in args.vectors]), f"{len(args.vectors)} .npy files"


def _timed_search(index: DenseIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    rows = np.concatenate([index.search(q[None], k)[0] for q in queries])  # one query at a time, as the API does
    return rows, len(queries) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sprig.eval.bench.faiss_recall", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", help="index directory with a dense/ FAISS index")
    src.add_argument("--vectors", nargs="+", help=".npy files of document vectors")
    p.add_argument("--queries", required=True, help="BEIR folder or queries.jsonl")
    p.add_argument("--max-queries", type=int, default=300)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    docs, source = _vectors(args)
    texts = list(read_queries(args.queries).values())[: args.max_queries]
    queries = make_encoder("dense", SprigConfig(device="cpu")).encode_queries(texts)
    rows = np.arange(1, len(docs) + 1, dtype=np.int64)
    results = {}
    exact, exact_qps = _timed_search(DenseIndex.build(docs, rows, "flat"), queries, args.k)
    results["flat"] = {"recall@10": 1.0, "qps": round(exact_qps, 1)}
    for kind, params in (("hnsw", {}), ("hnsw", {"hnsw_ef_search": 32}), ("ivfpq", {}), ("ivfpq", {"ivf_nprobe": 64})):
        start = time.perf_counter()
        index = DenseIndex.build(docs, rows, kind, **params)
        build_s = time.perf_counter() - start
        approx, qps = _timed_search(index, queries, args.k)
        name = kind + "".join(f" {k}={v}" for k, v in params.items())
        results[name] = {"recall@10": round(recall_at_k(approx.reshape(len(queries), -1), exact.reshape(len(queries), -1)), 4),
                         "qps": round(qps, 1), "build_s": round(build_s, 2), "settings": index.settings}
        print(name, results[name], file=sys.stderr)
    report = {"source": source, "docs": int(len(docs)), "queries": len(texts), "results": results, "provenance": provenance()}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: (v["recall@10"], v["qps"]) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
