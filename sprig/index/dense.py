"""The dense index: FAISS over inner product, keyed by docstore row numbers.

Three kinds, one interface:
- ``flat``: exact search (the reference every other kind is measured against).
- ``hnsw``: graph search (Malkov & Yashunin, TPAMI 2018, "Efficient and robust approximate nearest
  neighbor search using Hierarchical Navigable Small World graphs").
- ``ivfpq``: inverted lists over product-quantised codes (Jégou, Douze & Schmid, TPAMI 2011, "Product
  Quantization for Nearest Neighbor Search"): smallest memory, lowest recall.

Deletes are tombstones filtered at search time (HNSW cannot remove vectors), so every kind behaves the
same; the search asks FAISS for ``k + len(tombstones)`` so a full top-k always survives the filter.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sprig.core.config import FAISS_KINDS, FaissKind
from sprig.core.errors import IndexCorrupt, SprigError
from sprig.index.topk import top_k

_INDEX_FILE, _TOMBSTONES, _META = "index.faiss", "tombstones.npy", "dense.json"
_SCORE_BYTES = 64 << 20  # a flat search's score buffer at most (queries x documents of one block, float32)
_BLAS_QUERIES = 8  # batches this large take ``_flat_search`` (its docstring)


def _ivfpq_shape(n: int, dim: int, nlist: int, pq_m: int) -> tuple[int, int, int]:
    """(nlist, pq_m, bits) that FAISS can train on ``n`` vectors: ~4·sqrt(n) lists and 2^bits codes per
    sub-quantiser, each with at least 39 training points (FAISS's own warning threshold)."""
    nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
    pq_m = pq_m or max(1, dim // 4)
    if dim % pq_m:
        raise SprigError(f"pq_m={pq_m} must divide the embedding dimension {dim}")
    bits = max(1, min(8, int(math.log2(max(n // 39, 2)))))
    return nlist, pq_m, bits


class DenseIndex:
    """A FAISS index mapping row numbers to vectors, plus the set of deleted rows."""

    def __init__(self, index, kind: FaissKind, tombstones: set[int] | None = None, settings: dict | None = None):
        self.index, self.kind = index, kind
        self.tombstones = set(tombstones or ())
        self.settings = dict(settings or {})

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        rows: np.ndarray,
        kind: FaissKind = "flat",
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 128,
        ivf_nlist: int = 0,
        ivf_nprobe: int = 16,
        pq_m: int = 0,
    ) -> "DenseIndex":
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        settings: dict = {"kind": kind, "dim": dim}
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction, base.hnsw.efSearch = hnsw_ef_construction, hnsw_ef_search
            settings.update(hnsw_m=hnsw_m, hnsw_ef_construction=hnsw_ef_construction, hnsw_ef_search=hnsw_ef_search)
        elif kind == "ivfpq":
            if n == 0:
                raise SprigError("an IVF-PQ index needs vectors to train on; build a flat index for an empty corpus")
            nlist, m, bits = _ivfpq_shape(n, dim, ivf_nlist, pq_m)
            base = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)
            base.train(vectors)
            base.nprobe = min(ivf_nprobe, nlist)
            settings.update(ivf_nlist=nlist, ivf_nprobe=base.nprobe, pq_m=m, pq_bits=bits)
        else:
            raise SprigError(f"unknown FAISS index kind '{kind}' (expected one of {', '.join(FAISS_KINDS)})")
        index = cls(faiss.IndexIDMap2(base), kind, settings=settings)
        index.add(vectors, rows)
        return index

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(vectors):
            self.index.add_with_ids(vectors, np.asarray(rows, dtype=np.int64))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored float32 vectors of ``rows`` (exact for flat and hnsw; ivfpq keeps only compressed codes)."""
        if self.kind == "ivfpq":
            raise SprigError("an ivfpq dense index keeps only compressed codes: build with --faiss flat or hnsw to export its vectors")
        return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def delete(self, rows) -> None:
        self.tombstones.update(int(r) for r in rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows and inner-product scores per query: ([nq, k] int64, [nq, k] float32), padded
        with row -1 / score -inf where fewer than k live vectors exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        nq = len(queries)
        rows_out = np.full((nq, k), -1, dtype=np.int64)
        scores_out = np.full((nq, k), -np.inf, dtype=np.float32)
        fetch = min(k + len(self.tombstones), int(self.index.ntotal))
        if fetch == 0 or nq == 0:
            return rows_out, scores_out
        scores, rows = self._flat_search(queries, fetch) if self.kind == "flat" and nq >= _BLAS_QUERIES else self.index.search(queries, fetch)
        dead = np.isin(rows, np.fromiter(self.tombstones, np.int64, len(self.tombstones))) | (rows < 0)
        for i in range(nq):
            live = ~dead[i]
            r, s = rows[i][live][:k], scores[i][live][:k]
            rows_out[i, : len(r)], scores_out[i, : len(s)] = r, s
        return rows_out, scores_out

    def _flat_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's flat search ([nq, k] scores, rows) for a batch, as numpy matrix products over FAISS's own storage
        (views, no copy); scores equal FAISS's up to float rounding (~1e-7), exact ties to the lower position (= lower
        row: rows are added in ascending order; FAISS leaves their order unspecified). Why: below nq·dim = 128,000
        FAISS scores one query at a time in plain loops (the faiss-cpu wheel loads no AVX2 module on this CPU) and
        keeps the fusion depth's top 1000 in a reservoir. A BLAS product pays a fixed cost per call (it packs the
        whole matrix: ~2.5 ms on SciFact) and little per query, so from ``_BLAS_QUERIES`` queries on it costs less:
        per query at depth 1000 on SciFact, 4 queries 0.98 against 0.87 ms, 8: 0.59 against 0.79, 16: 0.54 against
        1.08 (issue 22; both sides grow with the corpus). So a query's scores may differ in the last bits between a
        batch of 8 or more and a smaller one. Documents go in blocks so the score buffer stays under ``_SCORE_BYTES``
        whatever the corpus size."""
        import faiss

        n = int(self.index.ntotal)
        matrix = faiss.rev_swig_ptr(faiss.downcast_index(self.index.index).get_xb(), n * self.dim).reshape(n, self.dim)
        ids = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        block = max(k, _SCORE_BYTES // (4 * len(queries)))
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in queries]  # per query, per block: (positions, scores)
        for start in range(0, n, block):
            for per_query, row in zip(found, queries @ matrix[start : start + block].T):
                at, best = top_k(row, k)
                per_query.append((at + start, best))
        scores_out, rows_out = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        for i, blocks in enumerate(found):
            at, best = (np.concatenate(parts) for parts in zip(*blocks))
            keep = top_k(best, k)[0] if len(blocks) > 1 else slice(None)  # ties: earlier block, then its order = lower row
            scores_out[i], rows_out[i] = best[keep], ids[at[keep]]
        return scores_out, rows_out

    def save(self, directory: str | Path) -> None:
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / _INDEX_FILE))
        np.save(directory / _TOMBSTONES, np.array(sorted(self.tombstones), dtype=np.int64))
        (directory / _META).write_text(json.dumps(self.settings, indent=2))

    @classmethod
    def open(cls, directory: str | Path) -> "DenseIndex":
        import faiss

        directory = Path(directory)
        for name in (_INDEX_FILE, _TOMBSTONES, _META):
            if not (directory / name).is_file():
                raise IndexCorrupt(f"{directory / name}: dense index file missing")
        settings = json.loads((directory / _META).read_text())
        index = faiss.read_index(str(directory / _INDEX_FILE))
        if settings.get("kind") == "hnsw":  # efSearch is a search-time knob FAISS does not persist
            faiss.downcast_index(index.index).hnsw.efSearch = settings["hnsw_ef_search"]
        elif settings.get("kind") == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = settings["ivf_nprobe"]
        return cls(index, settings["kind"], set(np.load(directory / _TOMBSTONES).tolist()), settings)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean |approx ∩ exact| / |exact| over queries: the fraction of the exact top-k an approximate index finds."""
    found = [len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) / max(1, int((e >= 0).sum())) for a, e in zip(approx, exact)]
    return float(np.mean(found)) if found else 1.0
