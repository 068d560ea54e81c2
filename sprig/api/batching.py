"""Micro-batching of query encoding: the queries of concurrent requests go through each model together.

Why: on CPU a query encoder's forward pass costs mostly per call (framework overhead, small matrix
products), so eight queries in one call cost about three single ones (docs/benchmarks/api.md).

Why here and shaped so: only the server has concurrent callers (the CLI and eval already pass lists).
The searcher is synchronous and runs in the server's worker threads (/search hands it to the thread pool,
/answer and chat retrieve inside their generators), so a ``QueryBatcher`` stands in for the encoder inside
the searcher, one place for every route: a thread calling
``encode_queries`` hands its queries to the server's event loop and waits; there a collector takes up to
``server.query_batch`` queued calls (after waiting up to ``server.query_batch_wait_ms`` for more) and
encodes them in one worker thread per encoder, sorted by length into buckets of ``server.query_bucket``
so a short query is not padded to the longest. A failing bucket fails only its own callers; a caller that
gave up (cancelled) is skipped. Hand-written because no library batches calls into an in-process model.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from sprig.core.config import ServerConfig
from sprig.encoders.batching import length_sorted_batches
from sprig.encoders.factory import EncoderSet

log = logging.getLogger(__name__)


@dataclass
class _Call:
    """One ``encode_queries`` call waiting for its batch; resolved with its slice of the bucket's output."""

    texts: list[str]
    future: asyncio.Future = field(repr=False)


class QueryBatcher:
    """One query encoder behind a queue on ``loop``. Everything but ``encode_queries`` (documents, vocab,
    settings, dim) is the wrapped encoder's own, so the searcher and the index writer use it unchanged."""

    def __init__(self, name: str, encoder, loop: asyncio.AbstractEventLoop, max_batch: int, wait_ms: float, bucket: int):
        self.retriever, self.encoder = name, encoder  # not `name`: that stays the model's (REFRAG checks it)
        self._loop, self._max_batch, self._wait_s, self._bucket = loop, max_batch, wait_ms / 1000, bucket
        self._queue: list[_Call] = []
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"encode-{name}")
        self.batches = self.queries = 0  # what was encoded, for the log line at shutdown
        self._last_batch = 0  # calls in the previous batch: more than one means concurrent load
        self._loop_thread = threading.get_ident()  # built on the loop's thread (query_batching runs there)
        self._collector = loop.create_task(self._collect(), name=f"batcher-{name}")

    def __getattr__(self, attribute: str):
        return getattr(self.encoder, attribute)

    def encode_queries(self, texts: Sequence[str], progress: bool = False):
        """The encoder's own signature, for the searcher's threads: the queries join the next batch."""
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("QueryBatcher.encode_queries blocks: call it from a worker thread, or await encode()")
        return asyncio.run_coroutine_threadsafe(self.encode(list(texts)), self._loop).result()

    async def encode(self, texts: list[str]):
        """The encoder's output for ``texts`` (list of sparse vectors, or an array), encoded with other callers'."""
        call = _Call(texts, self._loop.create_future())
        self._queue.append(call)
        self._arrived.set()
        if len(self._queue) >= self._max_batch:
            self._full.set()
        return await call.future

    async def close(self) -> None:
        self._collector.cancel()
        with suppress(asyncio.CancelledError):
            await self._collector
        for call in self._queue:
            call.future.cancel()
        self._worker.shutdown(wait=True)
        log.info("%s queries: %d encoded in %d batches (mean %.1f)", self.retriever, self.queries, self.batches, self.queries / max(self.batches, 1))

    async def _collect(self) -> None:
        while True:
            await self._arrived.wait()
            # Wait for more only under concurrent load: a lone request (the last batch was one call) never waits.
            if self._wait_s and self._last_batch > 1 and len(self._queue) < self._max_batch:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._wait_s)
            batch = [c for c in self._queue[: self._max_batch] if not c.future.done()]  # done: its caller was cancelled
            self._last_batch = len(batch)
            del self._queue[: self._max_batch]
            if not self._queue:
                self._arrived.clear()
            if len(self._queue) < self._max_batch:
                self._full.clear()
            try:
                for positions, _ in length_sorted_batches([" ".join(c.texts) for c in batch], self._bucket):
                    await self._encode([batch[i] for i in positions])
            except asyncio.CancelledError:  # shutting down: no caller of this batch may wait forever
                for call in batch:
                    call.future.cancel()
                raise

    async def _encode(self, bucket: list[_Call]) -> None:
        texts = [t for call in bucket for t in call.texts]
        try:
            output = await self._loop.run_in_executor(self._worker, self.encoder.encode_queries, texts)
        except Exception as exc:  # noqa: BLE001 -- not swallowed: each caller of this bucket gets it; the others, and later batches, go on
            for call in bucket:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        self.batches, self.queries = self.batches + 1, self.queries + len(texts)
        start = 0
        for call in bucket:
            if not call.future.done():
                call.future.set_result(output[start : start + len(call.texts)])
            start += len(call.texts)


def _swap(encoders: EncoderSet, name: str, encoder) -> None:
    if name == "dense":
        encoders.dense = encoder
    else:
        encoders.sparse[name] = encoder


@asynccontextmanager
async def query_batching(encoders: EncoderSet, server: ServerConfig) -> AsyncIterator[dict[str, QueryBatcher]]:
    """While open, the model encoders of ``encoders`` (``server.batched_encoders``) encode queries in
    batches on the running loop; on exit the plain encoders are back. ``server.query_batch`` 1: nothing changes."""
    batchers: dict[str, QueryBatcher] = {}
    if server.query_batch > 1:
        loop = asyncio.get_running_loop()
        batchers = {name: QueryBatcher(name, encoders[name], loop, server.query_batch, server.query_batch_wait_ms, server.query_bucket)
                    for name in encoders.names if name in server.batched_encoders}
    for name, batcher in batchers.items():
        _swap(encoders, name, batcher)
    try:
        yield batchers
    finally:
        for name, batcher in batchers.items():
            _swap(encoders, name, batcher.encoder)
            await batcher.close()
