"""Micro-batching in the server (sprig/retriever/combining.py) with the real SPLADE-tiny and MiniLM encoders: a
query's vector and ranking do not depend on the batch it was padded into, batching off leaves the plain path, and
concurrent API requests (/search, /answer, /v1/chat/completions) get what sequential ones get, searched in batches.
The combiner's own rules (batch size, options, errors, a lone call) are in tests/test_search_combining.py."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from sprig.core.config import ServerConfig, SprigConfig
from sprig.retriever.searcher import Searcher
from tests.sprig_fixtures import TOPICS, tiny_config

# Lengths from one word to ~60 tokens, so a batch pads most of them.
QUERIES = ["zinc", "statins and LDL", *(text for _, text in TOPICS[:8]),
           ("Does vitamin D supplementation in older adults with low bone mineral density reduce the risk of hip "
            "fractures, falls and overall mortality over five years of follow-up in randomised controlled trials?")]
MODES = ["splade", "dense", "hybrid"]


def as_matrix(vectors, vocab_size: int | None) -> np.ndarray:
    """Encoder output (sparse vectors or a dense array) as one dense float matrix."""
    if vocab_size is None:
        return np.asarray(vectors)
    out = np.zeros((len(vectors), vocab_size), np.float32)
    for row, vec in zip(out, vectors):
        row[vec.term_ids] = vec.weights
    return out


@pytest.mark.parametrize("fixture", ["splade_encoder", "dense_encoder"])
def test_padding_in_a_batch_leaves_each_query_vector(request, fixture, monkeypatch):
    encoder = request.getfixturevalue(fixture)
    monkeypatch.setattr(encoder, "query_batch_size", len(QUERIES))  # one forward pass: every query padded to the longest
    vocab = getattr(encoder, "vocab_size", None)
    alone = np.concatenate([as_matrix(encoder.encode_queries([q]), vocab) for q in QUERIES])
    together = as_matrix(encoder.encode_queries(QUERIES), vocab)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def served(server: ServerConfig) -> SprigConfig:
    return tiny_config().model_copy(update={"server": server})


@pytest.mark.parametrize("mode", MODES)
def test_batched_search_ranks_as_unbatched(tiny_index, mode):
    searcher = Searcher(tiny_index.index_dir, served(ServerConfig(query_batch=len(QUERIES))))
    sequential = [searcher.search_batch([q], 10, mode)[0] for q in QUERIES]
    with ThreadPoolExecutor(len(QUERIES)) as threads:
        batched = list(threads.map(lambda q: searcher.search(q, 10, mode), QUERIES))
    assert searcher.combiner.queries == len(QUERIES) and searcher.combiner.batches < len(QUERIES)  # some ran together
    for one, many in zip(sequential, batched):
        assert [h.passage_id for h in many] == [h.passage_id for h in one]
        np.testing.assert_allclose([h.score for h in many], [h.score for h in one], rtol=1e-5, atol=1e-6)


def test_batching_off_searches_each_call_alone(tiny_index):
    assert Searcher(tiny_index.index_dir, served(ServerConfig(query_batch=1))).combiner is None


def test_concurrent_api_requests_get_the_sequential_answers(tiny_index):
    """Through the app: /search, /answer and chat retrieval all search through the searcher's batches."""
    from sprig.api.app import create_app

    config = tiny_config().model_copy(update={"server": ServerConfig(query_batch=8), "compress": tiny_config().compress.model_copy(update={"k": 2})})
    searcher = Searcher(tiny_index.index_dir, config)
    sequential = {mode: [[h.passage_id for h in searcher.search(q, 5, mode)] for q in QUERIES] for mode in MODES}
    before = searcher.combiner.queries, searcher.combiner.batches
    app = create_app(config=config, searcher=searcher)

    async def run():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sprig", timeout=300) as client:
                searches = [client.post("/search", json={"query": q, "k": 5, "mode": mode}) for mode in MODES for q in QUERIES]
                answer = client.post("/answer", json={"question": QUERIES[3], "retrieval_mode": "splade", "max_new_tokens": 2})
                chat = client.post("/v1/chat/completions", json={"model": "sprig", "max_tokens": 2, "retrieval_mode": "dense",
                                                                  "messages": [{"role": "user", "content": QUERIES[4]}]})
                *found, answered, chatted = await asyncio.gather(*searches, answer, chat)
            return found, answered, chatted

    found, answered, chatted = asyncio.run(run())
    assert all(r.status_code == 200 for r in found), [r.text for r in found if r.status_code != 200][:1]
    got = [[h["id"] for h in r.json()["data"]] for r in found]
    assert got == [ids for mode in MODES for ids in sequential[mode]]
    assert answered.status_code == 200 and [p["passage_id"] for p in answered.json()["passages"]] == sequential["splade"][3][:2]
    assert chatted.status_code == 200 and [p["passage_id"] for p in chatted.json()["sprig"]["passages"]] == sequential["dense"][4][:2]
    searched, batches = searcher.combiner.queries - before[0], searcher.combiner.batches - before[1]
    assert searched == len(MODES) * len(QUERIES) + 2 and batches < searched  # the answer's and the chat's retrieval too
