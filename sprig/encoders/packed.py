"""Packed-batch SPLADE document encoding for masked LMs: no padding, and the CPU work overlapped with the GPU.

Why: length-sorted padded batches still compute on padding, and while the GPU runs, the tokenizer and the
SparseVec conversion wait (and the other way round). Here three threads share the work. A tokenizer thread packs
whole documents in input order into batches of about ``token_budget`` tokens with no padding (flat token ids,
per-document position ids, cumulative lengths; in pinned memory on CUDA, so copies overlap). The calling thread
runs the model body, each document attending only within its own span (torch's flash varlen kernel, registered
as a transformers attention implementation), then ``splade_pool`` (the fused Triton head on CUDA). A conversion
thread compacts the non-zeros on the GPU on its own stream, copies only them to the CPU and builds SparseVecs.

``SpladeEncoder`` takes this path for documents on CUDA where torch has varlen attention; on CPU (one SDPA per
document) it is what the tests run. sprig/eval/bench/splade_gpu.py times it stage by stage
(docs/benchmarks/encoding-gpu.md).
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from sprig.core.types import SparseVec

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # older torch: no packed path on CUDA
    varlen_attn = None

VARLEN = "sprig_varlen"  # the attention implementation's name in transformers' registries


def available(device: str) -> bool:
    """Whether documents on ``device`` take the packed path: CUDA, with torch's flash varlen attention."""
    return device == "cuda" and varlen_attn is not None


def supports(model) -> bool:
    """Whether packed batches give ``model``'s own results: it passes attention keyword arguments (the spans)
    through to its attention function (else packed documents would attend to each other), and attends to the whole
    document (``varlen_attention`` applies no sliding window, as ModernBERT's local layers have)."""
    return bool(getattr(model, "_supports_attention_backend", False)) and getattr(model.config, "sliding_window", None) is None


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, cu_seq_lens_q=None,
                     max_length_q=None, **kwargs):
    """Attention over packed documents (batch 1, [1, heads, tokens, dim]): each attends within its own
    cu_seq_lens span. Flash varlen on CUDA; elsewhere one SDPA per document (the same result, for CPU tests).
    Without spans (a padded batch: queries) it is transformers' SDPA with the padding mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, dim]
    if q.is_cuda and varlen_attn is not None:
        out = varlen_attn(q, k, v, cu_seq_lens_q, cu_seq_lens_q, max_length_q, max_length_q, scale=scaling)
    else:
        bounds = cu_seq_lens_q.tolist()
        out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
            *(t[a:b].transpose(0, 1) for t in (q, k, v)), scale=scaling).transpose(0, 1) for a, b in zip(bounds[:-1], bounds[1:])])
    return out.unsqueeze(0), None


def varlen_mask(*args, attention_mask=None, **kwargs):
    """The mask for ``varlen_attention``: SDPA's for a padded batch, none for a packed one (its spans are the mask)."""
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs) if attention_mask is not None else None


def use_varlen(model) -> None:
    """Switch ``model`` to ``varlen_attention`` (registered with transformers first; both calls are idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, varlen_mask)
    model.set_attn_implementation(VARLEN)


def position_offset(model) -> int:
    """The position id of a document's first token: padding_idx + 1 for RoBERTa-style embeddings, which number
    positions after the padding id, else 0."""
    embeddings = getattr(model.base_model, "embeddings", None)
    return embeddings.padding_idx + 1 if hasattr(embeddings, "create_position_ids_from_input_ids") else 0


class Batch:
    """One GPU step's inputs, built on the tokenizer thread (in pinned memory on CUDA, so copies overlap).

    Packed: flat ids [1, tokens], position ids [1, tokens], cumulative lengths [docs + 1]. Padded (the
    benchmark's comparison): ids and attention mask [docs, longest]."""

    def __init__(self, doc_idx: list[int], rows: list[np.ndarray], packed: bool, pin: bool, first_position: int = 0):
        lens = np.fromiter(map(len, rows), np.int64, len(rows))
        self.doc_idx, self.lengths, self.max_len, self.packed = doc_idx, lens, int(lens.max()), packed
        if packed:
            flat = np.concatenate(rows).astype(np.int64)
            starts = np.r_[0, np.cumsum(lens)]
            positions = np.arange(flat.size) - np.repeat(starts[:-1], lens) + first_position
            arrays = [flat[None], positions[None], starts.astype(np.int32)]
            self.padded_tokens = flat.size
        else:
            grid, mask = np.zeros((len(rows), self.max_len), np.int64), np.zeros((len(rows), self.max_len), np.int64)
            for r, row in enumerate(rows):
                grid[r, : len(row)], mask[r, : len(row)] = row, 1
            arrays, self.padded_tokens = [grid, mask], grid.size
        self.tensors = [torch.from_numpy(x).pin_memory() if pin else torch.from_numpy(x) for x in arrays]


def tokenise(tok, texts: list[str], max_length: int, how: str) -> list[np.ndarray]:
    """Token ids per text: "lists" takes the tokenizer's Python lists (one small array per text), "numpy" pads the
    chunk into one array and slices each row. "lists" is the default: on one H200 (2026-12-07, 20,000 SciFact texts)
    the GPU loop fed by it ran BERT-base at 4,476-4,525 docs/s against 2,780-2,296 with "numpy", whose tokenizer
    thread also slowed the model body (6.1 vs 3.6 s of GPU time; docs/benchmarks/encoding-gpu.md); the benchmark
    keeps both (``--tokenise``). Empty texts become a space, so they get the special tokens, as in the padded path
    (sprig.encoders.batching)."""
    texts = [t or " " for t in texts]
    if how == "lists":
        return [np.asarray(ids, np.int64) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    enc = tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="np")
    ids, lengths = enc["input_ids"], enc["attention_mask"].sum(1)
    if tok.padding_side == "left":
        return [ids[i, ids.shape[1] - n :] for i, n in enumerate(lengths)]
    return [ids[i, :n] for i, n in enumerate(lengths)]


@dataclass
class Stats:
    """Where one encode's time went. Each field has one writer: the tokenizer thread (tokenise_s), the conversion
    thread (convert_s), the calling thread (the rest; body and head by CUDA events on CUDA)."""

    tokenise_s: float = 0.0  # tokenizer thread CPU seconds, not counting waits for the GPU
    convert_s: float = 0.0  # conversion thread seconds building SparseVecs from the compacted non-zeros
    wait_tokens_s: float = 0.0  # the GPU loop waiting for the tokenizer thread
    body_s: float = 0.0
    head_s: float = 0.0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0


def batches(tok, texts: Sequence[str], max_length: int, token_budget: int, packed: bool, pin: bool, first_position: int,
            how: str, out: queue.Queue, stats: Stats, stop: threading.Event, errors: list, chunk: int = 1024) -> None:
    """Tokenizer thread: texts -> batches of about ``token_budget`` tokens, packed in input order, or (padded)
    sorted by length within each chunk of texts and costed at their longest; a document longer than the budget
    is a batch of its own. Ends with None, also after ``stop`` or an error (recorded in ``errors``)."""
    pending: list[tuple[int, np.ndarray]] = []
    tokens = 0

    def emit() -> None:
        nonlocal pending, tokens
        if pending:
            t0 = time.perf_counter()
            batch = Batch([i for i, _ in pending], [r for _, r in pending], packed, pin, first_position)
            stats.tokenise_s += time.perf_counter() - t0
            out.put(batch)  # waiting here (the GPU is behind) is not tokenising time
        pending, tokens = [], 0

    try:
        for start in range(0, len(texts), chunk):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            rows = list(enumerate(tokenise(tok, list(texts[start : start + chunk]), max_length, how), start))
            if not packed:
                rows.sort(key=lambda r: -len(r[1]))
            stats.tokenise_s += time.perf_counter() - t0
            for idx, row in rows:
                cost = len(row) if packed or not pending else len(pending[0][1])
                if pending and tokens + cost > token_budget:
                    emit()
                    cost = len(row)
                pending.append((idx, row))
                tokens += cost
            if not packed:
                emit()
        emit()
    except BaseException as exc:  # handed to the calling thread, which raises it
        errors.append(exc)
    finally:
        out.put(None)


def convert(inbox: queue.Queue, results: list, stats: Stats, top_k: int, threshold: float, errors: list) -> None:
    """Conversion thread: weights > ``threshold`` compacted on the GPU (its own stream, so the calling thread never
    waits), only they cross to the CPU, then one SparseVec per document (its ``top_k`` largest, 0: all), as
    ``to_sparse_vecs``. Drains its inbox to the final None even after an error, so the calling thread never blocks."""
    stream = None
    while (item := inbox.get()) is not None:
        if errors:
            continue
        try:
            doc_idx, pooled, ready = item
            if ready is not None and stream is None:
                stream = torch.cuda.Stream(pooled.device)
            with torch.cuda.stream(stream) if ready is not None else contextlib.nullcontext():
                if ready is not None:
                    stream.wait_event(ready)
                    pooled.record_stream(stream)
                mask = pooled > threshold
                counts, vals = mask.sum(1).cpu(), pooled[mask].cpu()
                cols = mask.nonzero()[:, 1].to(torch.int32).cpu()
            t0 = time.perf_counter()
            bounds = np.r_[0, np.cumsum(counts.numpy())]
            cols_np, vals_np = cols.numpy(), vals.numpy()
            for i, a, b in zip(doc_idx, bounds[:-1], bounds[1:]):
                results[i] = SparseVec(cols_np[a:b], vals_np[a:b]).top(top_k)
            stats.convert_s += time.perf_counter() - t0
        except BaseException as exc:
            errors.append(exc)


Head = Callable[[torch.Tensor, list[int]], torch.Tensor]  # token states [tokens, H], lengths -> weights [docs, V]


class PackedEncoder:
    """SPLADE document vectors through the three-thread packed pipeline (the module docstring).

    ``model``: a masked LM switched to ``use_varlen`` (for packed batches) with its vocabulary projection
    detached, so that its logits are the head's input; ``head``: SPLADE pooling of those states (``splade_pool``
    with the detached projection; passed in, as sprig.encoders.splade imports this module).

    The benchmark's A/B switches: ``packed`` False runs length-sorted padded buckets instead; ``how`` is
    ``tokenise``'s; ``dummy_mask`` passes a 4-d attention mask, which transformers hands through as it is
    (without one it inspects the position ids for packed sequences, a host sync per forward; varlen_attention
    ignores it): off by default, since without it the H200 run was as fast or faster (BERT-base 4,525 vs 4,476
    docs/s, SPLADE-tiny 7,506 vs 6,600); ``forward``: the model to call, say torch.compile'd.
    """

    def __init__(self, model, tokenizer, head: Head, device: str, token_budget: int = 65_536, packed: bool = True,
                 how: str = "lists", dummy_mask: bool = False, forward=None):
        self.tokenizer, self.head, self.device = tokenizer, head, device
        self.token_budget, self.packed, self.how = token_budget, packed, how
        self.forward, self.first_position = forward or model, position_offset(model)
        self.no_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device) if dummy_mask else None

    def body(self, b: Batch) -> torch.Tensor:
        """Token states [tokens, H] of the batch's documents, in order (the detached head's transform applied)."""
        if b.packed:
            ids, pos, cu = (t.to(self.device, non_blocking=True) for t in b.tensors)
            return self.forward(input_ids=ids, position_ids=pos, attention_mask=self.no_mask, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                max_length_q=b.max_len, max_length_k=b.max_len).logits[0]
        ids, mask = (t.to(self.device, non_blocking=True) for t in b.tensors)
        return self.forward(input_ids=ids, attention_mask=mask).logits[mask.bool()]

    def _mark(self) -> torch.cuda.Event | float:
        """A point in time: a CUDA event on the current stream (also what the conversion thread waits on), else the clock."""
        if self.device != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], max_length: int, top_k: int = 0, threshold: float = 0.0, progress: bool = False,
               label: str = "SPLADE docs", stats: Stats | None = None,
               on_batch: Callable[[torch.Tensor, list[int]], None] | None = None) -> list[SparseVec]:
        """One SparseVec per text, in input order. ``stats`` (if given) is filled in; ``on_batch`` sees each batch's
        token states and document lengths (the benchmark keeps one to time the head alone)."""
        stats = stats if stats is not None else Stats()
        results: list = [None] * len(texts)
        inbox, outbox = queue.Queue(maxsize=8), queue.Queue(maxsize=4)
        stop, errors, marks = threading.Event(), [], []
        producer = threading.Thread(target=batches, name="sprig-tokenise", daemon=True,
                                    args=(self.tokenizer, texts, max_length, self.token_budget, self.packed, self.device == "cuda",
                                          self.first_position, self.how, inbox, stats, stop, errors))
        consumer = threading.Thread(target=convert, name="sprig-convert", daemon=True,
                                    args=(outbox, results, stats, top_k, threshold, errors))
        producer.start(), consumer.start()
        finished = False
        try:
            with tqdm(total=len(texts), desc=label, unit="text", disable=not progress, smoothing=0.1) as bar:
                while not errors:
                    t0 = time.perf_counter()
                    b = inbox.get()
                    stats.wait_tokens_s += time.perf_counter() - t0
                    if b is None:
                        finished = True
                        break
                    start = self._mark()
                    hidden = self.body(b)
                    mid = self._mark()
                    pooled = self.head(hidden, b.lengths.tolist())
                    end = self._mark()
                    marks.append((start, mid, end))
                    outbox.put((b.doc_idx, pooled, end if self.device == "cuda" else None))
                    if on_batch is not None:
                        on_batch(hidden, b.lengths.tolist())
                    stats.batches += 1
                    stats.tokens += int(b.lengths.sum())
                    stats.padded_tokens += b.padded_tokens
                    bar.update(len(b.doc_idx))
        finally:
            stop.set()
            while not finished and inbox.get() is not None:  # the tokenizer thread ends at its next batch
                pass
            outbox.put(None)
            producer.join(), consumer.join()
        if errors:
            raise errors[0]
        if self.device == "cuda":
            torch.cuda.synchronize()
        for start, mid, end in marks:
            stats.body_s += start.elapsed_time(mid) / 1e3 if self.device == "cuda" else mid - start
            stats.head_s += mid.elapsed_time(end) / 1e3 if self.device == "cuda" else end - mid
        return results
