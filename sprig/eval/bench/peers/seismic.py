"""pyseismic-lsr 0.5.4 (Seismic: Bruch, Nardini, Rulli, Venturini, SIGIR 2024).

Documents enter by integer component id (add_documents_by_id), so query components are the ids as
strings. Build knobs are Seismic's (n_postings, centroid_fraction, summary_energy); search knobs are
query_cut and heap_factor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import seismic


def build(docs: sp.csr_matrix, workdir: Path, n_postings: int = 3500, centroid_fraction: float = 0.1,
          summary_energy: float = 0.4, threads: int = 1):
    data = seismic.SeismicDataset()
    data.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                             docs.data.astype(np.float32), docs.indptr.astype(np.int64))
    index = seismic.SeismicIndex.build_from_dataset(data, n_postings=n_postings, centroid_fraction=centroid_fraction,
                                                    summary_energy=summary_energy, num_threads=threads)
    (workdir / "index").mkdir(parents=True, exist_ok=True)
    index.save(str(workdir / "index" / "seismic"))
    return index


def prepare(queries: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    kind = seismic.get_seismic_string()
    return [(queries.indices[a:b].astype(str).astype(kind), queries.data[a:b].astype(np.float32))
            for a, b in zip(queries.indptr[:-1], queries.indptr[1:])]


def search(index, q: tuple[np.ndarray, np.ndarray], k: int, query_cut: int = 10, heap_factor: float = 0.7) -> np.ndarray:
    hits = index.search("q", q[0], q[1], k, query_cut, heap_factor)
    return np.array([int(doc) for _, _, doc in hits], np.int64)
