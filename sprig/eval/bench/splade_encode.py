"""SPLADE document-encoding throughput: full [batch, tokens, vocab] logits vs the chunked head.

    python -m sprig.eval.bench.splade_encode --docs 256 --threads 2

Both paths run on the same length-sorted batches, interleaved batch by batch so that background load
hits them alike; the report also checks that the two give the same vectors.
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
from sprig.corpus.readers import read_corpus
from sprig.encoders.splade import SpladeEncoder, splade_reference
from sprig.eval.datasets import SHARED
from sprig.eval.provenance import provenance


def full_logits_pooled(enc: SpladeEncoder, texts: list[str], max_length: int) -> torch.Tensor:
    """The textbook path: the whole MLM head materialises [B, T, V] logits, then masked max pooling."""
    batch = enc.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    hidden = enc.model(**batch).logits  # transformed states: the head's projection was detached
    logits = hidden @ enc.weight.T + enc.bias
    return splade_reference(logits, batch["attention_mask"])


@torch.inference_mode()
def measure(enc: SpladeEncoder, texts: list[str], max_length: int) -> dict:
    order = np.argsort([-len(t) for t in texts], kind="stable")
    spent = {"full": 0.0, "chunked": 0.0}
    max_diff = 0.0
    for start in range(0, len(texts), enc.batch_size):
        batch = [texts[i] for i in order[start : start + enc.batch_size]]
        t0 = time.perf_counter()
        full = full_logits_pooled(enc, batch, max_length)
        t1 = time.perf_counter()
        chunked = enc.pooled(batch, max_length)
        t2 = time.perf_counter()
        spent["full"] += t1 - t0
        spent["chunked"] += t2 - t1
        max_diff = max(max_diff, float((full - chunked).abs().max()))
    return {
        "max_length": max_length,
        "full_docs_per_s": round(len(texts) / spent["full"], 2),
        "chunked_docs_per_s": round(len(texts) / spent["chunked"], 2),
        "speedup": round(spent["full"] / spent["chunked"], 2),
        "max_abs_diff": max_diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "scifact"), help="BEIR folder")
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="docs/benchmarks/splade-encoding.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    docs = [d for _, d in zip(range(args.docs), read_corpus(args.data))]
    texts = [passage_text(d) for d in docs]
    enc = SpladeEncoder(SpladeConfig(batch_size=args.batch_size), device="cpu")
    rows = [measure(enc, texts, n) for n in (256, 512)]
    report = {"docs": len(texts), "threads": args.threads, "batch_size": args.batch_size, "vocab_chunk": enc.vocab_chunk,
              "load_average": os.getloadavg(), "rows": rows, "provenance": provenance()}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["rows"], indent=2))


if __name__ == "__main__":
    main()
