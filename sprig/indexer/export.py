"""A native index folder -> a Milvus collection, without re-encoding: the stored sparse vectors (float32, as
encoded, not the engine's uint8 impacts), the dense vectors out of FAISS, the passages with their row numbers,
the encoder settings and the fitted encoder state. `sprig index --out MILVUS` builds a folder and exports it;
`sprig export DIR MILVUS` moves an existing one."""
from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from sprig.core.errors import SprigError
from sprig.index.backend import parse_location
from sprig.index.milvus import MilvusIndex, MilvusLocation
from sprig.index.reader import BM25_STATE, IDF_STATE, Index

BATCH = 512
_DROPPED = ("checksums", "features", "sentence_vectors", "chunk_vectors", "idf", "passages")  # folder-only parts


def export_index(source: str | Path, target: str, progress: bool = False) -> int:
    """Copy the native index at ``source`` into the Milvus location ``target`` (replacing that collection once the
    copy is complete: it is written under a staging name first); returns the number of passages."""
    where = parse_location(target)
    if not isinstance(where, MilvusLocation):
        raise SprigError(f"{target}: not a Milvus location (http://HOST:PORT/COLLECTION, or a milvus-lite FILE.db[#COLLECTION])")
    native = Index(source)
    state = [rel.as_posix() for rel in (BM25_STATE / "bm25.json", BM25_STATE / "bm25_df.npy", IDF_STATE) if (native.dir / rel).is_file()]
    manifest = {k: v for k, v in native.manifest.items() if k not in _DROPPED}
    manifest |= {"sparse": {name: {} for name in native.sparse}, "next_row": native.store.max_row() + 1, "exported_from": str(native.dir)}
    if native.dense is not None:
        manifest["dense"] = {"milvus": "FLAT, inner product", "dim": native.dense.dim}
    milvus = MilvusIndex.create(MilvusIndex.staging(where), manifest, native.dir, state, native.dense.dim if native.dense is not None else None)
    passages = list(native.store.iter_rows())
    try:
        for start in tqdm(range(0, len(passages), BATCH), desc="export", unit="batch", disable=not progress):
            batch = passages[start:start + BATCH]
            rows = [p.row for p in batch]
            sparse = {name: [vecs[r] for r in rows] for name in native.sparse for vecs in [native.store.vectors(name, rows)]}
            dense = native.dense.vectors(rows) if native.dense is not None else None
            milvus.add(batch, sparse, dense, rows=rows)
        milvus.publish(where)
        return len(passages)
    finally:
        milvus.close()
        native.close()
