"""Length-sorted batching shared by the neural encoders, and CPU worker threads over those batches."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
from tqdm.auto import tqdm

Prepared = TypeVar("Prepared")
Result = TypeVar("Result")


def length_sorted_batches(texts: Sequence[str], batch_size: int, progress: bool = False, label: str = "encode",
                          lengths: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Yield (positions, texts) batches, longest first, so batches carry little padding.

    ``lengths``: each text's length in tokens (``token_lengths``); without, characters, which sort sentences
    poorly (SciFact sentences in batches of 64: 1.81 padded tokens per real one by characters, 1.18 by tokens).
    Callers scatter results back by position. Empty texts become a single space so they still get
    the model's special tokens (and a well-defined, if meaningless, vector).
    """
    order = np.argsort([-n for n in lengths] if lengths is not None else [-len(t) for t in texts], kind="stable")
    with tqdm(total=len(texts), desc=label, unit="text", disable=not progress, smoothing=0.1) as bar:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            yield idx, [texts[i] or " " for i in idx]
            bar.update(len(idx))


def token_lengths(tokenizer, texts: Sequence[str], max_length: int) -> list[int]:
    """Each text's token count as the model will see it (truncated to ``max_length``), for sorting batches."""
    if not texts:  # a fast tokenizer cannot take an empty batch
        return []
    return [len(ids) for ids in tokenizer([t or " " for t in texts], truncation=True, max_length=max_length)["input_ids"]]


def cpu_workers(device: str) -> int:
    """Worker threads for SPLADE's per-document head: one per torch thread on CPU (each then runs its operators on
    one thread), one on CUDA. Its products ([≤ 512, 128] x [128, 2,048]) are too small to split across threads:
    on a loaded 2-core box (load average 8) two one-thread workers ran 4x faster than one two-thread loop; idle,
    0.94x of it (docs/benchmarks/encoding.md)."""
    import torch

    return 1 if device != "cpu" else max(1, torch.get_num_threads())


_threads_lock = threading.Lock()
_threads_users = 0  # encodes inside one_thread_per_worker now
_threads_saved = 1  # torch's thread count before the first of them


@contextmanager
def one_thread_per_worker():
    """torch operators on one thread while workers run, restored when the last overlapping user leaves (torch's
    thread count is process-wide, and a server may encode on several request threads at once)."""
    import torch

    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


def map_batches(prepare: Callable[[list[str]], Prepared], compute: Callable[[Prepared], Result], texts: Sequence[str], batch_size: int,
                workers: int = 1, progress: bool = False, label: str = "encode", lengths: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, Result]]:
    """(positions, compute(prepare(batch))) over ``length_sorted_batches`` (by ``lengths`` when given), in order.

    ``prepare`` (tokenisation) runs in the calling thread: a fast tokenizer is not safe to call from two threads
    with padding or truncation set. With ``workers`` > 1, ``compute`` runs on that many threads, one torch thread
    each, at most two batches per worker ahead.
    """
    batches = length_sorted_batches(texts, batch_size, progress, label, lengths)
    if workers <= 1:
        for idx, batch in batches:
            yield idx, compute(prepare(batch))
        return
    with one_thread_per_worker(), ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for idx, batch in batches:
            pending.append((idx, pool.submit(compute, prepare(batch))))
            if len(pending) >= 2 * workers:
                idx, done = pending.popleft()
                yield idx, done.result()
        while pending:
            idx, done = pending.popleft()
            yield idx, done.result()
