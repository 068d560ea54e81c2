"""Fused SPLADE head: w[d, j] = log1p(ReLU(cap(max_{t in d} h_t·W_j + b_j))) in one Triton kernel.

Input is packed token states ``hidden`` [tokens, H] with document offsets [docs + 1] (document d owns tokens
offsets[d]:offsets[d+1]); output float32 [docs, vocab]. No [tokens, vocab] tensor exists: each program owns a
group of whole, consecutive documents and one vocabulary tile, walks the group's tokens in tiles, computes a
[tokens_tile, vocab_tile] logit block in registers (fp32 accumulate) and folds it into the running maximum of
the document it belongs to; a document's maximum is finalised (bias, optional soft cap, log1p∘ReLU) as soon as
its last token is seen. The bias and the activation commute with the max because they are per column and
monotonic (Formal et al. 2021, SPLADE v2 max pooling; Gemma 2's soft cap is monotonic too). Fusing the head this
way is the idea of Sparton (2026).

Programs are ordered like Triton's grouped matmul (GROUP document groups share a sweep of vocabulary tiles), so
the token states and the weight tiles in flight both stay in L2.
"""
from __future__ import annotations

import os

import numpy as np
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs: sprig.encoders.splade's torch path is the implementation
    triton = None


def available(t: torch.Tensor) -> bool:
    """The kernel can run on ``t``'s device: CUDA with triton, or any device under TRITON_INTERPRET=1."""
    return triton is not None and (t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


def document_groups(offsets: np.ndarray, group_tokens: int) -> np.ndarray:
    """First document of each group, plus the end: documents are grouped by which ``group_tokens`` window
    their first token falls in, so a group holds about ``group_tokens`` tokens and only whole documents."""
    starts = offsets[:-1] // group_tokens
    first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]]) if starts.size else np.zeros(0, np.int64)
    return np.r_[first, offsets.size - 1].astype(np.int32)


if triton is not None:

    @triton.jit
    def _finalise(run, bias, SOFTCAP: tl.constexpr, HAS_SOFTCAP: tl.constexpr):
        """log1p(ReLU(cap(run + bias))) from tl.exp/tl.log only: libdevice's tanh and log1p do not run under
        the interpreter. tanh as sign·(1 - e)/(1 + e), e = exp(-2|y|), which never overflows; log1p by Kahan's
        trick log(u)·x/(u - 1), u = 1 + x, exact to a few ulps for small x."""
        x = run + bias
        if HAS_SOFTCAP:
            y = x / SOFTCAP
            e = tl.exp(-2.0 * tl.abs(y))
            x = SOFTCAP * tl.where(y < 0, -1.0, 1.0) * (1.0 - e) / (1.0 + e)
        x = tl.maximum(x, 0.0)
        u = 1.0 + x
        return tl.where(u == 1.0, x, tl.log(u) * (x / (u - 1.0)))

    @triton.jit(do_not_specialize=["n_groups"])  # varies per batch: no recompiles when it hits a multiple of 16
    def _splade_head_kernel(
        h_ptr, w_ptr, b_ptr, off_ptr, grp_ptr, out_ptr,
        V, H, n_groups, stride_h, stride_w, stride_o,
        HAS_BIAS: tl.constexpr, HAS_SOFTCAP: tl.constexpr, SOFTCAP: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr,
    ):
        pid = tl.program_id(0)
        n_vt = tl.cdiv(V, BLOCK_V)
        per_sweep = GROUP * n_vt
        first_g = (pid // per_sweep) * GROUP
        size = tl.minimum(n_groups - first_g, GROUP)
        g = first_g + (pid % per_sweep) % size
        vt = (pid % per_sweep) // size

        offs_v = vt * BLOCK_V + tl.arange(0, BLOCK_V)
        vmask = offs_v < V
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_v, mask=vmask, other=0.0).to(tl.float32)
        else:
            bias = tl.zeros([BLOCK_V], dtype=tl.float32)
        d = tl.load(grp_ptr + g)
        d_end = tl.load(grp_ptr + g + 1)
        t_begin = tl.load(off_ptr + d)
        t_stop = tl.load(off_ptr + d_end)
        run = tl.full([BLOCK_V], float("-inf"), dtype=tl.float32)
        for t0 in range(t_begin, t_stop, BLOCK_T):
            rows = t0 + tl.arange(0, BLOCK_T)
            rmask = rows < t_stop
            acc = tl.zeros([BLOCK_T, BLOCK_V], dtype=tl.float32)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < H
                h = tl.load(h_ptr + rows[:, None] * stride_h + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
                w = tl.load(w_ptr + offs_v[None, :] * stride_w + ks[:, None], mask=vmask[None, :] & kmask[:, None], other=0.0)
                if IEEE:
                    acc = tl.dot(h, w, acc, input_precision="ieee")
                else:
                    acc = tl.dot(h, w, acc)
            t_end = tl.minimum(t0 + BLOCK_T, t_stop)
            # Documents that end inside this tile: fold in their rows, finalise, store (empty ones too).
            nxt = tl.load(off_ptr + tl.minimum(d + 1, d_end))
            while (d < d_end) & (nxt <= t_end):
                lo = tl.load(off_ptr + d)
                inside = (rows >= lo) & (rows < nxt)
                run = tl.maximum(run, tl.max(tl.where(inside[:, None], acc, float("-inf")), axis=0))
                tl.store(out_ptr + d * stride_o + offs_v, _finalise(run, bias, SOFTCAP, HAS_SOFTCAP), mask=vmask)
                run = tl.full([BLOCK_V], float("-inf"), dtype=tl.float32)
                d += 1
                nxt = tl.load(off_ptr + tl.minimum(d + 1, d_end))
            # The document still open at the tile's end carries its running maximum into the next tile.
            lo = tl.load(off_ptr + tl.minimum(d, d_end))
            inside = (rows >= lo) & (rows < t_end)
            run = tl.maximum(run, tl.max(tl.where(inside[:, None], acc, float("-inf")), axis=0))
        while d < d_end:  # empty documents after the group's last token (or a group of empty documents)
            tl.store(out_ptr + d * stride_o + offs_v, _finalise(run, bias, SOFTCAP, HAS_SOFTCAP), mask=vmask)
            run = tl.full([BLOCK_V], float("-inf"), dtype=tl.float32)
            d += 1


def splade_head(hidden: torch.Tensor, offsets: torch.Tensor | np.ndarray, weight: torch.Tensor, bias: torch.Tensor | None,
                softcap: float | None = None, *, block_t: int = 128, block_v: int = 128, block_k: int = 64,
                group_tokens: int = 512, group: int = 8, num_warps: int = 4, num_stages: int = 3) -> torch.Tensor:
    """Pooled SPLADE weights [docs, vocab] float32 from ``hidden`` [tokens, H] and ``offsets`` [docs + 1].

    ``hidden`` is cast to ``weight``'s dtype (the head's precision); a float32 head multiplies in IEEE float32
    like torch, bf16/fp16 ones on tensor cores with float32 accumulation. Tile sizes are keywords so tests can
    make documents span tiles on small shapes."""
    if triton is None:
        raise RuntimeError("splade_head needs triton (pip install triton)")
    offs = np.asarray(offsets.cpu() if isinstance(offsets, torch.Tensor) else offsets, dtype=np.int64)
    hidden = hidden.to(weight.dtype)
    if hidden.stride(-1) != 1:
        hidden = hidden.contiguous()
    weight = weight if weight.stride(-1) == 1 else weight.contiguous()
    n_docs, (vocab, width) = offs.size - 1, weight.shape
    out = torch.empty(n_docs, vocab, dtype=torch.float32, device=hidden.device)
    if n_docs == 0:
        return out
    groups = document_groups(offs, group_tokens)
    small = torch.from_numpy(np.concatenate([offs.astype(np.int32), groups]))
    if hidden.is_cuda:  # pinned: a pageable copy would wait for the stream, leaving the GPU idle while we launch
        small = small.pin_memory()
    small = small.to(hidden.device, non_blocking=True)
    off_t, grp_t = small[: offs.size], small[offs.size :]
    n_groups = groups.size - 1
    grid = (n_groups * triton.cdiv(vocab, block_v),)
    _splade_head_kernel[grid](
        hidden, weight, bias if bias is not None else out, off_t, grp_t, out,
        vocab, width, n_groups, hidden.stride(0), weight.stride(0), out.stride(0),
        HAS_BIAS=bias is not None, HAS_SOFTCAP=bool(softcap), SOFTCAP=float(softcap or 1.0),
        IEEE=weight.dtype == torch.float32,
        BLOCK_T=block_t, BLOCK_V=block_v, BLOCK_K=block_k, GROUP=group, num_warps=num_warps, num_stages=num_stages,
    )
    return out
