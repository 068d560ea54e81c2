"""Shared fixtures: the real tiny models (loaded once per session) and the shared evaluation data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA = Path(os.environ.get("SPRIG_DATA", _DEFAULT_DATA))


def dataset(name: str) -> Path:
    """A folder of the shared evaluation data, or a skip naming what is missing."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set SPRIG_DATA)")
    return path


@pytest.fixture(scope="session")
def splade_encoder():
    from retriever.encoders.splade import SpladeEncoder

    return SpladeEncoder(device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def dense_encoder():
    from retriever.encoders.dense import DenseEncoder

    return DenseEncoder(device="cpu")


@pytest.fixture(scope="session")
def scifact_docs():
    from indexer.readers import read_corpus

    return list(read_corpus(dataset("scifact")))
