"""Sentence vectors stored by `sprig index` for recomp-extractive: equal to the ones the compressor encodes
per request, the same compression either way, and indexes without them still work."""
from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from sprig.core.config import SprigConfig
from sprig.core.types import Hit
from sprig.encoders.sentences import sentence_vectors, split_sentences
from sprig.index.docstore import DocStore
from sprig.index.manifest import read_manifest
from sprig.indexer.build import build_index
from sprig.indexer.update import add_passages
from sprig.rag.compress.recomp_extractive import RecompExtractive
from tests.conftest import dataset

QUESTIONS = [
    "Which NFL team represented the AFC at Super Bowl 50?",
    "Where did Super Bowl 50 take place?",
    "What color was used to emphasize the 50th anniversary?",
]
N_PASSAGES = 6


def words(text: str) -> int:
    return len(text.split())


def _config(sentences: bool) -> SprigConfig:
    return SprigConfig(device="cpu", index={"sparse": "bm25", "shard_size": 4, "sentence_vectors": sentences})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The first squad-a paragraphs (several sentences each), as a small jsonl corpus."""
    with (dataset("squad-a") / "corpus.jsonl").open() as fh:
        docs = [json.loads(next(fh)) for _ in range(N_PASSAGES)]
    path = tmp_path_factory.mktemp("sv") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path, docs


@pytest.fixture(scope="module")
def indexes(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("sv-idx")
    return {s: build_index(corpus[0], root / f"idx-{s}", _config(s), progress=False).index_dir for s in (True, False)}


def _hits(docs) -> list[Hit]:
    return [Hit(d["_id"], 1.0, i + 1, d["_id"], d["title"], d["text"]) for i, d in enumerate(docs)]


def test_stored_vectors_equal_on_the_fly(indexes, corpus, dense_encoder):
    _, docs = corpus
    assert "sentence_vectors" in read_manifest(indexes[True]) and "sentence_vectors" not in read_manifest(indexes[False])
    with DocStore(indexes[True] / "docs.sqlite", readonly=True) as store:
        stored = store.sentence_vectors([d["_id"] for d in docs])
    fresh = sentence_vectors(dense_encoder, [d["text"] for d in docs])
    assert set(stored) == {d["_id"] for d in docs}
    for d, want in zip(docs, fresh):
        got = stored[d["_id"]]
        assert got.dtype == np.float16 and got.shape == (len(split_sentences(d["text"])), dense_encoder.dim)
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-3)  # batching only; float16 steps are ~5e-4
    with DocStore(indexes[False] / "docs.sqlite", readonly=True) as store:
        assert not store.has_sentence_vectors() and store.sentence_vectors([d["_id"] for d in docs]) == {}


@pytest.mark.parametrize("budget", [20, 60, 150])
def test_compression_is_the_same_from_stored_or_fresh_vectors(indexes, corpus, dense_encoder, budget):
    _, docs = corpus
    hits = _hits(docs)
    with DocStore(indexes[True] / "docs.sqlite", readonly=True) as store:
        from_index = RecompExtractive(words, dense_encoder, store.sentence_vectors)
        fresh = RecompExtractive(words, dense_encoder)
        for question in QUESTIONS:
            a, b = from_index.compress(question, hits, budget), fresh.compress(question, hits, budget)
            assert [(x.text, x.passage_ids) for x in a.blocks] == [(x.text, x.passage_ids) for x in b.blocks]
            assert a.output_tokens == b.output_tokens <= budget and a.blocks
            assert a.info["passages_with_stored_vectors"] == len(hits) and b.info["passages_with_stored_vectors"] == 0


def test_passages_the_index_lacks_are_encoded(indexes, corpus, dense_encoder):
    """An oracle passage outside the index, and a stored entry whose sentence count disagrees, fall back."""
    _, docs = corpus
    hits = _hits(docs[:2]) + [Hit("gold", 1.0, 3, text="Denver won. The game was in Santa Clara.")]
    with DocStore(indexes[True] / "docs.sqlite", readonly=True) as store:
        stale = {pid: v[:-1] for pid, v in store.sentence_vectors([docs[0]["_id"]]).items()}
        lookups = {"index": store.sentence_vectors, "stale": lambda ids: stale}
        outs = {name: RecompExtractive(words, dense_encoder, look).compress(QUESTIONS[0], hits, 40) for name, look in lookups.items()}
    ref = RecompExtractive(words, dense_encoder).compress(QUESTIONS[0], hits, 40)
    assert outs["index"].info["passages_with_stored_vectors"] == 2 and outs["stale"].info["passages_with_stored_vectors"] == 0
    for out in outs.values():
        assert [x.text for x in out.blocks] == [x.text for x in ref.blocks]


def test_index_from_before_sentence_vectors_still_answers(indexes, corpus, dense_encoder, tmp_path):
    _, docs = corpus
    old = tmp_path / "old"
    shutil.copytree(indexes[True], old)
    with sqlite3.connect(old / "docs.sqlite") as conn:
        conn.execute("DROP TABLE sentence_vectors")
    with DocStore(old / "docs.sqlite", readonly=True) as store:
        assert store.sentence_vectors([docs[0]["_id"]]) == {}
        out = RecompExtractive(words, dense_encoder, store.sentence_vectors).compress(QUESTIONS[1], _hits(docs), 60)
    assert out.blocks and out.info["passages_with_stored_vectors"] == 0


def test_added_passages_get_vectors_and_deleted_ones_lose_them(indexes, tmp_path):
    from sprig.corpus.chunking import Passage
    from sprig.retriever.searcher import Searcher

    idx = tmp_path / "idx"
    shutil.copytree(indexes[True], idx)
    searcher = Searcher(idx, _config(True), writable=True)
    add_passages(searcher.index, searcher.encoders, [Passage("new", "new", "New", "First sentence here. Second one follows.", {})])
    assert searcher.store.sentence_vectors(["new"])["new"].shape[0] == 2
    searcher.index.delete("new")
    assert searcher.store.sentence_vectors(["new"]) == {}
    searcher.close()
