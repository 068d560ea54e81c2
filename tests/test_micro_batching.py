"""Micro-batched query encoding (sprig/api/batching.py) with the real SPLADE-tiny and MiniLM encoders: a query's
vector and ranking do not depend on the batch it was padded into, a failing bucket or a cancelled caller touches
no one else, and concurrent API requests (/search, /answer, /v1/chat/completions) get what sequential ones get."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from sprig.api.batching import QueryBatcher, query_batching
from sprig.core.config import ServerConfig
from sprig.core.types import SparseVec
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
def test_padding_in_a_batch_leaves_each_query_vector(request, fixture):
    encoder = request.getfixturevalue(fixture)
    assert len(QUERIES) <= encoder.batch_size  # one forward pass: every query padded to the longest
    vocab = getattr(encoder, "vocab_size", None)
    alone = np.concatenate([as_matrix(encoder.encode_queries([q]), vocab) for q in QUERIES])
    together = as_matrix(encoder.encode_queries(QUERIES), vocab)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def concurrently(searcher: Searcher, server: ServerConfig, mode: str) -> tuple[list, dict[str, tuple[int, int]]]:
    """Every query searched at once, each from its own thread, while the encoders are batched; plus
    (queries, batches) per batcher that encoded any."""
    async def run():
        async with query_batching(searcher.encoders, server) as batchers:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(len(QUERIES)) as threads:
                hits = await asyncio.gather(*(loop.run_in_executor(threads, searcher.search, q, 10, mode) for q in QUERIES))
            return hits, {name: (b.queries, b.batches) for name, b in batchers.items() if b.queries}

    return asyncio.run(run())


@pytest.mark.parametrize("mode", MODES)
def test_batched_search_ranks_as_unbatched(tiny_index, mode):
    searcher = Searcher(tiny_index.index_dir, tiny_config())
    sequential = [searcher.search(q, 10, mode) for q in QUERIES]
    batched, counts = concurrently(searcher, ServerConfig(query_batch=len(QUERIES), query_batch_wait_ms=50, query_bucket=4), mode)
    assert set(counts) == ({"splade", "dense"} if mode == "hybrid" else {mode})
    assert all(queries == len(QUERIES) and batches < queries for queries, batches in counts.values())  # batched, all encoded
    for one, many in zip(sequential, batched):
        assert [h.passage_id for h in many] == [h.passage_id for h in one]
        np.testing.assert_allclose([h.score for h in many], [h.score for h in one], rtol=1e-5, atol=1e-6)
    assert not isinstance(searcher.encoders["splade"], QueryBatcher)  # the plain encoders are back


def test_batching_off_leaves_the_encoders_alone(tiny_index):
    searcher = Searcher(tiny_index.index_dir, tiny_config())
    plain = dict(searcher.encoders.sparse), searcher.encoders.dense

    async def run():
        async with query_batching(searcher.encoders, ServerConfig(query_batch=1)) as batchers:
            return batchers, dict(searcher.encoders.sparse), searcher.encoders.dense

    batchers, *during = asyncio.run(run())
    assert batchers == {} and tuple(during) == plain


class FailsOn:
    """A real encoder that raises for one query, as a model can for one input."""

    def __init__(self, encoder, poison: str):
        self.encoder, self.poison = encoder, poison

    def encode_queries(self, texts):
        if self.poison in texts:
            raise ValueError(f"cannot encode {self.poison!r}")
        return self.encoder.encode_queries(texts)


def test_a_failing_bucket_fails_only_its_callers(splade_encoder):
    async def run():
        batcher = QueryBatcher("splade", FailsOn(splade_encoder, "poison"), asyncio.get_running_loop(), 16, 200, 1)
        try:
            results = await asyncio.gather(*(batcher.encode([q]) for q in ["zinc", "poison", "malaria"]), return_exceptions=True)
            return results, await batcher.encode(["after the failure"])
        finally:
            await batcher.close()

    (zinc, poisoned, malaria), later = asyncio.run(run())
    assert isinstance(poisoned, ValueError) and "poison" in str(poisoned)
    for got, query in [(zinc, "zinc"), (malaria, "malaria"), (later, "after the failure")]:
        [vec] = got
        assert isinstance(vec, SparseVec)
        np.testing.assert_allclose(as_matrix([vec], splade_encoder.vocab_size), as_matrix(splade_encoder.encode_queries([query]), splade_encoder.vocab_size), atol=1e-5)


def test_a_lone_request_never_waits(dense_encoder):
    async def run():
        batcher = QueryBatcher("dense", dense_encoder, asyncio.get_running_loop(), 16, 600_000, 8)
        try:
            return await asyncio.wait_for(batcher.encode(["zinc"]), 60)  # ten minutes of query_batch_wait_ms would time out
        finally:
            await batcher.close()

    np.testing.assert_allclose(asyncio.run(run()), dense_encoder.encode_queries(["zinc"]), rtol=1e-5, atol=1e-6)


def test_a_cancelled_caller_leaves_the_others_served(dense_encoder):
    async def run():
        batcher = QueryBatcher("dense", dense_encoder, asyncio.get_running_loop(), 16, 300, 8)
        try:
            await asyncio.gather(*(batcher.encode([q]) for q in QUERIES[4:6]))  # a batch of two: now batches wait for more
            tasks = [asyncio.create_task(batcher.encode([q])) for q in QUERIES[:3]]
            await asyncio.sleep(0.01)  # queued, the batch still waiting for more
            tasks[1].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            return done, batcher.queries - 2, await batcher.encode([QUERIES[3]])
        finally:
            await batcher.close()

    (first, cancelled, third), encoded, later = asyncio.run(run())
    assert isinstance(cancelled, asyncio.CancelledError) and encoded == 2  # the cancelled query was never encoded
    for got, query in [(first, QUERIES[0]), (third, QUERIES[2]), (later, QUERIES[3])]:
        np.testing.assert_allclose(got, dense_encoder.encode_queries([query]), rtol=1e-5, atol=1e-6)


def test_the_blocking_call_refuses_the_loop_thread(dense_encoder):
    async def run():
        batcher = QueryBatcher("dense", dense_encoder, asyncio.get_running_loop(), 16, 0, 8)
        try:
            with pytest.raises(RuntimeError, match="worker thread"):
                batcher.encode_queries(["zinc"])
        finally:
            await batcher.close()

    asyncio.run(run())


def test_concurrent_api_requests_get_the_sequential_answers(tiny_index):
    """Through the app: the lifespan batches the encoders; /search, /answer and chat retrieval share them."""
    from sprig.api.app import create_app

    searcher = Searcher(tiny_index.index_dir, tiny_config())
    sequential = {mode: [[h.passage_id for h in searcher.search(q, 5, mode)] for q in QUERIES] for mode in MODES}
    config = tiny_config().model_copy(update={"server": ServerConfig(query_batch=8, query_bucket=4), "compress": tiny_config().compress.model_copy(update={"k": 2})})
    app = create_app(config=config, searcher=searcher)

    async def run():
        async with app.router.lifespan_context(app):
            batchers = {name: searcher.encoders[name] for name in ("splade", "dense")}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sprig", timeout=300) as client:
                searches = [client.post("/search", json={"query": q, "k": 5, "mode": mode}) for mode in MODES for q in QUERIES]
                answer = client.post("/answer", json={"question": QUERIES[3], "retrieval_mode": "splade", "max_new_tokens": 2})
                chat = client.post("/v1/chat/completions", json={"model": "sprig", "max_tokens": 2, "retrieval_mode": "dense",
                                                                  "messages": [{"role": "user", "content": QUERIES[4]}]})
                *found, answered, chatted = await asyncio.gather(*searches, answer, chat)
            return found, answered, chatted, {name: (b.queries, b.batches) for name, b in batchers.items()}

    found, answered, chatted, counts = asyncio.run(run())
    assert all(r.status_code == 200 for r in found), [r.text for r in found if r.status_code != 200][:1]
    got = [[h["id"] for h in r.json()["data"]] for r in found]
    assert got == [ids for mode in MODES for ids in sequential[mode]]
    assert answered.status_code == 200 and [p["passage_id"] for p in answered.json()["passages"]] == sequential["splade"][3][:2]
    assert chatted.status_code == 200 and [p["passage_id"] for p in chatted.json()["sprig"]["passages"]] == sequential["dense"][4][:2]
    # splade: its mode's and hybrid's searches plus the answer's retrieval; dense: likewise plus the chat's.
    assert counts["splade"][0] == counts["dense"][0] == 2 * len(QUERIES) + 1
    assert counts["splade"][1] < counts["splade"][0] and counts["dense"][1] < counts["dense"][0]
