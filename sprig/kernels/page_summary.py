"""Per-page key summaries for query-aware KV page selection.

Quest (Tang et al., 2024, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference") keeps,
for every page of ``page_size`` cached keys, the elementwise minimum and maximum over the page. For a
query ``q`` the sum over channels of ``max(q_d * min_d, q_d * max_d)`` is an upper bound on ``q · k`` for
every key in the page, so pages can be ranked without reading their keys.

The summaries are built once from the keys after a dense prefill; during decode the sparse kernel
refreshes only the last (partial) page in place, so building them here is the only full pass over K.
"""
from __future__ import annotations

import torch


def num_pages(tokens: int, page_size: int) -> int:
    return -(-tokens // page_size)


def page_summary(
    keys: torch.Tensor, page_size: int, lengths: torch.Tensor | None = None, pages: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise (min, max) of the keys of each page.

    keys: [B, H, N, D] (a cache buffer; rows at or past ``lengths[b]`` are ignored).
    lengths: [B] valid tokens per row (default: all N).
    pages: summary capacity (default ``ceil(N / page_size)``); extra pages are zero-filled.
    Returns (kmin, kmax), each [B, H, pages, D] in the keys' dtype; pages with no valid key are zero.
    Traffic: reads B·H·N·D key elements once, writes 2·B·H·pages·D.
    """
    b, h, n, d = keys.shape
    pages = num_pages(n, page_size) if pages is None else pages
    if pages * page_size < n:
        raise ValueError(f"pages={pages} too few for {n} keys at page_size={page_size}")
    padded = keys.new_zeros(b, h, pages * page_size, d)
    padded[:, :, :n] = keys
    valid = torch.arange(pages * page_size, device=keys.device)[None, :] < (
        torch.full((b,), n, device=keys.device) if lengths is None else lengths.to(keys.device)
    ).view(b, 1)
    valid = valid.view(b, 1, pages, page_size, 1)
    paged = padded.view(b, h, pages, page_size, d)
    kmin = torch.where(valid, paged, torch.inf).amin(dim=3)
    kmax = torch.where(valid, paged, -torch.inf).amax(dim=3)
    empty = ~valid.any(dim=3)  # [B, 1, pages, 1]
    kmin = torch.where(empty, 0.0, kmin).to(keys.dtype)
    kmax = torch.where(empty, 0.0, kmax).to(keys.dtype)
    return kmin.contiguous(), kmax.contiguous()
