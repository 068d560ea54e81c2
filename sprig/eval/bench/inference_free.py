"""Inference-free vs BM25 query cost on one corpus: in-process search latency and postings per query.

    python -m sprig.eval.bench.inference_free --data ../shared/data/scifact --work /tmp/if-bench --out docs/benchmarks/inference-free.json

Builds (or reuses, when built from the same corpus and settings) one index per retriever over the same corpus, the same sparse
engine and exact top-k: `sprig index --sparse` takes one choice, so the two postings sit in two index
directories of identical passages. Latency is one thread (torch, numba), per query, of
``Searcher.search(query, k, mode, explain=False)``: query encoding (Geng et al. 2024's tokenizer lookup
vs BM25's analyzer), the engine's top-k and the passage fetch. The two retrievers alternate query by
query so background load hits both alike, after a warm-up pass (the first 50 queries) that compiles the
kernels; the whole pass repeats ``--repeats`` times. Both query encoders memoise words (BM25's Porter stemmer,
the inference-free tokenizer its space-separated pieces: ``inference_free.query_cache``), so the first repeat
meets most words cold and the later ones warm; the report keeps each repeat, and ``ratio`` divides the medians
of repeats. The engine counts no postings, so "postings per query" is the sum of the posting-list lengths
of the query terms it scores (``quantize_query`` keeps the known terms with a positive weight): what a
term-at-a-time scan reads, an upper bound on what the range-skipping exact search decodes.

`--floors 0,0.5,1,...` instead selects ``inference_free.query_min_idf`` (query tokens weighted under it are
dropped): nDCG@10 and postings per query at each floor on ``--split``'s qrels (train or dev, never test).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from sprig.eval.datasets import SHARED

RETRIEVERS = ("bm25", "inference-free")


def posting_lengths(index) -> np.ndarray:
    """Postings per term id over every segment of a SparseIndex (tombstoned documents included)."""
    return sum(np.diff(np.asarray(s.arrays["term_ptr"], np.int64)) for s in index.segments)


def postings_per_query(searcher, name: str, queries: list[str]) -> np.ndarray:
    index = searcher.index.sparse[name]
    lengths = posting_lengths(index)
    return np.array([int(lengths[index.quantize_query(q)[0]].sum()) for q in searcher.encoders[name].encode_queries(queries)])


def time_queries(searchers: dict, queries: list[str], k: int) -> dict[str, np.ndarray]:
    """Milliseconds per query and retriever, alternating which retriever goes first."""
    spent = {name: np.zeros(len(queries)) for name in searchers}
    for i, query in enumerate(queries):
        for name in (RETRIEVERS if i % 2 == 0 else RETRIEVERS[::-1]):
            t0 = time.perf_counter()
            searchers[name].search(query, k, name, explain=False)
            spent[name][i] = (time.perf_counter() - t0) * 1000
    return spent


def summary(ms: np.ndarray) -> dict:
    return {"mean_ms": round(float(ms.mean()), 4), "p50_ms": round(float(np.percentile(ms, 50)), 4), "p95_ms": round(float(np.percentile(ms, 95)), 4)}


def build(data: Path, work: Path, name: str, device: str = "cpu") -> Path:
    from sprig.core.config import SprigConfig
    from sprig.indexer.build import build_index

    out = work / name
    build_index(data, out, SprigConfig(device=device, index={"sparse": name, "dense": False}), fmt="beir", resume=True, progress=True)
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from sprig.core.config import SprigConfig
    from sprig.corpus.readers import read_qrels, read_queries
    from sprig.eval.provenance import provenance
    from sprig.retriever.searcher import Searcher

    torch.set_num_threads(1)
    data, work = Path(args.data), Path(args.work)
    indexes = {name: build(data, work, name, args.device) for name in RETRIEVERS}
    queries_by_id = read_queries(data)
    queries = [queries_by_id[q] for q in read_qrels(data, args.split) if q in queries_by_id]
    searchers = {name: Searcher(path, SprigConfig(device="cpu")) for name, path in indexes.items()}
    time_queries(searchers, queries[:50], args.k)  # warm-up: numba compiles, caches fill
    repeats = [time_queries(searchers, queries, args.k) for _ in range(args.repeats)]
    postings = {name: postings_per_query(searchers[name], name, queries) for name in RETRIEVERS}
    report = {
        "data": str(data), "split": args.split, "queries": len(queries), "passages": len(searchers["bm25"].store), "k": args.k,
        "threads": 1, "timed": "Searcher.search(query, k, mode, explain=False): query encoding + exact top-k + passage fetch, one thread",
        "postings_per_query": "sum of the posting-list lengths of the query terms the engine scores (no counter in SparseIndex)",
        "retrievers": {name: {
            "repeats": [summary(r[name]) for r in repeats],
            "median_of_repeats_mean_ms": round(float(np.median([r[name].mean() for r in repeats])), 4),
            "median_of_repeats_p50_ms": round(float(np.median([np.percentile(r[name], 50) for r in repeats])), 4),
            "postings_mean": round(float(postings[name].mean()), 1), "postings_p50": float(np.percentile(postings[name], 50)),
            "query_terms_mean": round(float(np.mean([len(v) for v in searchers[name].encoders[name].encode_queries(queries)])), 2),
            "index_bytes": searchers[name].index.sparse[name].nbytes,
        } for name in RETRIEVERS},
        "load_average": os.getloadavg(), "provenance": provenance(),
    }
    times = report["retrievers"]
    report["ratio"] = {stat: round(times["inference-free"][f"median_of_repeats_{stat}_ms"] / times["bm25"][f"median_of_repeats_{stat}_ms"], 3)
                       for stat in ("mean", "p50")}  # inference-free / bm25
    pieces = searchers["inference-free"].encoders["inference-free"].query_tokens.piece
    report["inference_free_query_cache"] = pieces.cache_info().maxsize if pieces else 0  # 0: whole queries tokenised
    for s in searchers.values():
        s.close()
    return report


def floor_sweep(data: Path, index: Path, split: str, floors: list[float]) -> list[dict]:
    """nDCG@10, R@100 and postings per query of inference-free search at each query IDF floor, on ``split``'s qrels.
    One searcher serves every floor: the floor is a query-side setting, so only the encoder's attribute changes."""
    from sprig.core.config import SprigConfig
    from sprig.corpus.readers import read_qrels, read_queries
    from sprig.eval.metrics import evaluate
    from sprig.retriever.searcher import Searcher

    qrels, queries_by_id = read_qrels(data, split), read_queries(data)
    qids = [q for q in qrels if q in queries_by_id]
    texts = [queries_by_id[q] for q in qids]
    searcher = Searcher(index, SprigConfig(device="cpu"))
    encoder = searcher.encoders["inference-free"]
    rows = []
    try:
        for floor in floors:
            encoder.query_min_idf = floor
            hits = searcher.search_batch(texts, 100, "inference-free", explain=False)
            metrics = evaluate({q: {h.doc_id: h.score for h in found} for q, found in zip(qids, hits)}, qrels)
            terms = np.mean([len(v) for v in encoder.encode_queries(texts)])
            rows.append({"floor": floor, "nDCG@10": round(metrics["nDCG@10"], 4), "R@100": round(metrics["R@100"], 4),
                         "postings_mean": round(float(postings_per_query(searcher, "inference-free", texts).mean()), 1),
                         "query_terms_mean": round(float(terms), 2)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        searcher.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "scifact"), help="BEIR folder")
    ap.add_argument("--split", default="test", help="qrels split whose queries are timed")
    ap.add_argument("--work", required=True, help="folder for the two indexes (a finished one built from the same corpus and settings is reused)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="device that builds the indexes (timing is always one CPU thread)")
    ap.add_argument("--floors", help="comma-separated query weight floors: select inference_free.query_min_idf on --split instead of timing")
    ap.add_argument("--out", default="docs/benchmarks/inference-free.json")
    args = ap.parse_args()
    if args.floors:
        if args.split == "test":
            raise SystemExit("select the floor on train or dev qrels (--split), never on test")
        index = build(Path(args.data), Path(args.work), "inference-free", args.device)
        report = {"data": args.data, "split": args.split, "sweep": floor_sweep(Path(args.data), index, args.split, [float(f) for f in args.floors.split(",")])}
        Path(args.out).write_text(json.dumps(report, indent=2))
        return
    report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({name: {k: v for k, v in r.items() if k != "repeats"} for name, r in report["retrievers"].items()} | {"ratio": report["ratio"]}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    main()
