"""Sparse-attention decoding as a model transform for Llama-family Hugging Face models.

``apply_sparse_attention(model, ...)`` registers one attention function with transformers'
``AttentionInterface`` and marks every attention layer from ``dense_layers`` on. Prefill (more than one
query token) stays dense SDPA and builds the layer's page summaries; each decode step of a marked layer
runs :func:`sprig.kernels.sparse_decode.sparse_decode` (Quest-style page selection, Tang et al., 2024) over the
cache that transformers hands the layer. The first layers stay dense because their attention is broad
and page scores predict it poorly (Quest keeps its first two layers dense for the same reason).

Rows are assumed unpadded: the valid length of row b is ``position_ids[b, -1] + 1``, which holds for
batch-1 generation and for equal-length batches, with dynamic or preallocated (static) caches.
The summaries live on the model's layers, so one sequence (or batch) decodes at a time;
``sprig.rag.generator.Generator`` refuses a second stream while one is open.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from sprig.kernels.page_summary import num_pages, page_summary
from sprig.kernels.sparse_decode import sparse_decode

ATTENTION_NAME = "sprig_sparse"


@dataclass(frozen=True)
class SparseSpec:
    page_size: int
    budget: float  # fraction of the pages kept, sink and recent pages included
    sink_pages: int
    recent_pages: int


class PageSummaries:
    """One layer's (min, max) key summaries, in a buffer that doubles as a dynamic cache grows."""

    def __init__(self, spec: SparseSpec):
        self.spec = spec
        self.kmin: torch.Tensor | None = None
        self.kmax: torch.Tensor | None = None

    def rebuild(self, keys: torch.Tensor, lengths: torch.Tensor) -> None:
        self.kmin, self.kmax = page_summary(keys, self.spec.page_size, lengths)

    def views(self, keys: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, Hkv, ceil(N / page), D] views covering the cache; a fresh or resized cache is re-summarised."""
        b, h, n, d = keys.shape
        pages = num_pages(n, self.spec.page_size)
        if self.kmin is None or self.kmin.shape[:2] != (b, h) or self.kmin.dtype != keys.dtype:
            self.rebuild(keys, lengths)
        elif self.kmin.shape[2] < pages:  # grow geometrically; the new last page is refreshed by the kernel
            grown = [t.new_zeros(b, h, max(pages, 2 * t.shape[2]), d) for t in (self.kmin, self.kmax)]
            for new, old in zip(grown, (self.kmin, self.kmax)):
                new[:, :, : old.shape[2]] = old
            self.kmin, self.kmax = grown
        return self.kmin[:, :, :pages], self.kmax[:, :, :pages]


def _lengths(key: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
    b = key.shape[0]
    if position_ids is None:
        return torch.full((b,), key.shape[2], dtype=torch.int32, device=key.device)
    return (position_ids[:, -1].to(torch.int32) + 1).expand(b).contiguous()


def sprig_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface function: dense SDPA unless the layer is marked sparse and this is a decode step.

    query [B, Hq, q_len, D]; key/value [B, Hkv, N, D] (the whole cache) -> ([B, q_len, Hq, D], None).
    """
    pages: PageSummaries | None = getattr(module, "sprig_pages", None)
    if pages is None or query.shape[2] != 1:
        out = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                     **kwargs)
        if pages is not None:
            pages.rebuild(key, _lengths(key, kwargs.get("position_ids")))
        return out
    lengths = _lengths(key, kwargs.get("position_ids"))
    kmin, kmax = pages.views(key, lengths)
    spec = pages.spec
    out = sparse_decode(query[:, :, 0], key, value, kmin, kmax, lengths, page_size=spec.page_size,
                        budget=spec.budget, sink_pages=spec.sink_pages, recent_pages=spec.recent_pages,
                        scale=scaling)
    return out[:, None], None


def _attention_layers(model: torch.nn.Module):
    return [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]


def apply_sparse_attention(
    model: torch.nn.Module,
    *,
    page_size: int = 16,
    budget: float = 0.25,
    dense_layers: int = 2,
    sink_pages: int = 1,
    recent_pages: int = 4,
) -> torch.nn.Module:
    """Make decode steps of layers >= dense_layers attend to a budget of KV pages; returns the model.

    The defaults match ``sprig.config.AttentionConfig``; ``budget`` counts the sink and recent pages.
    """
    if page_size < 1 or page_size & (page_size - 1):
        raise ValueError(f"page_size must be a power of two, got {page_size}")
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    if dense_layers < 0 or sink_pages < 0 or recent_pages < 1:
        raise ValueError("need dense_layers >= 0, sink_pages >= 0, recent_pages >= 1; got "
                         f"{dense_layers}, {sink_pages}, {recent_pages}")
    layers = _attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Llama-style attention layers "
                         "(modules with layer_idx and num_key_value_groups)")
    AttentionInterface.register(ATTENTION_NAME, sprig_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    spec = SparseSpec(page_size, budget, sink_pages, recent_pages)
    for layer in layers:
        layer.sprig_pages = PageSummaries(spec) if layer.layer_idx >= dense_layers else None
    if model.config._attn_implementation != ATTENTION_NAME:  # what remove_sparse_attention puts back
        model.sprig_dense_attention = model.config._attn_implementation
    model.config._attn_implementation = ATTENTION_NAME
    return model


def remove_sparse_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`apply_sparse_attention`: every layer back to the dense attention the model had."""
    for layer in _attention_layers(model):
        layer.sprig_pages = None
    model.config._attn_implementation = getattr(model, "sprig_dense_attention", "sdpa")
    return model
