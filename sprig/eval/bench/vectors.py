"""The vectors a sparse benchmark runs on: documents and queries as two CSR matrices, saved as one .npz.

Every system in `sprig.eval.bench.sparse` reads the same file, so all of them index and search exactly the
same float32 vectors. This module needs only numpy and scipy: the peer adapters import it from the
separate peers virtualenv.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sprig.core.files import atomic_path
from sprig.eval.datasets import SHARED

if TYPE_CHECKING:
    import scipy.sparse as sp

# The real corpora: BEIR folders under shared/data, all test queries.
REAL_DATASETS = ("scifact", "nfcorpus", "squad-a")


@dataclass
class VectorSet:
    """Documents [n_docs, dim] and queries [n_queries, dim], float32 CSR with sorted column ids."""

    docs: sp.csr_matrix
    queries: sp.csr_matrix
    # sprig's integer view of the same vectors, aligned with docs.data / queries.data (0 = dropped):
    # uint8 document impacts and integer query levels (indexer.sparse_format; see `with_integers`)
    doc_impacts: np.ndarray | None = None
    query_levels: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.docs.shape[1])

    def save(self, path: Path) -> None:
        """Write aside, then rename, so a killed run never leaves a truncated cache."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"dim": np.int64(self.dim)}
        for name, m in (("doc", self.docs), ("query", self.queries)):
            arrays |= {f"{name}_indptr": m.indptr.astype(np.int64), f"{name}_indices": m.indices.astype(np.int32), f"{name}_data": m.data.astype(np.float32)}
        if self.doc_impacts is not None:
            arrays |= {"doc_impacts": self.doc_impacts, "query_levels": self.query_levels}
        with atomic_path(path, ".npz") as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path: Path) -> "VectorSet":
        import scipy.sparse as sp

        z = np.load(path)
        dim = int(z["dim"])

        def csr(name: str) -> sp.csr_matrix:
            indptr = z[f"{name}_indptr"]
            return sp.csr_matrix((z[f"{name}_data"], z[f"{name}_indices"], indptr), shape=(indptr.size - 1, dim))

        ints = (z["doc_impacts"], z["query_levels"]) if "doc_impacts" in z.files else (None, None)
        return cls(csr("doc"), csr("query"), *ints)

    def integers(self) -> "VectorSet":
        """The same vectors with sprig's integer weights as data: what Lucene indexes, so that its exact
        top-10 and sprig's rank the same integer scores."""
        if self.doc_impacts is None:
            raise ValueError("these vectors carry no integer view (VectorSet.with_integers)")
        import scipy.sparse as sp

        def view(m: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix((data.astype(np.int64), m.indices, m.indptr), shape=m.shape)

        return VectorSet(view(self.docs, self.doc_impacts), view(self.queries, self.query_levels))

    def sample_queries(self, n: int, seed: int) -> "VectorSet":
        """A seeded subset of n queries (all of them when n <= 0 or n >= available), in original order."""
        if n <= 0 or n >= self.queries.shape[0]:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(self.queries.shape[0], n, replace=False))
        return VectorSet(self.docs, self.queries[keep])


def with_integers(vs: VectorSet) -> VectorSet:
    """Attach sprig's quantisation (sprig/index/sparse_format.py): document impacts at the index's scale
    (largest weight = 255), query levels as sprig's search computes them. Needs sprig's interpreter."""
    from sprig.core.types import SparseVec
    from sprig.index.sparse_format import choose_scale, quantize_docs, quantize_query

    impacts = quantize_docs(vs.docs.data, choose_scale(vs.docs.data))
    q = vs.queries
    levels = np.zeros(q.nnz, np.int64)
    for a, b in zip(q.indptr[:-1], q.indptr[1:]):
        ids = q.indices[a:b]
        terms, vals, _ = quantize_query(SparseVec(ids.astype(np.int32), q.data[a:b].astype(np.float32)), vs.dim)
        levels[a + np.searchsorted(ids, terms)] = vals
    return VectorSet(vs.docs, vs.queries, impacts, levels)


def test_queries(folder: Path) -> list[tuple[str, str]]:
    """(query id, text) of the queries that have test qrels, in queries.jsonl order."""
    judged = {line.split("\t", 1)[0] for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines() if line.strip()]
    return [(r["_id"], r["text"]) for r in rows if r["_id"] in judged]


def _encode_queries(folder: Path):
    from sprig.core.types import to_csr
    from sprig.encoders.splade import SpladeEncoder

    encoder = SpladeEncoder(device="cpu")
    return to_csr(encoder.encode_queries([t for _, t in test_queries(folder)]), encoder.vocab_size).astype(np.float32)


def encode_dataset(folder: Path, doc_max_length: int = 512) -> VectorSet:
    """SPLADE-tiny vectors of one BEIR folder: documents as title + " " + text, test queries."""
    from sprig.core.config import SpladeConfig
    from sprig.core.types import to_csr
    from sprig.corpus.readers import read_corpus
    from sprig.encoders.splade import SpladeEncoder

    encoder = SpladeEncoder(SpladeConfig(doc_max_length=doc_max_length), device="cpu")
    texts = [f"{d.title} {d.text}".strip() for d in read_corpus(folder)]
    docs = to_csr(encoder.encode_documents(texts, progress=True), encoder.vocab_size)
    return VectorSet(docs.astype(np.float32), _encode_queries(folder))


def docstore_vectors(store: Path, folder: Path) -> VectorSet:
    """Document vectors from a built sprig index's passage store (`sprig index` without chunking
    encodes exactly these, title + " " + text at 512 tokens), so they need no second encoding."""
    from sprig.core.errors import SprigError
    from sprig.core.types import to_csr
    from sprig.corpus.readers import read_corpus
    from sprig.index.docstore import DocStore

    _, vectors = DocStore(store, readonly=True).all_vectors("splade")
    n_docs = sum(1 for _ in read_corpus(folder))
    if len(vectors) != n_docs:
        raise SprigError(f"{store}: {len(vectors)} SPLADE vectors for {n_docs} documents in {folder} (unfinished or chunked index)")
    queries = _encode_queries(folder)
    return VectorSet(to_csr(vectors, queries.shape[1]).astype(np.float32), queries)


def real_vectors(cache: Path, datasets: tuple[str, ...] = REAL_DATASETS, index_root: Path | None = None) -> VectorSet:
    """The real corpora stacked into one collection (documents, then queries, in dataset order).

    Each dataset is cached as ``cache/real-<name>.npz``: taken from ``index_root/<name>/docs.sqlite``
    when such a sprig index exists, else encoded here (about 10 CPU-minutes for all three).
    """
    import scipy.sparse as sp

    parts = []
    for name in datasets:
        path = cache / f"real-{name}.npz"
        if not path.is_file():
            store = index_root / name / "docs.sqlite" if index_root else None
            vs = docstore_vectors(store, SHARED / name) if store and store.is_file() else encode_dataset(SHARED / name)
            vs.save(path)
        parts.append(VectorSet.load(path))
    return VectorSet(sp.vstack([p.docs for p in parts], format="csr"), sp.vstack([p.queries for p in parts], format="csr"))
