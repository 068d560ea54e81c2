"""Search an index directory: encode the query, ask each retriever, fuse, attach passages and explanations.

One ``Searcher`` opens an index once (manifest check, passage store, the sparse engines, FAISS, and the
encoders the index was built with) and then serves any number of queries. It is also the write path
for single documents: ``add`` and ``delete`` update the passage store and every index, then persist.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from indexer.dense_index import DenseIndex
from indexer.docstore import DocStore, StoredPassage
from indexer.manifest import DOCSTORE, read_manifest, write_manifest
from retriever.fusion import Fused, FusionMethod, Run, fuse
from sprig.config import SprigConfig
from sprig.errors import SprigError
from sprig.types import Hit, SparseVec

Mode = Literal["hybrid", "splade", "bm25", "dense"]
MODES: tuple[str, ...] = ("hybrid", "splade", "bm25", "dense")
EXPLAIN_TERMS = 5


def term_contributions(query: SparseVec, doc: SparseVec, vocab: Sequence[str], top: int = EXPLAIN_TERMS) -> list[dict]:
    """The terms that make up a sparse score q·d, largest product first."""
    common, qi, di = np.intersect1d(query.term_ids, doc.term_ids, assume_unique=True, return_indices=True)
    products = query.weights[qi] * doc.weights[di]
    order = np.lexsort((common, -products))[:top]
    return [
        {"term": vocab[common[i]], "query_weight": round(float(query.weights[qi[i]]), 4),
         "doc_weight": round(float(doc.weights[di[i]]), 4), "contribution": round(float(products[i]), 4)}
        for i in order
    ]


def _with_settings(section, settings: dict):
    """A config section with the fields an index was built with (a model must be queried as it was indexed)."""
    return section.model_copy(update={k: v for k, v in settings.items() if k in type(section).model_fields})


class Searcher:
    def __init__(self, index_dir: str | Path, config: SprigConfig | None = None, writable: bool = False, verify: bool = False):
        from retriever.factory import make_encoder
        from retriever.sparse_index import SparseIndex

        self.dir = Path(index_dir)
        self.manifest = read_manifest(self.dir, verify=verify)
        self.writable = writable
        encoders = self.manifest.get("encoders", {})
        base = config or SprigConfig()
        self.config = base.model_copy(update={
            "splade": _with_settings(base.splade, encoders.get("splade", {})),
            "dense": _with_settings(base.dense, encoders.get("dense", {})),
        })
        self.store = DocStore(self.dir / DOCSTORE, readonly=not writable)
        self.encoders: dict = {}
        self.sparse: dict = {}
        self.vocab: dict[str, list[str]] = {}
        for name in self.manifest.get("sparse", {}):
            if name == "bm25":
                from retriever.encoders.bm25 import BM25Encoder

                self.encoders[name] = BM25Encoder.load(self.dir / "sparse" / "bm25" / "encoder")
            else:
                self.encoders[name] = make_encoder(name, self.config)
            self.sparse[name] = SparseIndex.open(self.dir / "sparse" / name)
            self.vocab[name] = list(self.encoders[name].vocab)
        self.dense: DenseIndex | None = None
        if "dense" in self.manifest:
            self.encoders["dense"] = make_encoder("dense", self.config)
            self.dense = DenseIndex.open(self.dir / "dense")
        self._lock = threading.RLock()  # index structures are not safe to read while being written

    @property
    def retrievers(self) -> list[str]:
        return list(self.encoders)

    @property
    def modes(self) -> list[str]:
        return (["hybrid"] if len(self.encoders) > 1 else []) + self.retrievers

    def default_mode(self) -> str:
        return self.modes[0]

    def close(self) -> None:
        self.store.close()

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
        with self._lock:
            for name in names:
                if name == "dense":
                    rows, scores = self.dense.search(encoded[name], depth)
                    for i in range(len(queries)):
                        live = rows[i] >= 0
                        out[i][name] = Run(rows[i][live], scores[i][live])
                else:
                    for i, vec in enumerate(encoded[name]):
                        rows, scores = self.sparse[name].search(vec, depth) if len(vec) else (np.zeros(0, np.int64), np.zeros(0, np.float32))
                        out[i][name] = Run(np.asarray(rows, np.int64), np.asarray(scores, np.float32))
        return out, encoded

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        mode: str | None = None,
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

    def search(self, query: str, k: int = 10, mode: str | None = None, weights: Mapping[str, float] | None = None,
               method: FusionMethod | None = None, explain: bool = True) -> list[Hit]:
        return self.search_batch([query], k, mode, weights, method, explain)[0]

    def _hits(self, fused: Fused, queries: dict, mode: str, method: str, explain: bool) -> list[Hit]:
        rows = fused.ids.tolist()
        passages = self.store.get(rows)
        doc_vectors = {name: self.store.vectors(name, rows) for name in queries if name in self.sparse} if explain else {}
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
                    "terms": {name: term_contributions(queries[name], vecs[row], self.vocab[name]) for name, vecs in doc_vectors.items() if row in vecs},
                }
            hits.append(Hit(p.passage_id, float(fused.scores[i]), len(hits) + 1, p.doc_id, p.title, p.text, info))
        return hits

    # --- documents ------------------------------------------------------------------------------------

    def get(self, passage_id: str) -> StoredPassage | None:
        return self.store.get_by_id(passage_id)

    def add(self, passages: Sequence) -> np.ndarray:
        """Encode, store and index new passages; they are visible to the next search and persisted."""
        from indexer.chunking import passage_text

        self._require_writable()
        texts = [passage_text(p) for p in passages]
        vectors = {name: self.encoders[name].encode_documents(texts) for name in self.sparse}
        dense = self.encoders["dense"].encode_documents(texts) if self.dense is not None else None
        sentences = None
        if self.dense is not None and "sentence_vectors" in self.manifest:
            from rag.compress.sentences import sentence_vectors

            sentences = sentence_vectors(self.encoders["dense"], [p.text for p in passages])
        with self._lock:
            rows = self.store.add(passages, vectors, sentence_vectors=sentences)
            for name, vecs in vectors.items():
                self.sparse[name].add(vecs, rows)
            if dense is not None:
                self.dense.add(dense, rows)
            self._persist()
        return rows

    def delete(self, passage_id: str) -> bool:
        self._require_writable()
        with self._lock:
            row = self.store.delete(passage_id)
            if row is None:
                return False
            for index in self.sparse.values():
                index.delete(np.array([row], dtype=np.int64))
            if self.dense is not None:
                self.dense.delete([row])
            self._persist()
        return True

    def _require_writable(self) -> None:
        if not self.writable:
            raise SprigError(f"{self.dir} is open read-only")

    def _persist(self) -> None:
        """Write the dense index aside and swap it in, then refresh the manifest's counts and checksums."""
        if self.dense is not None:
            fresh, final, old = self.dir / "dense.tmp", self.dir / "dense", self.dir / "dense.old"
            shutil.rmtree(fresh, ignore_errors=True)
            self.dense.save(fresh)
            os.rename(final, old)
            os.rename(fresh, final)
            shutil.rmtree(old)
        self.manifest = write_manifest(self.dir, {**self.manifest, "passages": len(self.store)})
