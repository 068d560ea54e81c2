"""Training queries with their candidates and ensemble teacher scores, and the batches a step trains on.

A step takes ``batch_queries`` queries; each brings one positive (drawn from its kept positives) and
``negatives`` hard negatives (drawn from its BM25 negatives without replacement, with replacement when it has
fewer), so every query has 1 + n candidates and the batch B(1 + n) documents, its positive first.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sprig.core.config import TrainConfig
from sprig.train.datasets import Judged
from sprig.train.teachers import combine


@dataclass(frozen=True)
class TrainingQuery:
    text: str
    doc_texts: tuple[str, ...]  # the candidates
    positive: np.ndarray  # bool [C]
    teacher: np.ndarray  # float32 [C]: the ensemble score in [0, 1]


@dataclass(frozen=True)
class Batch:
    queries: list[str]
    docs: list[str]  # query i's candidates at [i(1 + n), (i + 1)(1 + n)), its positive first
    teacher: np.ndarray  # float32 [B, 1 + n]


def training_queries(judged: Judged, teachers: dict, config: TrainConfig) -> list[TrainingQuery]:
    """Queries of one cached teacher file, with the texts of their candidates."""
    return [TrainingQuery(judged.queries[q["id"]], tuple(judged.docs[d] for d in q["docs"]), np.array(q["positive"], bool),
                          combine(np.array(q["scores"]), config.teacher_weights, teachers["teachers"]))
            for q in teachers["queries"]]


def steps_for(n_queries: int, config: TrainConfig) -> int:
    return config.steps or max(1, config.epochs * n_queries // config.batch_queries)


def batches(queries: list[TrainingQuery], config: TrainConfig, rng: np.random.Generator) -> Iterator[Batch]:
    """Endless batches: each pass over the queries in a fresh random order."""
    while True:
        order = rng.permutation(len(queries))
        for start in range(0, len(order) - config.batch_queries + 1, config.batch_queries):
            yield _batch([queries[i] for i in order[start : start + config.batch_queries]], config.negatives, rng)


def _batch(chosen: list[TrainingQuery], n: int, rng: np.random.Generator) -> Batch:
    docs, teacher = [], []
    for q in chosen:
        positives, negatives = np.flatnonzero(q.positive), np.flatnonzero(~q.positive)
        picked = [rng.choice(positives), *rng.choice(negatives, n, replace=len(negatives) < n)]
        docs += [q.doc_texts[i] for i in picked]
        teacher.append(q.teacher[picked])
    return Batch([q.text for q in chosen], docs, np.stack(teacher))
