"""SPLADE's vocabulary projection on CPU in float32 vs bfloat16 (``splade.cpu_head``): speed and vector differences.

    python -m sprig.eval.bench.splade_head_precision --docs 128 --queries 128 --threads 2

Two encoders over the same model, one per precision; documents (length 512) and queries (one at a time, and in
batches of 32) go through both, interleaved batch by batch so background load hits them alike. Differences are
measured on the pooled weights: the largest absolute difference relative to the largest weight, and the Jaccard
overlap of the non-zero term sets.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import SpladeConfig
from sprig.corpus.chunking import passage_text
from sprig.corpus.readers import read_corpus, read_queries
from sprig.encoders.splade import SpladeEncoder
from sprig.eval.datasets import SHARED
from sprig.eval.provenance import provenance

PRECISIONS = ("float32", "bfloat16")


@torch.inference_mode()
def compare(encoders: dict[str, SpladeEncoder], batches: list[list[str]], max_length: int) -> dict:
    """Texts per second of each precision over ``batches``, and how far bfloat16's weights are from float32's."""
    spent = dict.fromkeys(encoders, 0.0)
    max_rel, jaccard = 0.0, []
    for batch in batches:
        pooled = {}
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            pooled[name] = enc.pooled(batch, max_length)
            spent[name] += time.perf_counter() - t0
        exact, fast = pooled["float32"], pooled["bfloat16"]
        max_rel = max(max_rel, float((exact - fast).abs().max() / exact.abs().max()))
        a, b = exact > 0, fast > 0
        jaccard.append(float((a & b).sum() / (a | b).sum()))
    texts = sum(len(b) for b in batches)
    return {f"{name}_per_s": round(texts / spent[name], 2) for name in encoders} | {
        "speedup": round(spent["float32"] / spent["bfloat16"], 2), "max_abs_diff_rel": round(max_rel, 5),
        "term_jaccard_mean": round(float(np.mean(jaccard)), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "scifact"), help="BEIR folder")
    ap.add_argument("--docs", type=int, default=128)
    ap.add_argument("--queries", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/benchmarks/splade-head-precision.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    encoders = {p: SpladeEncoder(SpladeConfig(cpu_head=p), device="cpu") for p in PRECISIONS}
    batch_size = encoders["float32"].batch_size
    docs = sorted((passage_text(d) for _, d in zip(range(args.docs), read_corpus(args.data))), key=len, reverse=True)
    queries = list(read_queries(args.data).values())[: args.queries]
    max_doc, max_query = encoders["float32"].doc_max_length, encoders["float32"].query_max_length
    compare(encoders, [queries[:8]], max_query)  # warm-up
    rows = {
        "documents": compare(encoders, [docs[i:i + batch_size] for i in range(0, len(docs), batch_size)], max_doc),
        "queries_one_at_a_time": compare(encoders, [[q] for q in queries], max_query),
        "queries_batch_32": compare(encoders, [queries[i:i + 32] for i in range(0, len(queries), 32)], max_query),
    }
    report = {"docs": len(docs), "queries": len(queries), "threads": args.threads, "doc_max_length": max_doc,
              "load_average": os.getloadavg(), "rows": rows, "provenance": provenance()}  # provenance names the CPU
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
