"""Search an open index: encode the query, ask each retriever, fuse, attach passages and explanations.

One ``Searcher`` holds an index backend (opened once through sprig.index.backend: a native folder or a Milvus
collection) and the encoders the index was built with, and then serves any number of queries. Writes go through
sprig.indexer.update.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sprig.core.config import FusionMethod, RetrievalMode, SprigConfig
from sprig.core.errors import SprigError
from sprig.core.types import Hit, SparseVec
from sprig.encoders.factory import EncoderSet
from sprig.index.backend import Backend, PassageStore, open_index
from sprig.index.docstore import StoredPassage
from sprig.index.reader import BM25_STATE, IDF_STATE
from sprig.retriever.combining import SearchCombiner
from sprig.retriever.fusion import Fused, Run, fuse

EXPLAIN_TERMS = 5


def term_contributions(query: SparseVec, doc: SparseVec, vocab: Sequence[str], top: int = EXPLAIN_TERMS) -> list[dict]:
    """The terms that make up a sparse score q·d, largest product first."""
    return terms_per_document(query, [doc], vocab, top)[0]


def terms_per_document(query: SparseVec, docs: Sequence[SparseVec], vocab: Sequence[str], top: int = EXPLAIN_TERMS) -> list[list[dict]]:
    """``term_contributions`` of each of ``docs``, in numpy calls over all of them at once: per document and term
    a call costs more than the arithmetic (a hit list explains ten documents per sparse retriever)."""
    ids = np.concatenate([d.term_ids for d in docs]) if docs else np.zeros(0, np.int32)
    weights = np.concatenate([d.weights for d in docs]) if docs else np.zeros(0, np.float32)
    owner = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    at = np.minimum(np.searchsorted(query.term_ids, ids), max(len(query) - 1, 0))
    common = (query.term_ids[at] == ids) if len(query) else np.zeros(ids.size, bool)
    ids, owner, query_w, doc_w = ids[common], owner[common], query.weights[at[common]], weights[common]
    products = query_w * doc_w
    order = np.lexsort((ids, -products, owner))  # per document: largest product first, ties by term id
    first = np.searchsorted(owner[order], owner[order])  # where each row's document starts in ``order``
    order = order[np.arange(order.size) - first < top]
    out: list[list[dict]] = [[] for _ in docs]
    q, w, c = (_round4(x[order]) for x in (query_w, doc_w, products))
    for d, t, qw, dw, pc in zip(owner[order].tolist(), ids[order].tolist(), q, w, c):
        out[d].append({"term": vocab[t], "query_weight": qw, "doc_weight": dw, "contribution": pc})
    return out


def _round4(x: np.ndarray) -> list[float]:
    """``[round(float(v), 4) for v in x]`` for float32 ``x`` in one numpy call: exactly equal, since a float32 times
    10^4 is exact in float64 and rint rounds half to even as ``round`` does (a call per value cost ~0.2 ms a hit list)."""
    return np.round(x.astype(np.float64), 4).tolist()


class Searcher:
    """``index``: an open ``Backend`` (a native ``Index`` or a ``MilvusIndex``) or a location string / folder."""

    def __init__(self, index: Backend | str | Path, config: SprigConfig | None = None, writable: bool = False, verify: bool = False):
        self.index = open_index(index, writable=writable, verify=verify) if isinstance(index, (str, Path)) else index
        self.config = (config or SprigConfig()).with_encoder_settings(self.index.encoder_settings)
        state = self.index.state_dir
        self.encoders = EncoderSet.for_index(self.config, self.index.encoder_settings, self.index.sparse_names,
                                             "dense" in self.index.retrievers, state / BM25_STATE, self.index.has_sentence_vectors,
                                             state / IDF_STATE)
        self.vocab: dict[str, list[str]] = {name: list(enc.vocab) for name, enc in self.encoders.sparse.items()}
        # server.query_batch > 1: concurrent ``search`` calls (the server's request threads) run as one batch
        batch = self.config.server.query_batch
        self.combiner = SearchCombiner(self.search_batch, batch) if batch > 1 else None

    @property
    def dir(self) -> str:
        """The index location (a folder, or a Milvus location)."""
        return self.index.location

    @property
    def store(self) -> PassageStore:
        return self.index.store

    @property
    def retrievers(self) -> list[str]:
        return self.index.retrievers

    @property
    def modes(self) -> list[str]:
        return (["hybrid"] if len(self.retrievers) > 1 else []) + self.retrievers

    def default_mode(self) -> str:
        return self.modes[0]

    def close(self) -> None:
        self.index.close()

    # --- search -----------------------------------------------------------------------------------

    def _check_mode(self, mode: str | None) -> str:
        mode = mode or self.default_mode()
        if mode not in self.modes:
            raise SprigError(f"mode '{mode}' is not available in this index (available: {', '.join(self.modes)})")
        return mode

    def runs(self, queries: Sequence[str], names: Sequence[str], depth: int) -> tuple[list[dict[str, Run]], dict[str, list]]:
        """Per query, each named retriever's top-``depth`` rows; plus the encoded queries by retriever."""
        encoded = {name: self.encoders[name].encode_queries(list(queries)) for name in names}
        out: list[dict[str, Run]] = [{} for _ in queries]
        with self.index.lock:
            for name in names:
                for i, (rows, scores) in enumerate(self.index.search(name, encoded[name], depth)):
                    out[i][name] = Run(rows, scores)
        return out, encoded

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        mode: RetrievalMode | None = None,
        weights: Mapping[str, float] | None = None,
        method: FusionMethod | None = None,
        explain: bool = True,
        depth: int | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query. Hybrid fuses each retriever's top ``depth`` (default max(k, fusion.depth));
        evaluation pins it to fusion.depth, the depth the weights were tuned at."""
        mode = self._check_mode(mode)
        fusion = self.config.fusion
        names = self.retrievers if mode == "hybrid" else [mode]
        depth = (depth or max(k, fusion.depth)) if mode == "hybrid" else k
        if weights is not None and mode == "hybrid":
            unknown = set(weights) - set(names)
            if unknown:
                raise SprigError(f"fusion weights for unknown retrievers: {', '.join(sorted(unknown))} (this index has {', '.join(names)})")
        weights = {**{n: w for n, w in fusion.weights.items() if n in names}, **(weights or {})}
        runs, encoded = self.runs(queries, names, depth)
        results = []
        for i, per_query in enumerate(runs):
            if mode == "hybrid":
                fused = fuse(per_query, method or fusion.method, weights, k, fusion.rrf_k)
            else:
                run = per_query[mode]
                fused = Fused(run.ids[:k], run.scores[:k], (mode,), run.scores[:k, None], np.arange(1, min(k, len(run.ids)) + 1)[:, None])
            results.append(self._hits(fused, {n: v[i] for n, v in encoded.items()}, mode, method or fusion.method, explain))
        return results

    def search(self, query: str, k: int = 10, mode: RetrievalMode | None = None, weights: Mapping[str, float] | None = None,
               method: FusionMethod | None = None, explain: bool = True) -> list[Hit]:
        """``search_batch`` of one query; calls from several threads at once are searched together (combining.py)."""
        if self.combiner is None:
            return self.search_batch([query], k, mode, weights, method, explain)[0]
        return self.combiner.search(query, k=k, mode=mode, weights=weights, method=method, explain=explain)

    def _hits(self, fused: Fused, queries: dict, mode: str, method: str, explain: bool) -> list[Hit]:
        rows = fused.ids.tolist()
        passages = self.store.get(rows)
        terms = self._terms(queries, rows) if explain else {}
        hits = []
        for i, row in enumerate(rows):
            p = passages.get(row)
            if p is None:  # deleted after the index answered
                continue
            info: dict = {}
            if explain:  # one shape for every mode: each retriever's score and rank, and sparse term contributions
                info = {
                    "mode": mode,
                    "fusion": method if mode == "hybrid" else None,
                    "retrievers": fused.explain(i),
                    "terms": {name: per_row[row] for name, per_row in terms.items() if row in per_row},
                }
            hits.append(Hit(p.passage_id, float(fused.scores[i]), len(hits) + 1, p.doc_id, p.title, p.text, info))
        return hits

    def _terms(self, queries: dict, rows: list[int]) -> dict[str, dict[int, list[dict]]]:
        """Per sparse retriever, row -> its term contributions, for the rows whose document vector is stored."""
        out = {}
        for name in (n for n in queries if n in self.index.sparse_names):
            stored = self.store.vectors(name, rows)
            out[name] = dict(zip(stored, terms_per_document(queries[name], list(stored.values()), self.vocab[name])))
        return out

    # --- documents ------------------------------------------------------------------------------------

    def get(self, passage_id: str) -> StoredPassage | None:
        return self.index.get(passage_id)
