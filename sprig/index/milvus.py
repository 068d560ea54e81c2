"""An index in Milvus: the ``Backend`` (sprig.index.backend) over one collection, through pymilvus's MilvusClient.

The collection holds one row per passage: ``row`` (int64 primary key, the passage number), passage id, doc id,
title, text, metadata (JSON), one SPARSE_FLOAT_VECTOR field per sparse retriever (``sparse_<name>``: SPLADE,
inference-free, or sprig's own BM25 impacts from sprig.encoders.bm25, so the analyzer is the native index's) and
a FLOAT_VECTOR field ``dense``. Sparse fields are searched exactly by inner product (SPARSE_INVERTED_INDEX,
nothing dropped), the dense one by FLAT inner product, so results equal float32 brute force over the stored
vectors (the native sparse engine quantises impacts to uint8; Milvus keeps the float32 weights).

Hybrid search is sprig's own fusion (sprig.retriever.fusion) over the per-field results ``search`` returns, not
Milvus's hybrid_search with a WeightedRanker: that ranker normalises scores its own way (arctan), so the min-max
convex fusion the weights were tuned for, its RRF variant and the per-retriever explanations would all differ from
a folder's; one search per field costs a round trip each, which is small against query encoding.

A second collection, ``<collection>_sprig``, holds what a folder keeps beside its postings: the manifest
(encoder settings, the next row number) and the fitted encoder state files (BM25 statistics, inference-free
IDF), which are copied to a temporary folder on open so the encoders load exactly as from a folder.

BM25 impacts are computed with the corpus statistics (df, avgdl) fitted at build time and stored; documents
added later are weighted with those same statistics, which are not refitted (as for a native index), so the
statistics age as the collection grows until the next full `sprig index`.

Not kept in Milvus: sentence vectors and REFRAG chunk vectors (RECOMP's extractive compressor then encodes
sentences per request; refrag needs a folder's chunk vectors). pymilvus is imported only here, and only when a
collection is opened or created.
"""
from __future__ import annotations

import base64
import json
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprig.core.errors import DuplicateId, IndexCorrupt, SprigError
from sprig.core.types import SparseVec
from sprig.index.docstore import StoredPassage

_ROW = "row"
_TEXT = ("passage_id", "doc_id", "title", "text", "metadata")
_NO_TERMS = 2**32 - 2  # Milvus refuses an empty sparse vector: a passage with no terms gets this id, which no query has
_META_SUFFIX, _CHUNK = "_sprig", 60_000  # meta values are VARCHAR(65535); files go in base64 chunks
_STAGING = "_building"  # a collection is exported under this suffix and renamed into place once complete
_MAX_TEXT = 65_535
_SPARSE_SEARCH = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}
CONNECT_TIMEOUT_S = 10  # how long an unreachable server may take to say so
CONSISTENCY = "Strong"  # a search waits for every earlier write: POST /documents is visible to the next /search


def _field(name: str) -> str:
    return "sparse_" + name.replace("-", "_")


def _literal(text: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(text, ensure_ascii=False)


def _to_milvus(vec: SparseVec) -> dict[int, float]:
    return dict(zip(vec.term_ids.tolist(), vec.weights.tolist())) if len(vec) else {_NO_TERMS: 1.0}


def _from_milvus(found: Mapping[int, float]) -> SparseVec:
    ids = np.array(sorted(t for t in found if t != _NO_TERMS), dtype=np.int32)
    return SparseVec(ids, np.array([found[int(t)] for t in ids], dtype=np.float32))


def _client(where: MilvusLocation):
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        return MilvusClient(where.uri, timeout=CONNECT_TIMEOUT_S)
    except MilvusException as exc:
        raise SprigError(f"{where}: no Milvus answers at {where.uri} ({getattr(exc, 'message', exc)}); expected a running Milvus "
                         "server (http://HOST:PORT/COLLECTION) or a milvus-lite file (FILE.db#COLLECTION)") from None


@dataclass(frozen=True)
class MilvusLocation:
    uri: str  # what MilvusClient opens: a server URL or a milvus-lite file
    collection: str

    def __str__(self) -> str:
        return f"{self.uri}/{self.collection}" if self.uri.startswith(("http://", "https://")) else f"{self.uri}#{self.collection}"


class MilvusStore:
    """The passage side (``PassageStore``) of a Milvus collection: text and stored sparse vectors by row."""

    def __init__(self, client, collection: str):
        self.client, self.collection = client, collection

    def __len__(self) -> int:
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def _rows(self, rows: Sequence[int], fields: Sequence[str]) -> list[dict]:
        rows = [int(r) for r in rows]
        return self.client.get(self.collection, ids=rows, output_fields=[_ROW, *fields]) if rows else []

    def get(self, rows: Sequence[int]) -> dict[int, StoredPassage]:
        """Row number -> passage for the rows that exist."""
        return {int(r[_ROW]): StoredPassage(int(r[_ROW]), *(r[f] for f in _TEXT)) for r in self._rows(rows, _TEXT)}

    def row_of(self, passage_id: str) -> int | None:
        found = self.client.query(self.collection, filter=f"passage_id == {_literal(passage_id)}", output_fields=[_ROW])
        return int(found[0][_ROW]) if found else None

    def get_by_id(self, passage_id: str) -> StoredPassage | None:
        row = self.row_of(passage_id)
        return None if row is None else self.get([row]).get(row)

    def vectors(self, encoder: str, rows: Sequence[int]) -> dict[int, SparseVec]:
        return {int(r[_ROW]): _from_milvus(r[_field(encoder)]) for r in self._rows(rows, [_field(encoder)])}

    def sentence_vectors(self, passage_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {}

    def chunk_vectors(self, size: int, passage_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {}


class MilvusIndex:
    """An open Milvus collection (created by ``create``)."""

    def __init__(self, where: MilvusLocation, writable: bool = False):
        self.location, self.writable = str(where), writable
        self.collection, self.meta = where.collection, where.collection + _META_SUFFIX
        self.client = _client(where)
        if not (self.client.has_collection(self.collection) and self.client.has_collection(self.meta)):
            raise IndexCorrupt(f"{self.location}: no sprig collection '{self.collection}' there (build one with `sprig index CORPUS --out {self.location}`)")
        self.client.load_collection(self.collection)
        self.client.load_collection(self.meta)
        self.manifest: dict = json.loads(self._meta_values(["manifest"])[0])
        self._state = Path(tempfile.mkdtemp(prefix="sprig-milvus-state-"))
        for rel, chunks in self.manifest.get("state_files", {}).items():
            (self._state / rel).parent.mkdir(parents=True, exist_ok=True)
            (self._state / rel).write_bytes(base64.b64decode("".join(self._meta_values([_chunk_key(rel, i) for i in range(chunks)]))))
        self.store = MilvusStore(self.client, self.collection)
        self.lock = threading.RLock()

    @classmethod
    def create(cls, where: MilvusLocation, manifest: dict, state_dir: Path, state_files: Sequence[str], dense_dim: int | None) -> MilvusIndex:
        """A fresh collection (replacing one of that name) for the encoders in ``manifest``, with the state files
        ``state_files`` (paths relative to ``state_dir``) stored beside it; returns it opened writable."""
        from pymilvus import DataType, MilvusClient

        client = _client(where)
        sparse = list(manifest.get("sparse", {}))
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ROW, DataType.INT64, is_primary=True)
        for name in ("passage_id", "doc_id"):
            schema.add_field(name, DataType.VARCHAR, max_length=1024)
        for name in ("title", "text"):
            schema.add_field(name, DataType.VARCHAR, max_length=_MAX_TEXT)
        schema.add_field("metadata", DataType.JSON)
        params = client.prepare_index_params()
        params.add_index("passage_id", index_type="INVERTED")
        for name in sparse:
            schema.add_field(_field(name), DataType.SPARSE_FLOAT_VECTOR)
            params.add_index(_field(name), index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        if dense_dim:
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dense_dim)
            params.add_index("dense", index_type="FLAT", metric_type="IP")
        meta = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=1024)
        meta.add_field("value", DataType.VARCHAR, max_length=65_535)
        meta.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        meta_params = client.prepare_index_params()
        meta_params.add_index("unused", index_type="FLAT", metric_type="IP")
        collection = where.collection
        for name, s, p in ((collection, schema, params), (collection + _META_SUFFIX, meta, meta_params)):
            if client.has_collection(name):
                client.drop_collection(name)
            client.create_collection(name, schema=s, index_params=p, consistency_level=CONSISTENCY)
        rows, chunks = [], {}
        for rel in state_files:
            blob = base64.b64encode((state_dir / rel).read_bytes()).decode()
            parts = [blob[i:i + _CHUNK] for i in range(0, len(blob), _CHUNK)]
            rows += [{"key": _chunk_key(rel, i), "value": part, "unused": [0.0, 0.0]} for i, part in enumerate(parts)]
            chunks[rel] = len(parts)
        client.insert(collection + _META_SUFFIX, rows + [_manifest_row({**manifest, "state_files": chunks})])
        client.close()
        return cls(where, writable=True)

    # --- Backend -----------------------------------------------------------------------------------

    @property
    def sparse_names(self) -> list[str]:
        return list(self.manifest.get("sparse", {}))

    @property
    def retrievers(self) -> list[str]:
        return self.sparse_names + (["dense"] if "dense" in self.manifest else [])

    @property
    def encoder_settings(self) -> dict[str, dict]:
        return self.manifest.get("encoders", {})

    @property
    def has_sentence_vectors(self) -> bool:
        return False

    @property
    def state_dir(self) -> Path:
        return self._state

    def __len__(self) -> int:
        return len(self.store)

    @staticmethod
    def staging(where: MilvusLocation) -> MilvusLocation:
        """Where an export into ``where`` writes until ``publish``: a half-done export never replaces a good collection."""
        return MilvusLocation(where.uri, where.collection + _STAGING)

    def publish(self, where: MilvusLocation) -> None:
        """Rename this complete staging collection (and its meta) to ``where``'s name, dropping what was there.
        Milvus has no atomic swap: between the drop and the rename (milliseconds) the name does not resolve."""
        for suffix in ("", _META_SUFFIX):
            if self.client.has_collection(where.collection + suffix):
                self.client.drop_collection(where.collection + suffix)
            self.client.rename_collection(self.collection + suffix, where.collection + suffix)

    def close(self) -> None:
        self.client.close()
        shutil.rmtree(self._state, ignore_errors=True)

    def search(self, name: str, queries: np.ndarray | Sequence[SparseVec], depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, the top-``depth`` rows by inner product on field ``name`` (an empty sparse query finds nothing)."""
        if name == "dense":
            data, params, field = np.asarray(queries, np.float32).tolist(), {"metric_type": "IP"}, "dense"
        else:
            data, params, field = [_to_milvus(v) for v in queries if len(v)], _SPARSE_SEARCH, _field(name)
        found = iter(self.client.search(self.collection, data=data, anns_field=field, limit=depth, search_params=params, output_fields=[_ROW])
                     if data else [])
        out = []
        for q in queries:
            hits = next(found) if name == "dense" or len(q) else []
            out.append((np.array([h[_ROW] for h in hits], np.int64), np.array([h["distance"] for h in hits], np.float32)))
        return out

    def get(self, passage_id: str) -> StoredPassage | None:
        return self.store.get_by_id(passage_id)

    def add(self, passages: Sequence, sparse: Mapping[str, Sequence[SparseVec]], dense: np.ndarray | None,
            sentence_vectors: Sequence[np.ndarray] | None = None, rows: Sequence[int] | None = None) -> np.ndarray:
        """Insert encoded passages (sentence vectors are not kept: see the module docstring); visible to the next
        search. ``rows``: keep these numbers (an export), else fresh ones after every number issued so far."""
        self._require_writable()
        passages = list(passages)
        with self.lock:
            taken = self.client.query(self.collection, filter=f"passage_id in {json.dumps([p.passage_id for p in passages], ensure_ascii=False)}",
                                      output_fields=["passage_id"])
            if taken:
                raise DuplicateId(f"passage id '{taken[0]['passage_id']}' already exists in {self.location}")
            start = self.manifest["next_row"]
            rows = np.arange(start, start + len(passages), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
            data = []
            for i, p in enumerate(passages):
                if max(len(p.title.encode()), len(p.text.encode())) > _MAX_TEXT:
                    raise SprigError(f"passage '{p.passage_id}' is over Milvus's VARCHAR limit of {_MAX_TEXT} bytes: chunk the corpus (--chunk-tokens)")
                entry = {_ROW: int(rows[i]), "passage_id": p.passage_id, "doc_id": p.doc_id, "title": p.title, "text": p.text, "metadata": p.metadata or {}}
                entry |= {_field(name): _to_milvus(vecs[i]) for name, vecs in sparse.items()}
                if dense is not None:
                    entry["dense"] = dense[i].tolist()
                data.append(entry)
            if data:
                self.client.insert(self.collection, data)
            self.manifest["next_row"] = max(self.manifest["next_row"], int(rows.max(initial=0)) + 1)
            self.client.upsert(self.meta, [_manifest_row(self.manifest)])
        return rows

    def delete(self, passage_id: str) -> bool:
        self._require_writable()
        with self.lock:
            row = self.store.row_of(passage_id)
            if row is None:
                return False
            self.client.delete(self.collection, ids=[row])
        return True

    # --- helpers -----------------------------------------------------------------------------------

    def _meta_values(self, keys: list[str]) -> list[str]:
        """The values stored under ``keys``, in that order."""
        found = {r["key"]: r["value"] for r in self.client.get(self.meta, ids=keys, output_fields=["key", "value"])}
        missing = [k for k in keys if k not in found]
        if missing:
            raise IndexCorrupt(f"{self.location}: '{missing[0]}' missing from collection '{self.meta}'")
        return [found[k] for k in keys]

    def _require_writable(self) -> None:
        if not self.writable:
            raise SprigError(f"{self.location} is open read-only")


def _chunk_key(rel: str, i: int) -> str:
    return f"file/{rel}/{i:06d}"


def _manifest_row(manifest: dict) -> dict:
    return {"key": "manifest", "value": json.dumps(manifest), "unused": [0.0, 0.0]}
