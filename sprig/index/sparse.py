"""sprig's sparse inverted index: exact and approximate top-k over memory-mapped segments, updatable.

Public API (stable; the benchmark, the searcher and `sprig eval beir --index` call it):
    SparseIndex.create(path, vectors, doc_numbers, vocab_size, scale=None, range_shift=12) -> SparseIndex
    SparseIndex.open(path, verify=True)      verify: SHA-256 of every file (else sizes and shapes only)
    index.search(q, k=10, mode="exact"|"approx", mu=0.9, query_cut=0, query_mass=1.0, rescore=0, first=4)
        -> (doc numbers int64, scores float32), sorted by (-score, doc number); only documents that
        share a term with the query; empty query or unknown term ids -> empty arrays
    index.batch_search(queries, k=10, threads=1, mode=..., **knobs) -> list of (doc numbers, scores)
    index.add(vectors, doc_numbers)          new segment; a live doc number is replaced (upsert)
    index.delete(doc_numbers) -> int         tombstones; returns how many were live
    index.merge()                            one segment of the live documents, tombstones dropped
    index.quantize_query(q), index.impact_matrix(), len(index), index.nbytes, index.scale

Every change is written aside and committed by renaming manifest.json, so a reader never sees a
half-written index, and is visible to the next search on this object. Exact mode scores doc-id
ranges in order of their upper bounds and skips those that cannot reach the k-th score
(sprig/kernels/sparse_search.py). Approx mode scores only the query's heaviest terms over all
documents (``query_cut``: at most that many; ``query_mass``: just enough to hold that share of the
query's weight sum) and skips ranges whose bound times ``mu`` misses the k-th score. The other
terms are dropped (``rescore=0``, Seismic's query_cut) or, with ``rescore=R``, used to complete
the scores of the R best candidates, so the scores returned are full dot products and recall
comes from the candidates alone. Design notes and measurements: docs/sparse-index.md.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprig.core.config import SPARSE_SEARCH_MODES, SparseSearchMode
from sprig.core.errors import SprigError
from sprig.core.types import SparseVec
from sprig.index import sparse_format as fmt
from sprig.kernels import sparse_search as kernels

_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass
class _Segment:
    entry: dict
    arrays: dict[str, np.ndarray]
    deleted: np.ndarray  # uint8 per internal id
    range_shift: int
    _ids: np.ndarray | None = None  # internal ids 0..n-1, made on first use

    @classmethod
    def load(cls, index_dir: Path, entry: dict, manifest: dict, verify: bool) -> "_Segment":
        arrays, deleted = fmt.load_segment(index_dir, entry, manifest, verify)
        return cls(entry, arrays, deleted, int(manifest["range_shift"]))

    def search(self, terms, vals, mu, first, scratch, ts, tn, m, k, internal: bool = False) -> int:
        """Continue the top-k (ts, tn, m) with this segment's documents; ``internal``: hold internal ids
        instead of doc numbers (candidates for ``complete``)."""
        a = self.arrays
        acc, sel = scratch
        if internal and self._ids is None:
            self._ids = np.arange(self.deleted.size, dtype=np.int64)
        numbers = self._ids if internal else a["doc_numbers"]
        return kernels.search_segment(a["words"], a["impacts"], a["term_ptr"], a["term_chunk"], a["chunk_base"], a["chunk_last"], a["chunk_pos"],
                                      a["range_max"], self.range_shift, numbers, self.deleted, terms, vals, float(mu), int(first),
                                      acc, sel, ts, tn, m, k)

    def complete(self, terms, vals, cand, partial, ts, tn, m, k) -> int:
        """Add ``terms``' contributions to candidates (internal ids) scored on the other terms, then
        offer their complete scores to the top-k (ts, tn, m)."""
        a = self.arrays
        order = np.argsort(cand)
        cand, scores = cand[order], partial[order]  # copies: the caller's buffers stay as they were
        kernels.rescore(a["words"], a["impacts"], a["term_ptr"], a["term_chunk"], a["chunk_base"], a["chunk_last"], a["chunk_pos"], terms, vals, cand, scores)
        return kernels.offer_all(scores, cand, a["doc_numbers"], ts, tn, m, k)


def _kept_terms(vals: np.ndarray, query_cut: int, query_mass: float) -> np.ndarray:
    """Positions of the query terms scored over every document: the largest weights, at most
    ``query_cut`` of them (0: no limit) and no more than hold ``query_mass`` of the weight sum."""
    n = vals.size if query_cut <= 0 else min(vals.size, query_cut)
    if n == vals.size and query_mass >= 1:
        return np.arange(vals.size)
    order = np.lexsort((np.arange(vals.size), -vals))
    if query_mass < 1:
        n = min(n, int(np.searchsorted(np.cumsum(vals[order]), query_mass * vals.sum())) + 1)
    return np.sort(order[:n])


class SparseIndex:
    """An open sparse index directory (see module docstring)."""

    def __init__(self, path: Path, manifest: dict, segments: list[_Segment]):
        self.path, self.manifest, self.segments = path, manifest, segments
        self._scratch = threading.local()
        self._write_lock = threading.Lock()

    # --- opening ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> "SparseIndex":
        path = Path(path)
        manifest = fmt.read_manifest(path)
        return cls(path, manifest, [_Segment.load(path, e, manifest, verify) for e in manifest["segments"]])

    @classmethod
    def create(cls, path: str | Path, vectors, doc_numbers, vocab_size: int, scale: float | None = None, range_shift: int = kernels.RANGE_SHIFT) -> "SparseIndex":
        fmt.write_sparse_index(path, vectors, doc_numbers, vocab_size, scale, range_shift)
        return cls.open(path, verify=False)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def scale(self) -> float:
        return float(self.manifest["scale"])

    @property
    def nbytes(self) -> int:
        return fmt.summary(self.path, self.manifest)["bytes"]

    def __len__(self) -> int:
        return int(sum(s.deleted.size - int(s.deleted.sum()) for s in self.segments))

    def doc_numbers(self) -> np.ndarray:
        """Live doc numbers, segment order."""
        parts = [np.asarray(s.arrays["doc_numbers"])[s.deleted == 0] for s in self.segments]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    # --- search -----------------------------------------------------------------------------------

    def quantize_query(self, q: SparseVec) -> tuple[np.ndarray, np.ndarray, float]:
        return fmt.quantize_query(q, self.vocab_size)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-thread scratch the kernel leaves clean: int32 accumulators and uint8 range marks, all zero."""
        shift = int(self.manifest["range_shift"])
        ranges = max((fmt.n_ranges(s.deleted.size, shift) for s in self.segments), default=1)
        acc, sel = getattr(self._scratch, "buffers", (np.zeros(0, np.int32), np.zeros(0, np.uint8)))
        if sel.size < ranges:
            acc, sel = np.zeros(ranges << shift, np.int32), np.zeros(ranges, np.uint8)
            self._scratch.buffers = acc, sel
        return acc, sel

    def search(self, q: SparseVec, k: int = 10, mode: SparseSearchMode = "exact", mu: float = 0.9, query_cut: int = 0, query_mass: float = 1.0,
               rescore: int = 0, first: int = kernels.FIRST_RANGES) -> tuple[np.ndarray, np.ndarray]:
        """Top-k doc numbers and scores; see the module docstring for modes and knobs."""
        if mode not in SPARSE_SEARCH_MODES:
            raise SprigError(f"search mode {mode!r}: expected one of {', '.join(SPARSE_SEARCH_MODES)}")
        if k < 1:
            raise SprigError(f"k must be at least 1, got {k}")
        if mode == "exact":
            mu, query_cut, query_mass, rescore = 1.0, 0, 1.0, 0
        elif not 0 < mu <= 1 or not 0 < query_mass <= 1 or query_cut < 0 or rescore < 0:
            raise SprigError(f"approx knobs: mu and query_mass must be in (0, 1], query_cut and rescore >= 0; got mu={mu}, "
                             f"query_mass={query_mass}, query_cut={query_cut}, rescore={rescore}")
        terms, vals, factor = self.quantize_query(q)
        if terms.size == 0:
            return _EMPTY
        kept = _kept_terms(vals, query_cut, query_mass)
        segments = self.segments  # a concurrent add/merge swaps the list, never mutates it
        scratch = self._buffers()
        ts, tn = np.zeros(k, np.int64), np.zeros(k, np.int64)
        m = 0
        if rescore and kept.size < terms.size:
            rest = np.setdiff1d(np.arange(terms.size), kept)
            n_cand = max(rescore, k)
            cs, cn = np.zeros(n_cand, np.int64), np.zeros(n_cand, np.int64)
            for seg in segments:
                cm = seg.search(terms[kept], vals[kept], mu, first, scratch, cs, cn, 0, n_cand, internal=True)
                m = seg.complete(terms[rest], vals[rest], cn[:cm], cs[:cm], ts, tn, m, k)
        else:
            if kept.size < terms.size:
                terms, vals = terms[kept], vals[kept]
            for seg in segments:
                m = seg.search(terms, vals, mu, first, scratch, ts, tn, m, k)
        order = np.lexsort((tn[:m], -ts[:m]))
        return tn[order].copy(), (ts[order] * (self.scale / factor)).astype(np.float32)

    def batch_search(self, queries: Sequence[SparseVec], k: int = 10, threads: int = 1, mode: SparseSearchMode = "exact", **knobs) -> list[tuple[np.ndarray, np.ndarray]]:
        """``search`` over many queries; ``threads`` > 1 spreads queries over a pool (the kernel drops the GIL)."""
        if threads <= 1:
            return [self.search(q, k, mode, **knobs) for q in queries]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda q: self.search(q, k, mode, **knobs), queries))

    def impact_matrix(self):
        """(scipy CSR of impacts, live docs × vocab, int32; their doc numbers): the quantised weights
        the engine scores, for brute-force references."""
        from scipy.sparse import csr_matrix, vstack

        mats, numbers = [], []
        for s in self.segments:
            a = s.arrays
            docs, imps = fmt.unpack(a)
            terms = np.repeat(np.arange(self.vocab_size, dtype=np.int32), np.diff(a["term_ptr"]))
            mat = csr_matrix((imps.astype(np.int32), (docs, terms)), shape=(s.deleted.size, self.vocab_size))
            live = s.deleted == 0
            mats.append(mat[live])
            numbers.append(np.asarray(a["doc_numbers"])[live])
        if not mats:
            return csr_matrix((0, self.vocab_size), dtype=np.int32), np.zeros(0, np.int64)
        return vstack(mats).tocsr(), np.concatenate(numbers)

    # --- updates ----------------------------------------------------------------------------------

    def _locate(self, doc_numbers: np.ndarray) -> list[np.ndarray]:
        """Per segment, the internal ids of live documents whose number is in ``doc_numbers``."""
        return [np.flatnonzero(np.isin(np.asarray(s.arrays["doc_numbers"]), doc_numbers) & (s.deleted == 0)) for s in self.segments]

    def _tombstone(self, manifest: dict, hits: list[np.ndarray]) -> None:
        for i, (seg, ids) in enumerate(zip(self.segments, hits)):
            if ids.size:
                manifest["segments"][i] = fmt.write_deleted(self.path, manifest["segments"][i], np.union1d(np.flatnonzero(seg.deleted), ids), manifest["generation"])

    def _commit(self, manifest: dict, segments: list[_Segment]) -> None:
        fmt.commit(self.path, manifest)
        self.manifest, self.segments = manifest, segments

    def _reload(self, manifest: dict, keep: dict[str, _Segment]) -> list[_Segment]:
        """Segments for ``manifest``: unchanged ones reused, the rest loaded (already written and hashed by us)."""
        out = []
        for e in manifest["segments"]:
            old = keep.get(e["name"])
            out.append(old if old is not None and old.entry == e else _Segment.load(self.path, e, manifest, verify=False))
        return out

    def delete(self, doc_numbers) -> int:
        """Tombstone live documents by number; returns how many were found."""
        numbers = np.asarray(doc_numbers, np.int64).ravel()
        with self._write_lock:
            hits = self._locate(numbers)
            found = int(sum(h.size for h in hits))
            if found:
                manifest = {**self.manifest, "generation": self.manifest["generation"] + 1, "segments": list(self.manifest["segments"])}
                self._tombstone(manifest, hits)
                self._commit(manifest, self._reload(manifest, {s.entry["name"]: s for s in self.segments}))
        return found

    def add(self, vectors, doc_numbers) -> None:
        """Index new documents as a new segment; live documents with the same numbers are replaced."""
        numbers = np.asarray(doc_numbers, np.int64).ravel()
        if np.unique(numbers).size != numbers.size:
            raise SprigError("doc numbers passed to add must be unique")
        indptr, terms, weights = fmt.csr_arrays(vectors)
        if indptr.size - 1 == 0:
            return
        with self._write_lock:
            manifest = {**self.manifest, "generation": self.manifest["generation"] + 1, "next_segment": self.manifest["next_segment"] + 1,
                        "segments": list(self.manifest["segments"])}
            if not any(s["postings"] for s in manifest["segments"]):  # nothing quantised yet: fit the scale now
                manifest["scale"] = fmt.choose_scale(weights)
            arrays = fmt.build_segment(indptr, terms, weights, numbers, self.vocab_size, manifest["scale"], manifest["range_shift"])
            self._tombstone(manifest, self._locate(numbers))
            manifest["segments"].append(fmt.write_segment(self.path, f"seg-{self.manifest['next_segment']:06d}", arrays))
            self._commit(manifest, self._reload(manifest, {s.entry["name"]: s for s in self.segments}))

    def merge(self) -> None:
        """Rewrite all segments as one, dropping deleted documents."""
        with self._write_lock:
            if len(self.segments) == 1 and not self.segments[0].deleted.any():
                return
            arrays = fmt.merge_segments([(s.arrays, s.deleted) for s in self.segments], self.vocab_size, self.manifest["range_shift"])
            manifest = {**self.manifest, "generation": self.manifest["generation"] + 1, "next_segment": self.manifest["next_segment"] + 1}
            manifest["segments"] = [fmt.write_segment(self.path, f"seg-{self.manifest['next_segment']:06d}", arrays)]
            self._commit(manifest, self._reload(manifest, {}))
