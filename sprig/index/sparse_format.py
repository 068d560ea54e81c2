"""On-disk format of sprig's sparse inverted index: quantisation, segments, manifest, atomic writes.

Public API (stable; the benchmark and `sprig index` call it):
    write_sparse_index(path, vectors, doc_numbers, vocab_size, scale=None, range_shift=12) -> dict
        vectors: Sequence[SparseVec] or a scipy CSR matrix (rows = documents); doc_numbers: int64,
        caller-assigned and unique. Replaces any index at ``path`` (other files there, such as BM25's
        ``encoder/``, are left alone). Returns a summary for the caller's manifest.
    quantize_query(q, vocab_size) -> (term ids int64, integer weights int64, factor)
    Segment arrays: ``SEGMENT_ARRAYS``; ``load_segment`` maps them read-only after checking them.

Layout of ``path``:
    manifest.json          format, version, vocab size, impact scale, range shift, segments (each with its files'
                           sizes and SHA-256 and its current tombstone file), written to a temp file
                           and renamed: the rename is the commit point of every change
    seg-000001/*.npy       one immutable segment: the SEGMENT_ARRAYS, one .npy each (docs/sparse-index.md)
    seg-000001/deleted-N.npy  sorted internal ids deleted so far (N = manifest generation)

Quantisation: a document weight w becomes the impact ``round(w / scale)`` clipped to 0..255 (uint8);
``scale`` is fixed when the index is created (largest weight / 255, so nothing clips) and reused by
every later segment. Weights below scale / 2 become 0 and are dropped. Query weights become integers
``round(w * factor)`` with the largest at 65,535 unless the sum of query weights × 255 would pass
2^24 - 1, so scores are exact int32 sums, and exact float32 sums too (a Lucene impact index given
the same integers ranks identically) and rankings equal brute-force dot products over the same
integers, ties broken by the smaller doc number. Against float weights, a document moves only when two
scores are within the rounding error (about scale / 2 per shared term); see docs/sparse-index.md.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sprig.core.errors import IndexCorrupt, SprigError
from sprig.core.types import SparseVec
from sprig.index.manifest import check_file, file_record
from sprig.kernels import sparse_search as kernels

log = logging.getLogger(__name__)

FORMAT = "sprig-sparse"
VERSION = 3  # 3: 256-posting chunks, uint32 chunk offsets (+ chunk_base.npy), 2^12-doc ranges; 2: int64 offsets; 1: FOR gaps
MANIFEST = "manifest.json"
MAX_IMPACT = 255
MAX_QUERY_LEVEL = 65_535
SCORE_LIMIT = 2**24 - 1  # every score is exact in int32 and in float32 (Lucene sums float32 scores)
SEGMENT_ARRAYS = ("doc_numbers", "term_ptr", "term_chunk", "chunk_base", "chunk_last", "chunk_pos", "words", "impacts", "range_max")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save(path: Path, array: np.ndarray) -> dict:
    with path.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    return file_record(path)


# --- quantisation ---------------------------------------------------------------------------------


def csr_arrays(vectors: Sequence[SparseVec] | object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64, term ids int32, weights float32) from SparseVecs or a scipy CSR matrix."""
    if hasattr(vectors, "indptr"):
        return np.asarray(vectors.indptr, np.int64), np.asarray(vectors.indices, np.int32), np.asarray(vectors.data, np.float32)
    indptr = np.zeros(len(vectors) + 1, np.int64)
    np.cumsum([len(v) for v in vectors], out=indptr[1:])
    terms = np.concatenate([v.term_ids for v in vectors]) if len(vectors) else np.zeros(0, np.int32)
    weights = np.concatenate([v.weights for v in vectors]) if len(vectors) else np.zeros(0, np.float32)
    return indptr, terms.astype(np.int32, copy=False), weights.astype(np.float32, copy=False)


def choose_scale(weights: np.ndarray) -> float:
    """Impact step: the largest weight maps to 255 (1.0 when there are no positive weights)."""
    top = float(weights.max()) if weights.size else 0.0
    return top / MAX_IMPACT if top > 0 else 1.0


def quantize_docs(weights: np.ndarray, scale: float, block: int = 1 << 24) -> np.ndarray:
    """uint8 impacts; weights past 255 · scale clip (logged), negative weights become 0. Works in
    blocks so a 290M-posting corpus needs no float temporaries of its own size."""
    out = np.empty(weights.size, np.uint8)
    clipped = 0
    for lo in range(0, weights.size, block):
        q = np.rint(weights[lo:lo + block] / np.float32(scale))
        clipped += int(np.count_nonzero(q > MAX_IMPACT))
        out[lo:lo + block] = np.clip(q, 0, MAX_IMPACT)
    if clipped:
        log.warning("%d document weights exceed the index's impact range (scale %.6g) and were clipped to 255", clipped, scale)
    return out


def quantize_query(q: SparseVec, vocab_size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Integer query weights over known terms: (term ids int64, weights int64, factor).

    Unknown term ids and non-positive weights are dropped. ``factor`` maps weights to integers; a score
    s (a sum of query integer × impact) is ``s / factor * scale`` in the original units."""
    keep = (q.term_ids >= 0) & (q.term_ids < vocab_size) & (q.weights > 0)
    terms, w = q.term_ids[keep].astype(np.int64), q.weights[keep].astype(np.float64)
    if terms.size == 0:
        return terms, np.zeros(0, np.int64), 1.0
    factor = min(MAX_QUERY_LEVEL / w.max(), (SCORE_LIMIT // MAX_IMPACT - terms.size) / w.sum())
    vals = np.rint(w * factor).astype(np.int64)
    nz = vals > 0
    return terms[nz], vals[nz], float(factor)


# --- segments -------------------------------------------------------------------------------------


def build_segment(indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, doc_numbers: np.ndarray, vocab_size: int, scale: float,
                  range_shift: int = kernels.RANGE_SHIFT) -> dict[str, np.ndarray]:
    """Quantise, invert and pack one segment's documents (internal id = row order)."""
    n_docs = indptr.size - 1
    if doc_numbers.shape != (n_docs,):
        raise SprigError(f"{n_docs} vectors but {doc_numbers.size} doc numbers")
    if terms.size and (terms.min() < 0 or terms.max() >= vocab_size):
        raise SprigError(f"term id {int(terms.max()) if terms.max() >= vocab_size else int(terms.min())} outside the vocabulary 0..{vocab_size - 1}")
    imps = quantize_docs(weights, scale)
    term_ptr, docs, imps = kernels.group_by_term(terms, imps, indptr, np.zeros(0, np.int32), vocab_size)
    return _pack(doc_numbers, term_ptr, docs, imps, range_shift)


def _pack(doc_numbers: np.ndarray, term_ptr: np.ndarray, docs: np.ndarray, imps: np.ndarray, range_shift: int) -> dict[str, np.ndarray]:
    term_chunk, chunk_base, chunk_last, chunk_pos, words = kernels.pack(term_ptr, docs)
    rmax = kernels.range_max(term_ptr, docs, imps, range_shift, doc_numbers.size)
    return dict(doc_numbers=np.ascontiguousarray(doc_numbers, dtype=np.int64), term_ptr=term_ptr, term_chunk=term_chunk, chunk_base=chunk_base,
                chunk_last=chunk_last, chunk_pos=chunk_pos, words=words, impacts=imps, range_max=rmax)


def unpack(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A segment's postings in term order: (doc ids int32, impacts uint8)."""
    docs = kernels.unpack(arrays["words"], arrays["term_ptr"], arrays["term_chunk"], arrays["chunk_base"], arrays["chunk_last"], arrays["chunk_pos"])
    return docs, np.asarray(arrays["impacts"])


def merge_segments(segments: Sequence[tuple[dict[str, np.ndarray], np.ndarray]], vocab_size: int, range_shift: int = kernels.RANGE_SHIFT) -> dict[str, np.ndarray]:
    """One segment holding the live documents of ``(arrays, deleted mask)`` pairs, in their order."""
    terms_all, docs_all, imps_all, numbers = [], [], [], []
    base = 0
    for arrays, deleted in segments:
        live = deleted == 0
        remap = np.cumsum(live, dtype=np.int64) - 1 + base
        docs, imps = unpack(arrays)
        terms = np.repeat(np.arange(vocab_size, dtype=np.int32), np.diff(arrays["term_ptr"]))
        terms_all.append(terms)
        docs_all.append(remap[docs].astype(np.int32))
        imps_all.append(np.where(live[docs], imps, np.uint8(0)))  # zero impacts are dropped
        numbers.append(np.asarray(arrays["doc_numbers"])[live])
        base += int(live.sum())
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    term_ptr, docs, imps = kernels.group_by_term(cat(terms_all, np.int32), cat(imps_all, np.uint8), np.zeros(0, np.int64), cat(docs_all, np.int32), vocab_size)
    return _pack(cat(numbers, np.int64), term_ptr, docs, imps, range_shift)


def write_segment(index_dir: Path, name: str, arrays: dict[str, np.ndarray]) -> dict:
    """Write a segment into ``name.tmp`` and rename it to ``name``; returns its manifest entry."""
    tmp, final = index_dir / f"{name}.tmp", index_dir / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {f"{name}/{key}.npy": _save(tmp / f"{key}.npy", arrays[key]) for key in SEGMENT_ARRAYS}
    _fsync_dir(tmp)
    os.rename(tmp, final)
    return {"name": name, "docs": int(arrays["doc_numbers"].size), "postings": int(arrays["impacts"].size), "files": files, "deleted": None}


def write_deleted(index_dir: Path, segment: dict, internal_ids: np.ndarray, generation: int) -> dict:
    """A new tombstone file for a segment (sorted internal ids); returns the updated segment entry."""
    rel = f"{segment['name']}/deleted-{generation}.npy"
    info = _save(index_dir / rel, np.unique(internal_ids).astype(np.int32))
    return {**segment, "deleted": {"file": rel, **info}}


def load_segment(index_dir: Path, entry: dict, manifest: dict, verify: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Memory-map a segment's arrays and build its deleted mask, checking sizes (and SHA-256 with ``verify``)."""
    listed = dict(entry["files"])
    if entry.get("deleted"):
        listed[entry["deleted"]["file"]] = entry["deleted"]
    arrays = {}
    for rel, want in listed.items():
        path = index_dir / rel
        check_file(path, want, verify, index_dir / MANIFEST)
        try:
            arrays[Path(rel).stem] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise IndexCorrupt(f"{path}: not a readable .npy array ({exc})") from None
    deleted = np.zeros(entry["docs"], np.uint8)
    if entry.get("deleted"):
        ids = arrays.pop(Path(entry["deleted"]["file"]).stem)
        if ids.size and (ids.min() < 0 or ids.max() >= entry["docs"]):
            raise IndexCorrupt(f"{index_dir / entry['deleted']['file']}: deleted ids outside 0..{entry['docs'] - 1}")
        deleted[ids] = 1
    _check_shapes(index_dir / entry["name"], arrays, entry, manifest["vocab_size"], manifest["range_shift"])
    return arrays, deleted


def _check_shapes(seg_dir: Path, a: dict[str, np.ndarray], entry: dict, vocab_size: int, range_shift: int) -> None:
    """O(1) consistency checks that keep the kernels in bounds when a file was swapped for another valid one."""
    want = {
        "doc_numbers": ((entry["docs"],), np.int64), "term_ptr": ((vocab_size + 1,), np.int64), "term_chunk": ((vocab_size + 1,), np.int64),
        "impacts": ((entry["postings"],), np.uint8),
    }
    n_chunks = int(a["term_chunk"][-1]) if a["term_chunk"].size else -1
    n_groups = (n_chunks + (1 << kernels.BASE_SHIFT) - 1) >> kernels.BASE_SHIFT
    want |= {"chunk_last": ((n_chunks,), np.int32), "chunk_pos": ((n_chunks,), np.uint32), "chunk_base": ((n_groups + 1,), np.int64),
             "range_max": ((vocab_size, n_ranges(entry["docs"], range_shift)), np.uint8)}
    for key, (shape, dtype) in want.items():
        if a[key].shape != shape or a[key].dtype != dtype:
            raise IndexCorrupt(f"{seg_dir / key}.npy: shape {a[key].shape} {a[key].dtype}, expected {shape} {np.dtype(dtype)}")
    if int(a["term_ptr"][-1]) != entry["postings"] or a["words"].dtype != np.uint32 or a["words"].size < (int(a["chunk_base"][-1]) + 31) // 32 + 2:
        raise IndexCorrupt(f"{seg_dir}: posting arrays disagree with each other or with the manifest")


# --- manifest -------------------------------------------------------------------------------------


def n_ranges(n_docs: int, range_shift: int) -> int:
    return max(1, (n_docs + (1 << range_shift) - 1) >> range_shift)


def new_manifest(vocab_size: int, scale: float, range_shift: int) -> dict:
    return {"format": FORMAT, "version": VERSION, "vocab_size": int(vocab_size), "scale": float(scale), "range_shift": int(range_shift),
            "generation": 0, "next_segment": 1, "segments": []}


def read_manifest(index_dir: Path) -> dict:
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexCorrupt(f"{path}: not found; is {index_dir} a sprig sparse index?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        got = f"format {manifest.get('format')!r} version {manifest.get('version')!r}" if isinstance(manifest, dict) else repr(manifest)
        raise IndexCorrupt(f"{path}: {got}; this sprig reads {FORMAT!r} version {VERSION} only: rebuild the index from its vectors")
    return manifest


def commit(index_dir: Path, manifest: dict) -> None:
    """Write manifest.json atomically (temp + fsync + rename), then remove files it no longer references."""
    tmp = index_dir / (MANIFEST + ".tmp")
    with tmp.open("w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, index_dir / MANIFEST)
    _fsync_dir(index_dir)
    live = {s["name"]: s for s in manifest["segments"]}
    for path in index_dir.glob("seg-*"):
        seg = live.get(path.name)
        if seg is None:
            shutil.rmtree(path, ignore_errors=True)
            continue
        keep = seg["deleted"]["file"] if seg.get("deleted") else None
        for old in path.glob("deleted-*.npy"):
            if f"{path.name}/{old.name}" != keep:
                old.unlink()


def write_sparse_index(path: str | Path, vectors, doc_numbers, vocab_size: int, scale: float | None = None, range_shift: int = kernels.RANGE_SHIFT) -> dict:
    """Build a one-segment index at ``path`` (replacing any index there) and return its summary.

    ``range_shift``: ranges of 2^range_shift doc ids are the unit of the search's upper bounds (smaller =
    tighter bounds and a larger ``range_max``: vocab × docs / 2^range_shift bytes)."""
    index_dir = Path(path)
    index_dir.mkdir(parents=True, exist_ok=True)
    indptr, terms, weights = csr_arrays(vectors)
    scale = choose_scale(weights) if scale is None else float(scale)
    old = read_manifest(index_dir) if (index_dir / MANIFEST).is_file() else None
    if not 0 <= range_shift <= 20:
        raise SprigError(f"range_shift must be in 0..20, got {range_shift}")
    manifest = new_manifest(vocab_size, scale, range_shift)
    if old is not None:
        manifest |= {"generation": old["generation"] + 1, "next_segment": old["next_segment"]}
    name = f"seg-{manifest['next_segment']:06d}"
    manifest["next_segment"] += 1
    arrays = build_segment(indptr, terms, weights, np.asarray(doc_numbers, np.int64), vocab_size, scale, range_shift)
    if np.unique(arrays["doc_numbers"]).size != arrays["doc_numbers"].size:
        raise SprigError("doc numbers must be unique")
    manifest["segments"] = [write_segment(index_dir, name, arrays)]
    commit(index_dir, manifest)
    return summary(index_dir, manifest)


def summary(index_dir: Path, manifest: dict) -> dict:
    segs = manifest["segments"]
    files = [f["size"] for s in segs for f in s["files"].values()] + [s["deleted"]["size"] for s in segs if s.get("deleted")]
    return {"format": FORMAT, "version": VERSION, "vocab_size": manifest["vocab_size"], "scale": manifest["scale"], "range_shift": manifest["range_shift"], "segments": len(segs),
            "docs": sum(s["docs"] for s in segs), "postings": sum(s["postings"] for s in segs), "bytes": int(sum(files))}
