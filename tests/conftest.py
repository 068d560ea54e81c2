"""Shared fixtures: the real tiny models (loaded once per session) and the shared evaluation data."""
from __future__ import annotations

from pathlib import Path

import pytest

from sprig.eval.datasets import SHARED as DATA


def dataset(name: str) -> Path:
    """A folder of the shared evaluation data, or a skip naming what is missing."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set SPRIG_DATA)")
    return path


@pytest.fixture(scope="session")
def splade_encoder():
    from sprig.core.config import SpladeConfig
    from sprig.encoders.splade import SpladeEncoder

    return SpladeEncoder(SpladeConfig(batch_size=16, cpu_head="float32"), device="cpu")  # the exact path: tests compare to references


@pytest.fixture(scope="session")
def dense_encoder():
    from sprig.encoders.dense import DenseEncoder

    return DenseEncoder(device="cpu")


@pytest.fixture(scope="session")
def scifact_docs():
    from sprig.corpus.readers import read_corpus

    return list(read_corpus(dataset("scifact")))


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory):
    """A 12-passage index with every retriever (SPLADE, BM25, HNSW dense) — read-only; copy it to write."""
    from sprig.indexer.build import build_index
    from tests.sprig_fixtures import tiny_config, write_corpus

    root = tmp_path_factory.mktemp("tiny_index")
    report = build_index(write_corpus(root / "corpus.jsonl"), root / "idx", tiny_config(faiss="hnsw"), progress=False)
    return report
