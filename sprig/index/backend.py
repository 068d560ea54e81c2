"""Where an index lives: the storage interface the Searcher and the write path use, and the one place a
location string is parsed.

A location is one argument everywhere (`sprig index --out`, `sprig search/serve/ask IDX`, `eval --index`):

- ``http://HOST:PORT/COLLECTION`` (or ``https://``): a Milvus server, that collection;
- ``PATH.db`` or ``PATH.db#COLLECTION``: a milvus-lite file (collection ``sprig`` unless named);
- anything else: a native index folder (``Index``, the default).

Two implementations: ``sprig.index.reader.Index`` (the folder) and ``sprig.index.milvus.MilvusIndex``
(pymilvus is imported only when one is opened or created).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np

from sprig.core.errors import SprigError
from sprig.core.types import SparseVec
from sprig.index.docstore import StoredPassage
from sprig.index.milvus import MilvusIndex, MilvusLocation
from sprig.index.reader import Index

DEFAULT_COLLECTION = "sprig"


def parse_location(location: str | Path) -> Path | MilvusLocation:
    """A native index folder, or where a Milvus collection is (the rule in this module's docstring)."""
    text = str(location)
    if text.startswith(("http://", "https://")):
        url = urlparse(text)
        collection = url.path.strip("/")
        if not collection or "/" in collection:
            raise SprigError(f"{text}: a Milvus server location is http://HOST:PORT/COLLECTION")
        return MilvusLocation(f"{url.scheme}://{url.netloc}", collection)
    path, _, collection = text.partition("#")
    if path.endswith(".db"):
        return MilvusLocation(path, collection or DEFAULT_COLLECTION)
    return Path(location)


def is_milvus(location: str | Path) -> bool:
    return isinstance(parse_location(location), MilvusLocation)


class PassageStore(Protocol):
    """The passage side of an index (``DocStore`` for a folder): text and the stored document vectors by row."""

    def __len__(self) -> int: ...
    def get(self, rows: Sequence[int]) -> dict[int, StoredPassage]: ...
    def get_by_id(self, passage_id: str) -> StoredPassage | None: ...
    def row_of(self, passage_id: str) -> int | None: ...
    def vectors(self, encoder: str, rows: Sequence[int]) -> dict[int, SparseVec]: ...
    def sentence_vectors(self, passage_ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def chunk_vectors(self, size: int, passage_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...


class Backend(Protocol):
    """What a Searcher and the write path need from an index, wherever it is stored. Rows are int64 passage
    numbers, never reused; ``state_dir`` is a folder holding the fitted encoder state (BM25 statistics,
    inference-free IDF) at the paths reader.BM25_STATE / IDF_STATE."""

    location: str
    manifest: dict
    store: PassageStore
    lock: threading.RLock

    @property
    def sparse_names(self) -> list[str]: ...
    @property
    def retrievers(self) -> list[str]: ...
    @property
    def encoder_settings(self) -> dict[str, dict]: ...
    @property
    def has_sentence_vectors(self) -> bool: ...
    @property
    def state_dir(self) -> Path: ...
    def __len__(self) -> int: ...

    def search(self, name: str, queries: np.ndarray | Sequence[SparseVec], depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, retriever ``name``'s top-``depth`` (rows int64, scores float32), best first."""
    def get(self, passage_id: str) -> StoredPassage | None: ...
    def add(self, passages: Sequence, sparse: Mapping[str, Sequence[SparseVec]], dense: np.ndarray | None,
            sentence_vectors: Sequence[np.ndarray] | None = None) -> np.ndarray: ...
    def delete(self, passage_id: str) -> bool: ...
    def close(self) -> None: ...


def open_index(location: str | Path, writable: bool = False, verify: bool = False) -> Backend:
    """Open the index at ``location``: a folder as ``Index``, a Milvus location as ``MilvusIndex``."""
    where = parse_location(location)
    if isinstance(where, MilvusLocation):
        return MilvusIndex(where, writable=writable)
    return Index(where, writable=writable, verify=verify)
