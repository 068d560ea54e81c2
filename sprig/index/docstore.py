"""The passage store: one SQLite file mapping row numbers to passages and their sparse vectors.

Row numbers (SQLite ``rowid``, int64) are the doc numbers every index stores, so a hit from any
retriever is one primary-key lookup away from its text. Sparse document vectors are kept here as
blobs because explaining a hit needs the document side of the dot product, and re-encoding a
document per query would cost a model forward. Dense embeddings of each passage's sentences
(float16, one [sentences, dim] blob per passage) are kept for the same reason: RECOMP's extractive
compressor scores them per answer, and encoding them per request costs seconds on a CPU. REFRAG's chunk
embeddings (one float16 vector per k-decoder-token chunk, with each chunk's character span) are kept per
chunk size k for the same reason (sprig.encoders.chunk_vectors). Rows are never renumbered: a deleted row's number is
not reused (AUTOINCREMENT), so a tombstone in any index can never hide a newer passage.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sprig.core.errors import DuplicateId, IndexCorrupt
from sprig.core.types import SparseVec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    passage_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    rowid INTEGER NOT NULL REFERENCES passages(rowid) ON DELETE CASCADE,
    encoder TEXT NOT NULL,
    term_ids BLOB NOT NULL,
    weights BLOB NOT NULL,
    PRIMARY KEY (encoder, rowid)
);
CREATE TABLE IF NOT EXISTS sentence_vectors (
    rowid INTEGER PRIMARY KEY REFERENCES passages(rowid) ON DELETE CASCADE,
    dim INTEGER NOT NULL,
    vectors BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_vectors (
    rowid INTEGER NOT NULL REFERENCES passages(rowid) ON DELETE CASCADE,
    size INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    spans BLOB NOT NULL,
    vectors BLOB NOT NULL,
    PRIMARY KEY (size, rowid)
);
"""


def _stored_vec(term_ids: bytes, weights: bytes) -> SparseVec:
    """A SparseVec from the blobs ``add`` wrote from one (checked then; copied: they stay writable)."""
    return SparseVec.trusted(np.frombuffer(term_ids, np.int32).copy(), np.frombuffer(weights, np.float32).copy())


@dataclass
class StoredPassage:
    row: int
    passage_id: str
    doc_id: str
    title: str
    text: str
    metadata: dict = field(default_factory=dict)


class DocStore:
    """SQLite passage store. ``readonly`` opens with ``mode=ro`` so a served index is never written by accident."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise IndexCorrupt(f"{self.path}: passage store missing")
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        # check_same_thread=False: the API serves from a thread pool; callers serialise writes.
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "DocStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]

    def add(
        self, passages: Iterable, vectors: dict[str, Sequence[SparseVec]] | None = None, rows: Sequence[int] | None = None,
        sentence_vectors: Sequence[np.ndarray] | None = None, chunk_vectors: dict | None = None,
    ) -> np.ndarray:
        """Insert passages (objects with passage_id, doc_id, title, text, metadata) in one transaction;
        returns their row numbers: ``rows`` when given (the builder numbers passages by corpus order, so a
        resumed build numbers them the same way), else fresh ones. ``vectors`` maps encoder name -> one
        SparseVec per passage; ``sentence_vectors`` one float16 [sentences, dim] array per passage;
        ``chunk_vectors`` maps chunk size -> one (int32 [chunks, 2] spans, float16 [chunks, dim]) per passage."""
        passages = list(passages)
        wanted = [None] * len(passages) if rows is None else [int(r) for r in rows]
        rows = np.empty(len(passages), dtype=np.int64)
        with self.conn:
            for i, p in enumerate(passages):
                try:
                    cur = self.conn.execute(
                        "INSERT INTO passages (rowid, passage_id, doc_id, title, text, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                        (wanted[i], p.passage_id, p.doc_id, p.title, p.text, json.dumps(p.metadata or {})),
                    )
                except sqlite3.IntegrityError:
                    raise DuplicateId(f"passage id '{p.passage_id}' already exists in {self.path}") from None
                rows[i] = cur.lastrowid
            for encoder, vecs in (vectors or {}).items():
                if len(vecs) != len(passages):
                    raise ValueError(f"{encoder}: {len(vecs)} vectors for {len(passages)} passages")
                self.conn.executemany(
                    "INSERT INTO vectors (rowid, encoder, term_ids, weights) VALUES (?, ?, ?, ?)",
                    ((int(r), encoder, v.term_ids.tobytes(), v.weights.tobytes()) for r, v in zip(rows, vecs)),
                )
            if sentence_vectors is not None:
                if len(sentence_vectors) != len(passages):
                    raise ValueError(f"sentence vectors for {len(sentence_vectors)} passages, {len(passages)} passages given")
                self.conn.executemany(
                    "INSERT INTO sentence_vectors (rowid, dim, vectors) VALUES (?, ?, ?)",
                    ((int(r), int(v.shape[1]), np.ascontiguousarray(v, np.float16).tobytes()) for r, v in zip(rows, sentence_vectors)),
                )
            for size, per_passage in (chunk_vectors or {}).items():
                if len(per_passage) != len(passages):
                    raise ValueError(f"chunk vectors (k={size}) for {len(per_passage)} passages, {len(passages)} passages given")
                self.conn.executemany(
                    "INSERT INTO chunk_vectors (rowid, size, dim, spans, vectors) VALUES (?, ?, ?, ?, ?)",
                    ((int(r), int(size), int(v.shape[1]), np.ascontiguousarray(s, np.int32).tobytes(), np.ascontiguousarray(v, np.float16).tobytes())
                     for r, (s, v) in zip(rows, per_passage)),
                )
        return rows

    def delete(self, passage_id: str) -> int | None:
        """Remove one passage (and its vectors); returns its row number, or None when absent."""
        with self.conn:
            row = self.row_of(passage_id)
            if row is not None:
                self.conn.execute("DELETE FROM passages WHERE rowid = ?", (row,))
        return row

    def delete_rows(self, first: int, last: int) -> None:
        """Remove rows first..last inclusive (a shard a killed build may have half-committed)."""
        with self.conn:
            self.conn.execute("DELETE FROM passages WHERE rowid BETWEEN ? AND ?", (first, last))

    def retire_rows(self, last: int) -> None:
        """Never issue row numbers up to ``last`` (rows an interrupted write may have left in an index)."""
        with self.conn:
            if not self.conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'passages'", (last,)).rowcount:
                self.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('passages', ?)", (last,))

    def row_of(self, passage_id: str) -> int | None:
        found = self.conn.execute("SELECT rowid FROM passages WHERE passage_id = ?", (passage_id,)).fetchone()
        return None if found is None else int(found[0])

    def get(self, rows: Sequence[int]) -> dict[int, StoredPassage]:
        """Row number -> passage for the rows that exist (deleted rows are simply absent)."""
        rows = [int(r) for r in rows]
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        cur = self.conn.execute(f"SELECT rowid, passage_id, doc_id, title, text, metadata FROM passages WHERE rowid IN ({marks})", rows)
        return {r[0]: StoredPassage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in cur}

    def get_by_id(self, passage_id: str) -> StoredPassage | None:
        row = self.row_of(passage_id)
        return None if row is None else self.get([row]).get(row)

    def vectors(self, encoder: str, rows: Sequence[int]) -> dict[int, SparseVec]:
        rows = [int(r) for r in rows]
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        cur = self.conn.execute(f"SELECT rowid, term_ids, weights FROM vectors WHERE encoder = ? AND rowid IN ({marks})", [encoder, *rows])
        return {r[0]: _stored_vec(r[1], r[2]) for r in cur}

    def has_sentence_vectors(self) -> bool:
        """False for a store written before sentence vectors existed, or built without them."""
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sentence_vectors'").fetchone()
        return found is not None and self.conn.execute("SELECT 1 FROM sentence_vectors LIMIT 1").fetchone() is not None

    def sentence_vectors(self, passage_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Passage id -> float16 [sentences, dim] for the passages that have stored sentence vectors."""
        if not passage_ids or not self.has_sentence_vectors():
            return {}
        marks = ",".join("?" * len(passage_ids))
        cur = self.conn.execute(
            f"SELECT p.passage_id, s.dim, s.vectors FROM sentence_vectors s JOIN passages p ON p.rowid = s.rowid WHERE p.passage_id IN ({marks})",
            list(passage_ids),
        )
        return {pid: np.frombuffer(blob, np.float16).reshape(-1, dim) for pid, dim, blob in cur}

    def chunk_vectors(self, size: int, passage_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Passage id -> (int32 [chunks, 2] character spans, float16 [chunks, dim]) of its k=``size`` chunks, for
        the passages that have them (none on a store written before chunk vectors existed)."""
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunk_vectors'").fetchone()
        if not passage_ids or found is None:
            return {}
        marks = ",".join("?" * len(passage_ids))
        cur = self.conn.execute(
            f"SELECT p.passage_id, c.dim, c.spans, c.vectors FROM chunk_vectors c JOIN passages p ON p.rowid = c.rowid "
            f"WHERE c.size = ? AND p.passage_id IN ({marks})", [int(size), *passage_ids],
        )
        return {pid: (np.frombuffer(spans, np.int32).reshape(-1, 2), np.frombuffer(blob, np.float16).reshape(-1, dim))
                for pid, dim, spans, blob in cur}

    def all_vectors(self, encoder: str) -> tuple[np.ndarray, list[SparseVec]]:
        """Every stored vector of one encoder, by ascending row: (rows int64, vectors)."""
        rows, vecs = [], []
        cur = self.conn.execute("SELECT rowid, term_ids, weights FROM vectors WHERE encoder = ? ORDER BY rowid", (encoder,))
        for r in cur:
            rows.append(r[0])
            vecs.append(_stored_vec(r[1], r[2]))
        return np.array(rows, dtype=np.int64), vecs

    def iter_rows(self) -> Iterator[StoredPassage]:
        for r in self.conn.execute("SELECT rowid, passage_id, doc_id, title, text, metadata FROM passages ORDER BY rowid"):
            yield StoredPassage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))

    def max_row(self) -> int:
        """The largest row number ever issued (deleted rows included), 0 for a fresh store."""
        found = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").fetchone()
        return int(found[0]) if found else 0
