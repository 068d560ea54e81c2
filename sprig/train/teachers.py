"""Candidates and teacher scores for each training query, computed once on CPU and cached in a JSON file.

Candidates of a query: up to ``positives_kept`` judged positives (highest relevance first, then qrels order) and
the ``negatives_kept`` best BM25 hits (sprig's Lucene BM25, top ``mine_depth``) that are not judged positive: the
hard negatives. Each candidate gets the score of three siamese teachers: BM25, all-MiniLM-L6-v2 (cosine) and
SPLADE-tiny (dot product), the default models of sprig's ``bm25`` / ``dense`` / ``splade`` encoders.

Heterogeneous ensemble (Geng et al. 2024): the teachers' scales differ (BM25 0-60, cosine -1..1, SPLADE 0-30), so
``combine`` min-max normalises each teacher's scores over the query's candidates to [0, 1] and takes their mean
weighted by ``train.teacher_weights``. The file keeps the raw scores; normalisation happens when it is read.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sprig.core.config import Device, SprigConfig, TrainConfig
from sprig.core.errors import SprigError
from sprig.core.files import write_text_atomic
from sprig.core.types import SparseVec
from sprig.encoders.factory import make_encoder
from sprig.retriever.brute import SparseBruteForce
from sprig.train.datasets import Judged

log = logging.getLogger(__name__)

TEACHERS = ("bm25", "dense", "splade")


def teacher_file(folder: Path, judged: Judged) -> Path:
    return folder / f"{judged.name}-{judged.split}.json"


def teacher_config(train: TrainConfig, device: Device) -> SprigConfig:
    """Teachers are sprig's default encoders whatever the student (computed once, on CPU here, and carried to the GPU
    machine; where the file is missing they run on the student's device)."""
    return SprigConfig(device=device, train=train)


def mining_settings(config: SprigConfig) -> dict:
    """What the cached candidates and scores depend on; a file made with other settings is recomputed."""
    t = config.train
    return {"mine_depth": t.mine_depth, "positives_kept": t.positives_kept, "negatives_kept": t.negatives_kept,
            "bm25": config.bm25.model_dump(), "dense": config.dense.model_dump(), "splade": config.splade.model_dump()}


def cached_teachers(judged: Judged, folder: Path, train: TrainConfig, device: Device = "cpu") -> dict:
    """The teacher file of one training split: read when it matches the mining settings, else computed and written."""
    config = teacher_config(train, device)
    path, settings = teacher_file(folder, judged), mining_settings(config)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings:
            return cached
        log.info("%s was mined with other settings: recomputing", path)
    bm25 = make_encoder("bm25", config).fit(judged.docs.values())  # one fit serves the mining and the BM25 teacher
    data = {"dataset": judged.name, "split": judged.split, "teachers": list(TEACHERS), "settings": settings,
            "normalisation": "per-query min-max over the candidates, then the weighted mean (sprig.train.teachers.combine)",
            "queries": score_candidates(judged, mine_candidates(judged, config, bm25), config, bm25)}
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data))
    return data


def mine_candidates(judged: Judged, config: SprigConfig, bm25_encoder) -> list[dict]:
    """[{"id", "docs", "positive"}] per judged query with a positive in the corpus; ``bm25_encoder`` is fitted on it."""
    t = config.train
    doc_ids = list(judged.docs)
    bm25 = SparseBruteForce(bm25_encoder)
    bm25.index(list(judged.docs.values()))
    qids = [q for q in judged.qrels if q in judged.queries]
    hits = bm25.search([judged.queries[q] for q in qids], t.mine_depth)
    out = []
    for qid, (rows, _) in zip(qids, hits):
        judged_docs = judged.qrels[qid]
        positives = sorted((d for d, rel in judged_docs.items() if rel > 0 and d in judged.docs), key=lambda d: -judged_docs[d])
        negatives = [doc_ids[r] for r in rows if judged_docs.get(doc_ids[r], 0) <= 0][: t.negatives_kept]
        if positives and negatives:
            kept = positives[: t.positives_kept]
            out.append({"id": qid, "docs": kept + negatives, "positive": [True] * len(kept) + [False] * len(negatives)})
    return out


def score_candidates(judged: Judged, candidates: list[dict], config: SprigConfig, bm25_encoder) -> list[dict]:
    """Adds "scores": [[bm25, dense, splade] per candidate] to each query's candidates (BM25: the fitted ``bm25_encoder``)."""
    needed = sorted({d for c in candidates for d in c["docs"]})
    row = {d: i for i, d in enumerate(needed)}
    texts, queries = [judged.docs[d] for d in needed], [judged.queries[c["id"]] for c in candidates]
    encoders = {name: bm25_encoder if name == "bm25" else make_encoder(name, config) for name in TEACHERS}  # loaded before encoding
    per_teacher = []
    for encoder in tqdm(encoders.values(), desc=f"teachers {judged.name}-{judged.split}", unit="teacher"):
        docs, qs = encoder.encode_documents(texts, progress=True), encoder.encode_queries(queries, progress=True)
        per_teacher.append([[round(_pair_score(qs[i], docs[row[d]]), 5) for d in c["docs"]] for i, c in enumerate(candidates)])
    return [c | {"scores": [list(s) for s in zip(*(t[i] for t in per_teacher))]} for i, c in enumerate(candidates)]


def _pair_score(query, doc) -> float:
    """SparseVec dot product, or the inner product of dense rows (cosine: MiniLM's vectors are unit length)."""
    return query.dot(doc) if isinstance(query, SparseVec) else float(query @ doc)


def combine(scores: np.ndarray, weights: dict[str, float], teachers: list[str]) -> np.ndarray:
    """[C, T] raw teacher scores of one query's candidates -> [C] ensemble score in [0, 1]."""
    scores = np.asarray(scores, np.float64)
    low, high = scores.min(axis=0), scores.max(axis=0)
    normalised = (scores - low) / np.where(high > low, high - low, 1.0)  # a teacher that cannot tell them apart gives 0s
    w = np.array([weights.get(t, 0.0) for t in teachers])
    if w.sum() <= 0:
        raise SprigError(f"train.teacher_weights {weights} gives no teacher ({', '.join(teachers)}) a positive weight")
    return (normalised @ w / w.sum()).astype(np.float32)
