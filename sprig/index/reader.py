"""The one way to open an index directory: manifest check, passage store, sparse engines, FAISS.

The retriever reads through ``Index``; the indexer's single-document updates write through it too
(``add`` / ``delete`` take vectors that are already encoded, so this layer never runs a model).

A write touches several parts, each committed on its own (SQLite, each sparse engine's manifest, the
dense directory, manifest.json). So that a process killed between two commits leaves an index that
opens and agrees with itself, a write first records its rows in ``pending-write.json``; a write that
fails, or one found pending at the next writable open, is finished by removing those rows from every
part (an add is undone, a delete completed) before the file goes. A write is acknowledged only after
that file is gone, so no acknowledged write is ever undone.
"""
from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sprig.core.errors import IndexCorrupt, SprigError
from sprig.core.files import replace_dir, write_text_atomic
from sprig.core.types import SparseVec
from sprig.index.dense import DenseIndex
from sprig.index.docstore import DocStore, StoredPassage
from sprig.index.manifest import DOCSTORE, read_manifest, write_manifest
from sprig.index.sparse import SparseIndex

BM25_STATE = Path("sparse") / "bm25" / "encoder"  # BM25's corpus statistics live with its postings
IDF_STATE = Path("sparse") / "inference-free" / "idf.npy"  # inference-free's corpus IDF, likewise (manifest feature "idf")
PENDING = "pending-write.json"  # rows first..last of a write not yet persisted everywhere


def _pending_rows(index_dir: Path) -> tuple[int, int] | None:
    """Rows first..last of a write interrupted in ``index_dir``, or None."""
    path = index_dir / PENDING
    try:
        first, last = json.loads(path.read_text())["rows"]
        return int(first), int(last)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise IndexCorrupt(f"{path}: expected {{\"rows\": [first, last]}}") from None


class Index:
    """An open index directory, the default ``Backend`` (sprig.index.backend). ``lock`` guards the structures
    while a write swaps them."""

    def __init__(self, index_dir: str | Path, writable: bool = False, verify: bool = False):
        self.dir = Path(index_dir)
        self.location = str(self.dir)
        pending = _pending_rows(self.dir)
        if pending and not writable:
            raise IndexCorrupt(f"{self.dir / PENDING}: a document write was interrupted; open the index writable once (`sprig serve`) to finish it")
        self.manifest = read_manifest(self.dir, verify=verify, check_files=not pending)
        self.writable = writable
        self.store = DocStore(self.dir / DOCSTORE, readonly=not writable)
        self.sparse: dict[str, SparseIndex] = {name: SparseIndex.open(self.dir / "sparse" / name) for name in self.manifest.get("sparse", {})}
        self.dense: DenseIndex | None = DenseIndex.open(self.dir / "dense") if "dense" in self.manifest else None
        self.lock = threading.RLock()
        if pending:
            self._remove_rows(*pending)
            (self.dir / PENDING).unlink()

    @property
    def sparse_names(self) -> list[str]:
        return list(self.sparse)

    @property
    def state_dir(self) -> Path:
        return self.dir

    @property
    def retrievers(self) -> list[str]:
        """The retrievers this index serves, sparse ones first, in build order."""
        return list(self.sparse) + (["dense"] if self.dense is not None else [])

    @property
    def encoder_settings(self) -> dict[str, dict]:
        """Each encoder's settings as recorded at build time (a model must be queried as it indexed)."""
        return self.manifest.get("encoders", {})

    @property
    def has_sentence_vectors(self) -> bool:
        return "sentence_vectors" in self.manifest

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()

    def get(self, passage_id: str) -> StoredPassage | None:
        return self.store.get_by_id(passage_id)

    def search(self, name: str, queries: np.ndarray | Sequence[SparseVec], depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, the top-``depth`` rows of FAISS (``name`` "dense") or of one sparse engine (exact mode)."""
        if name == "dense":
            rows, scores = self.dense.search(queries, depth)
            return [(r[r >= 0], s[r >= 0]) for r, s in zip(rows, scores)]
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        found = (self.sparse[name].search(vec, depth) if len(vec) else empty for vec in queries)
        return [(np.asarray(r, np.int64), np.asarray(s, np.float32)) for r, s in found]

    def add(self, passages: Sequence, sparse: Mapping[str, Sequence[SparseVec]], dense: np.ndarray | None,
            sentence_vectors: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Store encoded passages and add them to every index; visible to the next search and persisted."""
        self._require_writable()
        with self.lock:
            first = self.store.max_row() + 1
            rows = np.arange(first, first + len(passages), dtype=np.int64)
            with self._pending(first, first + len(passages) - 1):
                self.store.add(passages, dict(sparse), rows, sentence_vectors)
                for name, vecs in sparse.items():
                    self.sparse[name].add(vecs, rows)
                if dense is not None and self.dense is not None:
                    self.dense.add(dense, rows)
                self._persist()
        return rows

    def delete(self, passage_id: str) -> bool:
        """Remove a passage from the store and every index; False when it is not there."""
        self._require_writable()
        with self.lock:
            row = self.store.row_of(passage_id)
            if row is None:
                return False
            with self._pending(row, row):
                self._remove_rows(row, row)
        return True

    def _require_writable(self) -> None:
        if not self.writable:
            raise SprigError(f"{self.dir} is open read-only")

    @contextmanager
    def _pending(self, first: int, last: int) -> Iterator[None]:
        """Hold rows first..last in ``PENDING`` while a write changes the parts (this module's docstring)."""
        path = self.dir / PENDING
        write_text_atomic(path, json.dumps({"rows": [first, last]}))
        try:
            yield
        except Exception:
            self._remove_rows(first, last)
            path.unlink()
            raise
        path.unlink()

    def _remove_rows(self, first: int, last: int) -> None:
        """Rows first..last out of the store and every index, their numbers never issued again; persisted."""
        rows = np.arange(first, last + 1, dtype=np.int64)
        self.store.delete_rows(first, last)
        self.store.retire_rows(last)
        for index in self.sparse.values():
            index.delete(rows)
        if self.dense is not None:
            self.dense.delete(rows)
        self._persist()

    def _persist(self) -> None:
        """Write the dense index aside and swap it in, then refresh the manifest's counts and checksums.
        (The sparse engines commit their own segments; the passage store is SQLite.)"""
        if self.dense is not None:
            fresh = self.dir / "dense.tmp"
            shutil.rmtree(fresh, ignore_errors=True)
            self.dense.save(fresh)
            replace_dir(fresh, self.dir / "dense")
        self.manifest = write_manifest(self.dir, {**self.manifest, "passages": len(self.store)})
