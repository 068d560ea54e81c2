"""`sprig index`'s CPU encoding paths against today's exact ones (issue 23): speed and vector differences.

    nice python -m sprig.eval.bench.encoding_paths --docs 300 --threads 2

On a random sample of SciFact passages (seed 0), each encoder of the default index runs twice: today's path
(float32, batches sorted by characters, one at a time on ``--threads`` torch threads: what `sprig index` did
before issue 23) and the default path (``cpu_head`` / ``cpu_dtype`` auto, batches sorted by tokens; SPLADE's
head one document at a time on one worker thread per torch thread). The sample is cut into slices and
the two paths alternate slice by slice, so background load hits them alike. Sentence vectors: each passage's
body split into sentences and encoded by the dense model, as `sprig index` stores them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch

from sprig.core.config import DenseConfig, SpladeConfig
from sprig.corpus.chunking import passage_text
from sprig.corpus.readers import read_corpus
from sprig.encoders.dense import DenseEncoder
from sprig.encoders.sentences import sentence_vectors
from sprig.encoders.splade import SpladeEncoder
from sprig.eval.datasets import SHARED
from sprig.eval.provenance import provenance

PATHS = ("today", "default")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _splade_rows(vecs, dim: int) -> np.ndarray:
    out = np.zeros((len(vecs), dim), np.float32)
    for i, v in enumerate(vecs):
        out[i, v.term_ids] = v.weights
    return out


def _splade_diff(a: np.ndarray, b: np.ndarray) -> dict:
    on_a, on_b = a > 0, b > 0
    jaccard = (on_a & on_b).sum(1) / np.maximum((on_a | on_b).sum(1), 1)
    return {"max_abs_diff_rel": round(float(np.abs(a - b).max() / a.max()), 5), "term_jaccard_mean": round(float(jaccard.mean()), 5),
            "term_jaccard_min": round(float(jaccard.min()), 5), "cosine_min": round(float(_cosines(a, b).min()), 6)}


def _dense_diff(a: np.ndarray, b: np.ndarray) -> dict:
    cos = _cosines(a, b)
    return {"cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6)}


@contextmanager
def _sorted_by_characters(on: bool):
    """Today's batches: sorted by characters (no token lengths given to sprig.encoders.batching)."""
    if not on:
        yield
        return
    with patch("sprig.encoders.dense.token_lengths", lambda *_: None), patch("sprig.encoders.splade.token_lengths", lambda *_: None):
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "scifact"), help="BEIR folder")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--slices", type=int, default=5, help="the sample is cut into this many slices; the paths alternate by slice")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/benchmarks/encoding.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    passages = list(read_corpus(args.data))
    sample = random.Random(0).sample(passages, min(args.docs, len(passages)))
    texts, bodies = [passage_text(p) for p in sample], [p.text for p in sample]
    splade = {"today": SpladeEncoder(SpladeConfig(cpu_head="float32"), device="cpu"), "default": SpladeEncoder(device="cpu")}
    dense = {"today": DenseEncoder(DenseConfig(cpu_dtype="float32"), device="cpu"), "default": DenseEncoder(device="cpu")}
    workers = {"today": 1, "default": None}  # SPLADE's: None = its own choice (one per torch thread on CPU)
    jobs = {
        "splade": lambda path, t, b: _splade_rows(splade[path].encode_documents(t, workers=workers[path]), splade[path].vocab_size),
        "dense": lambda path, t, b: dense[path].encode_documents(t),
        "sentences": lambda path, t, b: np.concatenate(sentence_vectors(dense[path], b)),
    }
    spent = {job: dict.fromkeys(PATHS, 0.0) for job in jobs}
    results = {job: {path: [] for path in PATHS} for job in jobs}
    jobs["splade"]("default", texts[:2], bodies[:2])  # warm-up (first-call allocations, oneDNN kernel selection)
    bounds = np.linspace(0, len(texts), args.slices + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for job, run in jobs.items():
            for path in PATHS if start % 2 == 0 else PATHS[::-1]:
                t0 = time.perf_counter()
                with _sorted_by_characters(path == "today"):
                    results[job][path].append(run(path, texts[start:stop], bodies[start:stop]))
                spent[job][path] += time.perf_counter() - t0
    rows = {}
    for job in jobs:
        exact, fast = (np.concatenate(results[job][path]) for path in PATHS)
        rows[job] = {f"{path}_docs_per_s": round(len(texts) / spent[job][path], 2) for path in PATHS} | {
            "speedup": round(spent[job]["today"] / spent[job]["default"], 2), "vectors": len(exact)}
        rows[job] |= _splade_diff(exact, fast) if job == "splade" else _dense_diff(exact, fast)
    report = {"docs": len(texts), "threads": args.threads, "load_average": os.getloadavg(),
              "paths": {"splade": splade["default"].path(), "dense": dense["default"].path()},
              "rows": rows, "provenance": provenance()}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["rows"], indent=2), report["paths"], report["load_average"])


if __name__ == "__main__":
    main()
