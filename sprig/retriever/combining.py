"""Concurrent ``Searcher.search`` calls run as one ``search_batch``: flat combining over the caller threads.

Why: in the server every request searches from its own worker thread, and on CPU a query encoder's forward pass
costs mostly per call, so queries encoded together cost about half as much each (docs/benchmarks/api.md). An
earlier design batched only the encoders' calls (through the event loop); it left each request's retrievals,
fusion and explanations on its own thread, and at concurrency 32 those threads and the encoders took the GIL and
the core from each other, so its batches held 2 to 6 queries (hybrid /search on SciFact). Here the calls that arrive while a batch
runs queue up; when it ends, the first queued caller runs all of them (up to ``max_batch``) as one
``search_batch`` -- one encoding call per model, one FAISS search of the stacked queries -- while the others
sleep until their hits are in. A lone call runs at once as a batch of one, so concurrency 1 waits for nothing.
Nothing waits for more calls: at concurrency 32 closed-loop clients settle into two groups that take turns
(batches of about 11 and 21), and waiting for the other group to merge them (up to 60 ms) cost the same CPU per
request and left the core idle whenever clients were slow to come back.

Calls are grouped by their options (k, mode, weights, method, explain): a batch searches each group with one
call. A group that raises is searched again call by call, so an error reaches only the call that causes it.
Callers must be threads that may block (the server's worker threads), never the event loop's own: a waiting
caller sleeps. Hand-written because no library batches calls into an in-process model.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from sprig.core.types import Hit

SearchBatch = Callable[..., list[list[Hit]]]  # search_batch(queries, **options) -> hits per query


@dataclass
class _Call:
    """One ``search`` waiting for its batch: ``lead`` when it must run the next batch itself."""

    query: str
    options: dict
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    hits: list[Hit] | None = None
    error: BaseException | None = None

    def key(self) -> Hashable:
        return tuple((name, tuple(sorted(value.items())) if isinstance(value, Mapping) else value) for name, value in sorted(self.options.items()))


class SearchCombiner:
    """``search(query, **options)`` for many threads at once, through ``search_batch`` (this module's docstring)."""

    def __init__(self, search_batch: SearchBatch, max_batch: int):
        self._search_batch, self._max_batch = search_batch, max_batch
        self._lock = threading.Lock()  # guards the queue and ``_busy``
        self._queue: list[_Call] = []
        self._busy = False  # a caller is running a batch; invariant: a non-empty queue has one
        self.batches = self.queries = 0  # what was searched, in how many batches

    def search(self, query: str, **options) -> list[Hit]:
        call = _Call(query, options)
        with self._lock:
            self._queue.append(call)
            call.lead, self._busy = not self._busy, True
        if not call.lead:
            call.ready.wait()  # woken with hits (or an error), or to lead the next batch
        if call.lead:
            self._run_next()
        if call.error is not None:
            raise call.error
        return call.hits

    def _run_next(self) -> None:
        """Search the queued calls (the leader's own first), then hand the lead to the first call still queued."""
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            for group in _groups(batch):
                _search_group(self._search_batch, group)
            self.batches, self.queries = self.batches + 1, self.queries + len(batch)
        finally:
            with self._lock:
                nxt = self._queue[0] if self._queue else None
                if nxt is not None:
                    nxt.lead = True
                self._busy = nxt is not None
            for call in batch:
                if not call.lead:
                    call.ready.set()
            if nxt is not None:
                nxt.ready.set()


def _groups(calls: Sequence[_Call]) -> list[list[_Call]]:
    """Calls with the same options, in arrival order."""
    groups: dict[Hashable, list[_Call]] = {}
    for call in calls:
        groups.setdefault(call.key(), []).append(call)
    return list(groups.values())


def _search_group(search_batch: SearchBatch, group: list[_Call]) -> None:
    """Hits for every call of ``group`` (same options) in one batch; after an error, one call at a time, so each
    call keeps its own outcome (the caller's thread raises its error)."""
    if len(group) > 1:
        try:
            for call, hits in zip(group, search_batch([c.query for c in group], **group[0].options)):
                call.hits = hits
            return
        except Exception:  # noqa: BLE001 -- not swallowed: the calls are searched again alone
            pass
    for call in group:
        try:
            call.hits = search_batch([call.query], **call.options)[0]
        except Exception as exc:  # noqa: BLE001 -- handed to this call's thread, which raises it
            call.error = exc
