"""Decoder-LLM sparse retrieval on BEIR sets, untrained: echo SPLADE (brute force, exact) and PromptReps (one index
holding its sparse and dense halves; hybrid fuses them with equal weights, as the paper does).

Run on a GPU (decoder encoding is too slow for 2 CPU cores):
    python -m sprig.eval.bench.decoder_sparse --model SmolLM2.gguf --data DATA --out OUT scifact nfcorpus
Writes OUT/decoder-sparse.json: nDCG@10, R@100, MRR@10 per row, mean non-zeros per document and query, postings
traversed per query, encoding docs/s and sparse index bytes. With --query-latency N (CPU): query-encoding latency
on one thread, into OUT/decoder-sparse-latency.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import DEVICES, SprigConfig
from sprig.corpus.readers import read_queries
from sprig.encoders.factory import make_encoder
from sprig.eval.beir import run_beir
from sprig.eval.bench.train_sparse import TestSet, score, sparse_index_bytes
from sprig.eval.provenance import provenance
from sprig.index.sparse import SparseIndex
from sprig.indexer.build import build_index

METRICS = ("nDCG@10", "R@100", "MRR@10")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def echo_splade(data: Path, model: str, device: str) -> dict:
    """Untrained echo SPLADE: exact search over the whole test corpus, with the stated top-k prune."""
    config = SprigConfig(device=device, splade={"model": model, "batch_size": 64})
    test = TestSet(data)
    encoder = make_encoder("splade", config)
    _sync()
    start = time.perf_counter()
    doc_vecs = encoder.encode_documents(test.texts)
    _sync()
    seconds = time.perf_counter() - start
    return score(test, encoder, doc_vecs) | {"docs_per_s": round(len(test.texts) / seconds, 1), "top_k": list(config.splade.top_k("causal")),
                                             "sparse_index_bytes": sparse_index_bytes(doc_vecs, encoder.vocab_size)}


def promptreps(data: Path, model: str, device: str, scratch: Path) -> dict:
    """PromptReps: one index with both halves; sparse, dense and hybrid rows, and the sparse half's postings."""
    config = SprigConfig(device=device, promptreps={"model": model, "batch_size": 64}, dense={"model": "promptreps"},
                         index={"sparse": "promptreps", "dense": True, "sentence_vectors": False},
                         fusion={"weights": {"promptreps": 1.0, "dense": 1.0}})
    index = scratch / f"{data.name}-promptreps-index"
    _sync()
    start = time.perf_counter()
    built = build_index(data, index, config, progress=False)
    seconds = time.perf_counter() - start
    rows = {}
    for mode in ("promptreps", "dense", "hybrid"):
        report = run_beir(data, mode, scratch / f"{data.name}-promptreps-{mode}", config, progress=False, index=index)
        rows[mode] = {k: round(float(report[k]), 4) for k in METRICS}
    test, sparse = TestSet(data), make_encoder("promptreps", config)
    exact = score(test, sparse, sparse.encode_documents(test.texts))  # the same figures as the index, plus postings
    rows["promptreps"] |= {k: exact[k] for k in ("nnz_doc", "nnz_query", "postings_per_query")}
    return {"rows": rows, "index_docs_per_s": round(built.passages / seconds, 1), "sparse_index_bytes": SparseIndex.open(index / "sparse" / "promptreps", verify=False).nbytes}


def query_latency(model: str, queries: list[str]) -> dict:
    """CPU query encoding, one thread, one query per call (as a server without batching): ms per query."""
    torch.set_num_threads(1)
    out = {}
    for kind, config in (("splade", SprigConfig(device="cpu", splade={"model": model})),
                         ("promptreps", SprigConfig(device="cpu", promptreps={"model": model}))):
        encoder = make_encoder(kind, config)
        encoder.encode_queries(queries[:3])  # warm-up
        ms = []
        for q in queries:
            start = time.perf_counter()
            encoder.encode_queries([q])
            ms.append(1000 * (time.perf_counter() - start))
        out["echo_splade" if kind == "splade" else "promptreps"] = {"mean_ms": round(float(np.mean(ms)), 1),
                                                                    "p50_ms": round(float(np.median(ms)), 1), "queries": len(ms)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sprig.eval.bench.decoder_sparse", description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+", help="BEIR folder names under --data")
    ap.add_argument("--data", type=Path, required=True, help="folder holding the BEIR folders")
    ap.add_argument("--model", required=True, help="causal LM: HF id, folder or .gguf file")
    ap.add_argument("--device", default="cuda", choices=DEVICES)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/decoder-sparse"), help="runs and indexes (not kept)")
    ap.add_argument("--query-latency", type=int, default=0, metavar="N",
                    help="instead: CPU query-encoding latency (one thread) over the first N test queries of each set")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.query_latency:
        result = {"model": args.model, "provenance": provenance(), "query_latency_cpu_1_thread": {
            name: query_latency(args.model, list(read_queries(args.data / name).values())[:args.query_latency])
            for name in args.datasets}}
        (args.out / "decoder-sparse-latency.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result["query_latency_cpu_1_thread"]))
        return 0
    result = {"model": args.model, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "provenance": provenance(), "echo_splade_untrained": {}, "promptreps": {}}
    for name in args.datasets:
        data = args.data / name
        result["echo_splade_untrained"][name] = echo_splade(data, args.model, args.device)
        result["promptreps"][name] = promptreps(data, args.model, args.device, args.scratch)
        (args.out / "decoder-sparse.json").write_text(json.dumps(result, indent=1))
        print(name, json.dumps({k: result[k][name] for k in ("echo_splade_untrained", "promptreps")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
