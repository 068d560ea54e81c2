"""The REFRAG benchmark's quality rows on squad-a articles 16-23 (every question; no stage trained on them), all
from the same top-5 retrieval: closed-book, oracle (the gold paragraph alone), none, recomp-extractive at the
decoder positions refrag k=16 p=0.1 gave the same question, and refrag at each k and p.

A row's prompt is built by the answer path's own compressors and prompt (sprig.rag); only generation is
batched (sprig.eval.bench.refrag_generate). EM and F1 carry bootstrap 95% intervals over questions, and every
row's F1 difference to ``none`` a paired one. "Context positions" are the decoder input positions the context
takes (REFRAG: one per compressed chunk plus the expanded chunks' tokens), "prompt positions" the whole input.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sprig.eval.bench.refrag_data import (
    CachedQueries,
    read_hits,
    squad_chunks,
    squad_passages,
    squad_questions,
)
from sprig.eval.bench.refrag_generate import Prompt, generate_batch
from sprig.eval.qa_metrics import best, exact_match, f1
from sprig.rag.compress.base import Compressed, ContextBlock
from sprig.rag.compress.none import NoCompression
from sprig.rag.compress.recomp_extractive import RecompExtractive
from sprig.rag.compress.refrag import RefragCompressor
from sprig.rag.prompt import closed_book_messages, rag_messages, strip_citations
from sprig.rag.refrag_split import EVAL_ARTICLES

log = logging.getLogger(__name__)

MATCHED = (16, 0.1)  # recomp-extractive gets the context positions of refrag at this (k, p), question by question


def refrag_row(k: int, p: float) -> str:
    return f"refrag-k{k}@{p:g}"


def matched_row() -> str:
    return f"recomp-extractive={refrag_row(*MATCHED)}"


def mean_ci(values: Sequence[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, list[float]]:
    """Mean and percentile-bootstrap 95% interval over questions."""
    x = np.asarray(values, dtype=float)
    boot = np.random.default_rng(seed).choice(x, (resamples, len(x))).mean(axis=1)
    return float(x.mean()), [float(v) for v in np.percentile(boot, [2.5, 97.5])]


def evaluate(generator, encoder, data: Path, hits_file: Path, projectors: dict[int, object], expand: Sequence[float],
             rows: Sequence[str] | None = None, limit: int = 0, max_new_tokens: int = 32, batch_size: int = 64) -> dict:
    """Metrics per row (all rows when ``rows`` is None), chunk-vector bytes per k, and timings. The matched
    recomp-extractive row exists when k = 16 is among ``projectors`` and 0.1 among ``expand``."""
    items = squad_questions(data, EVAL_ARTICLES)
    items = items[:limit] if limit else items
    passages = squad_passages(data)
    hits = read_hits(hits_file, passages)
    queries = CachedQueries(encoder)
    queries.encode_queries([q.question for q in items])
    start = time.perf_counter()
    if limit:  # a smoke run encodes only the passages its questions retrieved (chunk bytes then cover only those)
        passages = {h.passage_id: h for q in items for h in hits[q.qid]}
    chunks = {k: squad_chunks(generator, encoder, passages, k) for k in projectors}
    refrag = {k: RefragCompressor(generator, queries, p.to(generator.device), k, chunks[k].stored) for k, p in projectors.items()}
    none = NoCompression(generator.count_tokens)
    recomp = RecompExtractive(generator.count_tokens, queries)
    built: dict[str, list[tuple[Prompt, Compressed | None]]] = {}

    def wanted(row: str) -> bool:  # the matched recomp row needs refrag k=16 p=0.1's prompts
        return rows is None or row in rows or (row == refrag_row(*MATCHED) and matched_row() in rows)

    def add(row: str, prompt: Prompt, compressed: Compressed | None = None) -> None:
        if wanted(row):
            built.setdefault(row, []).append((prompt, compressed))

    for item in items:
        found = hits[item.qid]
        add("closed-book", generator.encode_chat(closed_book_messages(item.question)))
        gold = Compressed([ContextBlock(item.context, ["gold"], item.title)], *[generator.count_tokens(item.context)] * 2)
        add("oracle", generator.encode_chat(rag_messages(item.question, gold.blocks)), gold)
        plain = none.compress(item.question, found, 0)
        add("none", generator.encode_chat(rag_messages(item.question, plain.blocks)), plain)
        for k, compressor in refrag.items():
            for p in [p for p in expand if wanted(refrag_row(k, p))]:  # compressing is the costly part of a prompt
                out = compressor.compress(item.question, found, int(p * compressor.input_tokens(found)))
                add(refrag_row(k, p), out.decoder_input, out)
        if refrag_row(*MATCHED) in built:
            out = recomp.compress(item.question, found, built[refrag_row(*MATCHED)][-1][1].output_tokens)
            messages = rag_messages(item.question, out.blocks) if out.blocks else closed_book_messages(item.question)
            add(matched_row(), generator.encode_chat(messages), out)
    prompt_seconds = time.perf_counter() - start
    metrics, f1s = {}, {}
    for row, entries in built.items():
        if rows is not None and row not in rows:
            continue
        t = time.perf_counter()
        answers = generate_batch(generator, [p for p, _ in entries], max_new_tokens, batch_size, desc=row)
        metrics[row], f1s[row] = score(items, answers, entries)
        metrics[row]["generate_seconds"] = round(time.perf_counter() - t, 1)
        log.info("%s: EM %.1f F1 %.1f", row, metrics[row]["EM"], metrics[row]["F1"])
    add_paired_to_none(metrics, f1s)
    return {"rows": metrics, "questions": len(items), "chunk_vector_bytes": {str(k): c.bytes for k, c in chunks.items()},
            "prompt_seconds": round(prompt_seconds, 1)}


def add_paired_to_none(metrics: dict[str, dict], f1s: dict[str, np.ndarray]) -> None:
    """Each row's F1 minus none's, question by question, with its paired bootstrap interval (when none ran)."""
    if "none" in f1s:
        for row, f in f1s.items():
            metrics[row]["F1_vs_none"], metrics[row]["F1_vs_none_ci95"] = mean_ci(f - f1s["none"])


def merge(data: Path, reports: Sequence[dict]) -> dict:
    """One report from evaluations run as separate processes over the same questions (rows split between GPU
    processes): their rows side by side, the paired F1 differences to none recomputed from the stored answers."""
    items = squad_questions(data, EVAL_ARTICLES)
    metrics, f1s = {}, {}
    for report in reports:
        if report["questions"] != len(items):
            raise ValueError(f"a report covers {report['questions']} questions, not the {len(items)} of articles 16-23")
        for row, m in report["rows"].items():
            f1s[row] = question_f1(items, [m["answers"][q.qid] for q in items])
            metrics[row] = {k: v for k, v in m.items() if not k.startswith("F1_vs_none")}
    add_paired_to_none(metrics, f1s)
    first = reports[0]
    runs = [run for r in reports for run in runs_of(r)]
    return {"rows": metrics, "questions": len(items),
            "chunk_vector_bytes": {k: v for r in reports for k, v in r["chunk_vector_bytes"].items()},
            "prompt_seconds": {run["command"]: run["prompt_seconds"] for run in runs},
            "decoder": first["decoder"], "device": first["device"], "settings": first["settings"],
            "projectors": {k: v for r in reports for k, v in r["projectors"].items()},
            "merged": [{k: run[k] for k in ("command", "wall_s", "provenance")} for run in runs]}


def runs_of(report: dict) -> list[dict]:
    """The evaluation processes behind a report: itself, or those an earlier merge recorded (so merges chain)."""
    if "merged" not in report:
        return [report]
    return [{**run, "prompt_seconds": report["prompt_seconds"][run["command"]]} for run in report["merged"]]


def question_f1(items, answers: list[str]) -> np.ndarray:
    """F1 (x100, best over the gold answers, citations removed) per question."""
    return np.array([100 * best(f1, strip_citations(a), q.answers) for q, a in zip(items, answers)])


def score(items, answers: list[str], entries: list[tuple[Prompt, Compressed | None]]) -> tuple[dict, np.ndarray]:
    """EM / F1 (x100) with bootstrap intervals and the row's mean decoder positions; and F1 per question."""
    em = [100 * best(exact_match, strip_citations(a), q.answers) for q, a in zip(items, answers)]
    f = question_f1(items, answers)
    (em_mean, em_ci), (f1_mean, f1_ci) = mean_ci(em), mean_ci(f)
    context = [c.output_tokens for _, c in entries if c is not None]
    retrieved = [c.input_tokens for _, c in entries if c is not None]
    return {"n": len(answers), "EM": em_mean, "EM_ci95": em_ci, "F1": f1_mean, "F1_ci95": f1_ci,
            "prompt_positions": float(np.mean([len(p) for p, _ in entries])),
            "context_positions": float(np.mean(context)) if context else 0.0,
            "compression_rate": float(np.sum(context) / np.sum(retrieved)) if context else 0.0,
            "answers": {q.qid: a for q, a in zip(items, answers)}}, f
