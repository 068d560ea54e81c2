"""A projector through REFRAG's stages (sprig.rag.refrag_stages), in the order asked, on the text the split allows
(sprig.rag.refrag_split): (a) reconstruction with a 1 -> ``max_chunks`` curriculum, (b) next-paragraph prediction
on scifact + nfcorpus + squad-a articles 0-15, (c) QA fine-tuning on the questions of squad-a articles 0-15 at
p in {0, 0.1, 0.25}. Used by the benchmark (retrieval from a file computed once) and by `sprig train projector`
(retrieval through an index). Each stage stops at its step count or its time budget, so a GPU call fits its
10-minute limit; the report says how many steps and decoder positions each stage read, and the reconstruction
token accuracy per number of chunks on held-out passages (squad-a articles 16-23, which no stage trains on)
before training and after each stage.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sprig.core.errors import SprigError
from sprig.core.types import Hit
from sprig.corpus.readers import Document
from sprig.eval.bench.refrag_data import (
    CachedQueries,
    read_hits,
    squad_chunks,
    squad_passages,
    squad_questions,
)
from sprig.eval.qa import QAItem
from sprig.rag.compress.refrag import RefragCompressor
from sprig.rag.refrag_split import (
    EVAL_ARTICLES,
    SQUAD,
    TRAIN_ARTICLES,
    TRAINING_CORPORA,
    gold_passages,
    squad_article,
    training_documents,
)
from sprig.rag.refrag_stages import (
    QAExample,
    following_paragraphs,
    next_paragraph_examples,
    qa_examples,
    reconstruction_batches,
    reconstruction_example,
)
from sprig.rag.refrag_train import (
    Example,
    fit,
    sampler,
    token_accuracy,
    training_passages,
)

EXPAND = (0.0, 0.1, 0.25)  # the fractions p QA fine-tuning trains at and the benchmark evaluates
ACCURACY_CHUNKS = (1, 4, 8)  # chunks reconstructed when measuring accuracy


@dataclass(frozen=True)
class StagePlan:
    """One stage's budget: steps, examples per step, learning rate, and the wall-clock seconds it may take."""

    steps: int
    batch_size: int
    lr: float
    seconds: float


# Sized for one H100 call of at most 10 minutes per k: ~3 minutes of loading, encoding and example building,
# then 1.25 + 1.75 + 1.25 minutes of training (the step counts are upper bounds the time budgets usually cut).
DEFAULT_PLANS = {"reconstruction": StagePlan(4000, 32, 1e-3, 75.0), "continual": StagePlan(6000, 32, 3e-4, 105.0),
                 "qa": StagePlan(3000, 16, 1e-4, 75.0)}


def plans_for(stages: Sequence[str], steps: str | None = None, minutes: str | None = None, batch_size: str | None = None,
              lr: str | None = None) -> dict[str, StagePlan]:
    """Each stage's plan: DEFAULT_PLANS, overridden by comma lists of one value for every stage or one per stage."""
    def values(text: str | None, kind) -> list | None:
        if text is None:
            return None
        given = [kind(v) for v in str(text).split(",")]
        if len(given) not in (1, len(stages)):
            raise SprigError(f"'{text}': give one value for every stage or one per stage ({', '.join(stages)})")
        return given * len(stages) if len(given) == 1 else given

    override = {"steps": values(steps, int), "seconds": [60 * m for m in values(minutes, float) or []] or None,
                "batch_size": values(batch_size, int), "lr": values(lr, float)}
    return {stage: replace(DEFAULT_PLANS[stage], **{f: v[i] for f, v in override.items() if v is not None})
            for i, stage in enumerate(stages)}


def _stage_report(losses: list[float], batch_size: int, seconds: float, examples: list[Example] | None = None) -> dict:
    """Steps, time and loss (first step, mean of the last 20) of a stage; with its fixed ``examples``, their
    count and decoder positions, and about how many positions the stage read (the paper counts tokens)."""
    finite = [v for v in losses if math.isfinite(v)]
    report = {"steps": len(losses), "batch_size": batch_size, "seconds": round(seconds, 1), "first_loss": finite[0] if finite else None,
              "last_loss": sum(finite[-20:]) / len(finite[-20:]) if finite else None, "skipped_non_finite": len(losses) - len(finite)}
    if examples:
        positions = sum(len(e.ids) for e in examples)
        report |= {"examples": len(examples), "example_positions": positions,
                   "positions_read": int(len(losses) * batch_size * positions / len(examples))}
    return report


Retrieve = Callable[[list[QAItem]], dict[str, list[Hit]]]  # questions -> their top-5 passages, by question id


def train_stages(generator, encoder, projector, data: Path, stages: Sequence[str], plans: dict[str, StagePlan],
                 retrieve: Retrieve | None = None, max_chunks: int = 8, seed: int = 0, limit: int = 0,
                 after_stage: Callable[[dict], None] | None = None) -> dict:
    """Train ``projector`` through ``stages`` in order on the text of ``data`` the split allows; its report.
    Stage qa needs ``retrieve``. ``limit`` > 0 keeps the first ``limit`` documents of each corpus, held-out
    passages and questions (a smoke run). ``after_stage(report)`` runs after each stage (checkpoints)."""
    model, k = generator.model, projector.spec.chunk_tokens
    docs = [(corpus, d) for corpus, d in training_documents([data / c for c in TRAINING_CORPORA]) if d.text.strip()]
    docs = _first(docs, limit) if limit else docs
    start = time.perf_counter()
    passages = training_passages(generator, encoder, [d.text for _, d in docs], k)
    squad = squad_passages(data)
    held_out_texts = [p.text for p in squad.values() if squad_article(p.passage_id) in EVAL_ARTICLES]
    held_out = training_passages(generator, encoder, held_out_texts[: limit or None], k)
    report: dict = {"k": k, "seed": seed, "stages": list(stages), "plans": {s: vars(plans[s]) for s in stages},
                    "training_documents": {c: sum(1 for n, _ in docs if n == c) for c in dict.fromkeys(n for n, _ in docs)},
                    "training_tokens": sum(len(p.ids) for p in passages), "held_out_passages": len(held_out),
                    "encode_seconds": round(time.perf_counter() - start, 1)}

    def accuracy() -> dict[str, float]:
        return {f"{c}_chunks": round(token_accuracy(model, projector, [reconstruction_example(p, c) for p in held_out]), 4)
                for c in ACCURACY_CHUNKS}

    report["reconstruction_accuracy_before"] = accuracy()
    for stage in stages:
        plan, t = plans[stage], time.perf_counter()
        if stage == "reconstruction":
            losses = fit(model, projector, reconstruction_batches(passages, plan.batch_size, max_chunks, seed), plan.steps, plan.lr,
                         plan.seconds, stage)
            report[stage] = _stage_report(losses, plan.batch_size, time.perf_counter() - t) | {"max_chunks": max_chunks}
        elif stage == "continual":
            report[stage] = _run(model, projector, next_paragraph_examples(passages, _follows(docs)), plan, seed, stage)
        else:
            questions = _qa(data, squad_questions(data, TRAIN_ARTICLES)[: limit or None], retrieve)
            examples = qa_examples(_compressor(generator, encoder, projector, questions), questions, EXPAND, seed)
            report[stage] = _run(model, projector, examples, plan, seed, stage) | {"expand": list(EXPAND), "questions": len(questions)}
        report[f"reconstruction_accuracy_after_{stage}"] = accuracy()
        done = stages[: stages.index(stage) + 1]
        projector.trained = {"stages": " -> ".join(done), "data": "scifact + nfcorpus + squad-a articles 0-15 (sprig.rag.refrag_split)",
                             "decoder and encoder": "frozen", **{s: report[s] for s in done},
                             "reconstruction_accuracy": report[f"reconstruction_accuracy_after_{stage}"], "seed": seed}
        if after_stage is not None:
            after_stage(report)
    return report


def _follows(docs: list[tuple[str, Document]]) -> list[int | None]:
    """Per document, the index of the paragraph that follows it (squad-a articles only; looked up per corpus)."""
    follows, offset = [], 0
    for corpus in dict.fromkeys(n for n, _ in docs):
        ids = [d.doc_id for n, d in docs if n == corpus]
        follows += [None if i is None else i + offset for i in following_paragraphs(ids)] if corpus == SQUAD else [None] * len(ids)
        offset += len(ids)
    return follows


def _qa(data: Path, questions: list[QAItem], retrieve: Retrieve | None) -> list[QAExample]:
    if retrieve is None:
        raise SprigError("stage qa retrieves passages for its questions, and no retrieval was given")
    gold, hits = gold_passages(data / SQUAD), retrieve(questions)
    return [QAExample(q.question, q.answers[0], hits[q.qid], gold[q.qid]) for q in questions]


def _compressor(generator, encoder, projector, questions: list[QAExample]) -> RefragCompressor:
    """The answer path's compressor around the projector being trained, with the chunk vectors of the retrieved passages."""
    retrieved = {h.passage_id: h for q in questions for h in q.hits}
    queries = CachedQueries(encoder)
    queries.encode_queries([q.question for q in questions])  # in one batched call, not one per prompt
    return RefragCompressor(generator, queries, projector, projector.spec.chunk_tokens,
                            squad_chunks(generator, encoder, retrieved, projector.spec.chunk_tokens).stored)


def hits_from_file(path: Path, data: Path) -> Retrieve:
    """``retrieve`` from the benchmark's HITS.json (computed once on the CPU)."""
    hits = read_hits(path, squad_passages(data))
    return lambda questions: {q.qid: hits[q.qid] for q in questions}


def _first(docs: list, limit: int) -> list:
    """The first ``limit`` documents of each corpus, in order."""
    seen: dict[str, int] = {}
    kept = []
    for corpus, doc in docs:
        seen[corpus] = seen.get(corpus, 0) + 1
        if seen[corpus] <= limit:
            kept.append((corpus, doc))
    return kept


def _run(model, projector, examples: list[Example], plan: StagePlan, seed: int, stage: str) -> dict:
    t = time.perf_counter()
    losses = fit(model, projector, sampler(examples, plan.batch_size, seed), plan.steps, plan.lr, plan.seconds, stage)
    return _stage_report(losses, plan.batch_size, time.perf_counter() - t, examples)


def save(projector, out: Path) -> Path:
    """Write ``projector`` with bf16 weights (the shipped size; loading casts them back to float32) under ``out``."""
    import torch

    return copy.deepcopy(projector).to(torch.bfloat16).save(out)
