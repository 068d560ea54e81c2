"""Concurrent searches combined into batches (sprig/retriever/combining.py): every caller gets what a search of its
own query would give, calls that differ in options are never mixed, and an error reaches only its own caller."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sprig.retriever.combining import SearchCombiner
from sprig.retriever.searcher import Searcher
from tests.sprig_fixtures import TOPICS, tiny_config


class FakeSearch:
    """A search_batch that answers ``(query, k)`` per query, takes a while per batch and records each batch."""

    def __init__(self, seconds: float = 0.05):
        self.seconds, self.batches = seconds, []
        self._lock = threading.Lock()

    def __call__(self, queries, k=10, explain=True):
        with self._lock:
            self.batches.append((list(queries), k))
        time.sleep(self.seconds)
        if "bad" in queries:
            raise ValueError("bad query")
        return [[(q, k)] for q in queries]


def in_threads(combiner: SearchCombiner, calls: list[tuple[str, int]]) -> list:
    """Each call from its own thread, all at once; an exception is returned in its place."""
    def one(call):
        try:
            return combiner.search(call[0], k=call[1])
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def test_concurrent_calls_are_searched_together_and_answered_alone():
    fake = FakeSearch()
    combiner = SearchCombiner(fake, max_batch=8)
    calls = [(f"q{i}", 10) for i in range(20)]
    assert in_threads(combiner, calls) == [[c] for c in calls]
    sizes = [len(queries) for queries, _ in fake.batches]
    assert sum(sizes) == 20 and max(sizes) <= 8 and len(sizes) < 20  # combined, never above max_batch
    assert (combiner.queries, combiner.batches) == (20, len(sizes))


def test_calls_with_other_options_go_in_their_own_batch():
    fake = FakeSearch()
    calls = [(f"q{i}", 5 if i % 2 else 10) for i in range(12)]
    assert in_threads(SearchCombiner(fake, max_batch=32), calls) == [[c] for c in calls]
    for queries, k in fake.batches:
        assert all(int(q[1:]) % 2 == (k == 5) for q in queries)


def test_an_error_reaches_only_its_caller():
    fake = FakeSearch()
    calls = [("bad" if i == 3 else f"q{i}", 10) for i in range(10)]
    got = in_threads(SearchCombiner(fake, max_batch=32), calls)
    assert isinstance(got[3], ValueError)
    assert [g for i, g in enumerate(got) if i != 3] == [[c] for i, c in enumerate(calls) if i != 3]


def test_a_lone_call_runs_at_once():
    fake = FakeSearch(seconds=0)
    combiner = SearchCombiner(fake, max_batch=32)
    assert [combiner.search(q, k=3) for q in ("a", "b")] == [[("a", 3)], [("b", 3)]]
    assert fake.batches == [(["a"], 3), (["b"], 3)]


@pytest.mark.parametrize("mode", ["hybrid", "splade"])
def test_searcher_threads_get_their_sequential_hits(tiny_index, mode):
    searcher = Searcher(tiny_index.index_dir, tiny_config())
    queries = [text for _, text in TOPICS[:12]]
    alone = [searcher.search_batch([q], 10, mode)[0] for q in queries]
    with ThreadPoolExecutor(len(queries)) as pool:
        together = list(pool.map(lambda q: searcher.search(q, 10, mode), queries))
    for one, many in zip(alone, together):
        assert [h.passage_id for h in many] == [h.passage_id for h in one]
        np.testing.assert_allclose([h.score for h in many], [h.score for h in one], rtol=1e-5, atol=1e-6)
    assert searcher.combiner is not None and searcher.combiner.queries == len(queries)
