"""Decoder-LLM sparse retrieval on BEIR sets, untrained: echo SPLADE (brute force, exact) and PromptReps (one index
holding its sparse and dense halves; hybrid fuses them with equal weights, as the paper does).

Run on a GPU (decoder encoding is too slow for 2 CPU cores):
    python -m sprig.eval.bench.decoder_sparse --model SmolLM2.gguf --data DATA --out OUT scifact nfcorpus
Writes OUT/decoder-sparse.json: nDCG@10, R@100, MRR@10 per row, mean non-zeros per document and query of the echo
SPLADE vectors, encoding docs/s and sparse index bytes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import DEVICES, SprigConfig
from sprig.corpus.chunking import passage_text
from sprig.corpus.readers import read_corpus, read_queries
from sprig.encoders.factory import make_encoder
from sprig.eval.beir import run_beir
from sprig.eval.provenance import provenance
from sprig.indexer.build import build_index

METRICS = ("nDCG@10", "R@100", "MRR@10")
SAMPLE = 1000  # documents and queries whose non-zeros and encoding speed are measured


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def echo_splade(data: Path, model: str, device: str, scratch: Path) -> dict:
    config = SprigConfig(device=device, splade={"model": model, "batch_size": 64})
    report = run_beir(data, "splade", scratch / f"{data.name}-echo", config, progress=False)
    encoder = make_encoder("splade", config)
    docs = [passage_text(d) for _, d in zip(range(SAMPLE), read_corpus(data))]
    queries = list(read_queries(data).values())[:SAMPLE]
    _sync()
    start = time.perf_counter()
    doc_vecs = encoder.encode_documents(docs)
    _sync()
    seconds = time.perf_counter() - start
    return {k: round(float(report[k]), 4) for k in METRICS} | {
        "nnz_doc": float(np.mean([len(v) for v in doc_vecs])), "nnz_query": float(np.mean([len(v) for v in encoder.encode_queries(queries)])),
        "docs_per_s": round(len(docs) / seconds, 1), "top_k": list(config.splade.top_k("causal"))}


def promptreps(data: Path, model: str, device: str, scratch: Path) -> dict:
    config = SprigConfig(device=device, promptreps={"model": model, "batch_size": 64}, dense={"model": "promptreps"},
                         index={"sparse": "promptreps", "dense": True, "sentence_vectors": False},
                         fusion={"weights": {"promptreps": 1.0, "dense": 1.0}})
    index = scratch / f"{data.name}-promptreps-index"
    _sync()
    start = time.perf_counter()
    built = build_index(data, index, config, progress=False)
    seconds = time.perf_counter() - start
    sparse_bytes = sum(p.stat().st_size for p in (index / "sparse").rglob("*") if p.is_file())
    rows = {}
    for mode in ("promptreps", "dense", "hybrid"):
        report = run_beir(data, mode, scratch / f"{data.name}-promptreps-{mode}", config, progress=False, index=index)
        rows[mode] = {k: round(float(report[k]), 4) for k in METRICS}
    return {"rows": rows, "index_docs_per_s": round(built.passages / seconds, 1), "sparse_index_bytes": sparse_bytes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sprig.eval.bench.decoder_sparse", description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+", help="BEIR folder names under --data")
    ap.add_argument("--data", type=Path, required=True, help="folder holding the BEIR folders")
    ap.add_argument("--model", required=True, help="causal LM: HF id, folder or .gguf file")
    ap.add_argument("--device", default="cuda", choices=DEVICES)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/decoder-sparse"), help="runs and indexes (not kept)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"model": args.model, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "provenance": provenance(), "echo_splade_untrained": {}, "promptreps": {}}
    for name in args.datasets:
        data = args.data / name
        result["echo_splade_untrained"][name] = echo_splade(data, args.model, args.device, args.scratch)
        result["promptreps"][name] = promptreps(data, args.model, args.device, args.scratch)
        (args.out / "decoder-sparse.json").write_text(json.dumps(result, indent=1))
        print(name, json.dumps({k: result[k][name] for k in ("echo_splade_untrained", "promptreps")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
