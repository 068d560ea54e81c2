"""Query-aware sparse-attention decode over a paged KV cache (Quest-style page selection, split-K).

One decode step for one new query token per sequence:

1. score every KV page with the Quest bound ``sum_d max(q_d·kmin_d, q_d·kmax_d)`` (Tang et al., 2024),
   summed over the query heads that share the KV head (GQA: one selection per KV head);
2. keep the ``ceil(budget · pages)`` best pages, the ``sink_pages`` first pages (attention sinks, Xiao et
   al., 2024, StreamingLLM) and the ``recent_pages`` last ones counted inside that budget;
3. attend over the kept pages only, split along the key axis and merged with log-sum-exp weights
   (Dao et al., 2023, Flash-Decoding).

The key summaries are [B, Hkv, P, D] min/max tensors (sprig/kernels/page_summary.py); each call refreshes the
summary of the last, partial page in place, so a cache that grows by one token per step stays summarised.
Selection is exact top-k with ties broken towards the lower page index; the kept pages are returned in
ascending order, padded with -1.
On GPU a step is two launches: scoring, then one that selects, attends and merges (every split program
repeats its row's selection and attends its own share of the kept pages).

Bytes per step and KV head: dense reads 2·N·D elements; this reads 2·P·D summary elements
(N·D / page_size·2) plus 2·budget·N·D kept K/V elements, e.g. 3/16 of dense at page 16, budget 1/8.
"""
from __future__ import annotations

import functools
import os
from fractions import Fraction

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs: the reference below is the implementation
    triton = None


def _budget_fraction(budget: float) -> Fraction:
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    return Fraction(budget).limit_denominator(1024)


def kept_pages(n_pages: torch.Tensor, budget: float, sink_pages: int, recent_pages: int) -> torch.Tensor:
    """Pages kept per row: ceil(budget · n_pages), at least sink + recent, at most n_pages (exact integers)."""
    frac = _budget_fraction(budget)
    k = (n_pages * frac.numerator + frac.denominator - 1) // frac.denominator
    return torch.minimum(k.clamp(min=sink_pages + recent_pages), n_pages)


# ----------------------------------------------------------------------------------------------------
# Plain-torch reference (CPU path and test oracle)
# ----------------------------------------------------------------------------------------------------


def refresh_last_page_reference(
    keys: torch.Tensor, kmin: torch.Tensor, kmax: torch.Tensor, lengths: torch.Tensor, page_size: int
) -> None:
    """Recompute (min, max) of each row's last, partial page in place: reads at most page_size keys."""
    for b, n in enumerate(lengths.tolist()):
        last = (n - 1) // page_size
        page = keys[b, :, last * page_size : n].float()  # [H, <=page, D]
        kmin[b, :, last] = page.amin(dim=1).to(kmin.dtype)
        kmax[b, :, last] = page.amax(dim=1).to(kmax.dtype)


def page_scores_reference(
    q: torch.Tensor,
    kmin: torch.Tensor,
    kmax: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    sink_pages: int,
    recent_pages: int,
) -> torch.Tensor:
    """[B, Hkv, P] float32 page scores; forced pages +inf, pages past the length -inf.

    Reads 2·P·D summary elements per KV head (1/page_size of the keys, twice).
    """
    b, hq, d = q.shape
    hkv, p = kmin.shape[1], kmin.shape[2]
    qg = q.float().view(b, hkv, hq // hkv, 1, d)  # [B, Hkv, G, 1, D]
    bound = torch.maximum(qg * kmin.float()[:, :, None], qg * kmax.float()[:, :, None])  # [B, Hkv, G, P, D]
    scores = bound.sum(dim=-1).sum(dim=2)  # [B, Hkv, P]
    page = torch.arange(p, device=q.device)
    n = ((lengths.to(q.device) + page_size - 1) // page_size).view(b, 1, 1)
    forced = (page < sink_pages) | (page >= n - recent_pages)
    scores = torch.where(forced, torch.inf, scores)
    return torch.where(page < n, scores, -torch.inf)


def select_pages_reference(scores: torch.Tensor, k: torch.Tensor, slots: int) -> torch.Tensor:
    """The k[b] best pages of each row (ties to the lower index), ascending, padded with -1 to `slots`."""
    b, h, p = scores.shape
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    rank = torch.arange(p, device=scores.device)
    chosen = torch.where(rank < k.to(scores.device).view(b, 1, 1), order, p).sort(dim=-1).values[..., :slots]
    if chosen.shape[-1] < slots:
        chosen = torch.nn.functional.pad(chosen, (0, slots - chosen.shape[-1]), value=p)
    return torch.where(chosen == p, -1, chosen).to(torch.int32)


def attend_pages_reference(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    pages: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    scale: float,
) -> torch.Tensor:
    """Softmax attention of q [B, Hq, D] over the listed pages only -> [B, Hq, D] in q's dtype.

    Reads the kept pages' K and V once (2·kept·page_size·D elements per KV head).
    """
    b, hq, d = q.shape
    hkv = keys.shape[1]
    tok = pages.long()[..., None] * page_size + torch.arange(page_size, device=q.device)  # [B, Hkv, S, page]
    tok = tok.flatten(2)
    valid = (tok >= 0) & (tok < lengths.to(q.device).view(b, 1, 1))
    idx = tok.clamp(0, keys.shape[2] - 1)[..., None].expand(-1, -1, -1, d)
    k_sel = keys.gather(2, idx).float()  # [B, Hkv, T, D]
    v_sel = values.gather(2, idx).float()
    qg = q.float().view(b, hkv, hq // hkv, d)
    logits = torch.einsum("bhgd,bhtd->bhgt", qg, k_sel) * scale
    logits = logits.masked_fill(~valid[:, :, None], -torch.inf)
    out = torch.einsum("bhgt,bhtd->bhgd", torch.softmax(logits, dim=-1), v_sel)
    return out.reshape(b, hq, d).to(q.dtype)


def sparse_decode_reference(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kmin: torch.Tensor,
    kmax: torch.Tensor,
    lengths: torch.Tensor,
    *,
    page_size: int,
    budget: float,
    sink_pages: int = 1,
    recent_pages: int = 1,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`sparse_decode`: (out [B, Hq, D], kept pages [B, Hkv, slots] int32)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    refresh_last_page_reference(keys, kmin, kmax, lengths, page_size)
    scores = page_scores_reference(q, kmin, kmax, lengths, page_size, sink_pages, recent_pages)
    n_pages = (lengths.to(q.device).long() + page_size - 1) // page_size
    k = kept_pages(n_pages, budget, sink_pages, recent_pages)
    pages = select_pages_reference(scores, k, _slots(kmin.shape[2], budget, sink_pages, recent_pages))
    return attend_pages_reference(q, keys, values, pages, lengths, page_size, scale), pages


def _slots(pages: int, budget: float, sink_pages: int, recent_pages: int) -> int:
    """Static size of the kept-page list: the most pages any row can keep at this capacity."""
    return int(kept_pages(torch.tensor(pages), budget, sink_pages, recent_pages))


# ----------------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _kept(length, PAGE: tl.constexpr, NUM: tl.constexpr, DEN: tl.constexpr, SINK: tl.constexpr,
              RECENT: tl.constexpr):
        n_pages = (length + PAGE - 1) // PAGE
        return tl.minimum(tl.maximum((n_pages * NUM + DEN - 1) // DEN, SINK + RECENT), n_pages)

    @triton.jit
    def _top_k(score_ptr, P, k, P_BLOCK: tl.constexpr, ROW: tl.constexpr):
        """Exact top-k of one row of page scores: (page offsets, kept mask, position in the ascending kept
        list). Bisection on order-preserving int32 keys between the row's smallest and largest finite score,
        stopped as soon as a threshold leaves exactly k keys above it. On the benchmark's random inputs that is
        8-15 counting passes at 512-8192 pages; started from the whole int32 range it took 16-24, most of
        them spent finding the scores' sign and exponent. Only rows whose search ended on tied keys pay for the
        second prefix sum that breaks the ties (0.1-0.4 us at 512-2048 pages on the H100). The kept pages'
        positions come from prefix sums within rows of ROW pages, then over the row totals: one prefix sum
        over the whole row took 13 us at 8,192 pages, and this is 1-30% faster on the H100 (most at 8,192
        and 16,384 pages)."""
        offs = tl.arange(0, P_BLOCK)
        s = tl.load(score_ptr + offs, mask=offs < P, other=float("-inf"), cache_modifier=".cg")
        bits = s.to(tl.int32, bitcast=True)
        key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # same order as the floats
        inf_key = 0x7F800000  # key of +inf (forced pages); -inf (past the length) has key -inf_key - 1
        finite = (key > -inf_key - 1) & (key < inf_key)
        # Forced pages never outnumber k, so count(key >= lo) >= k, and the k-th key is <= hi unless every
        # valid page is forced (no finite key: lo > hi, no pass, and kth = +inf keeps exactly those).
        lo = tl.min(tl.where(finite, key, inf_key), axis=0).to(tl.int64)
        hi = tl.max(tl.where(finite, key, -inf_key - 1), axis=0).to(tl.int64)
        exact = lo < lo  # set once a threshold leaves exactly k keys at or above it
        while lo < hi:
            mid = lo + (hi - lo + 1) // 2
            count = tl.sum((key >= mid.to(tl.int32)).to(tl.int32), axis=0)
            exact = exact | (count == k)
            lo = tl.where(count >= k, mid, lo)
            hi = tl.where(count > k, hi, tl.where(count == k, mid, mid - 1))
        kth = lo.to(tl.int32)  # either exactly k keys are >= kth, or kth is the k-th key itself (ties)
        take = key >= kth
        if not exact:  # keys tied at kth (or no pass ran): keep the lower page indices among them
            eq = key == kth
            need = k - tl.sum((key > kth).to(tl.int32), axis=0)
            take = (key > kth) | (eq & (tl.cumsum(eq.to(tl.int32), axis=0) <= need))
        per_row = tl.reshape(take.to(tl.int32), [P_BLOCK // ROW, ROW])
        row_sums = tl.sum(per_row, axis=1)
        before = tl.cumsum(row_sums, axis=0) - row_sums  # kept pages in earlier rows
        pos = tl.reshape(tl.cumsum(per_row, axis=1) + before[:, None], [P_BLOCK]) - 1
        return offs, take, pos

    @triton.jit
    def _score_kernel(
        q_ptr, k_ptr, kmin_ptr, kmax_ptr, len_ptr, score_ptr,
        sqb, sqh, skb, skh, skn, ssb, ssh, ssp, P,
        HKV: tl.constexpr, G: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr, BLOCK_P: tl.constexpr,
        SINK: tl.constexpr, RECENT: tl.constexpr,
    ):
        """Quest bounds of a block of pages of one (row, KV head), summed over its query group.

        The summaries and q are loaded before the row's length (pages past it are overwritten with -inf
        below), and the partial last page is refreshed after scoring: its score is forced anyway. So no
        load waits for another: on the H100 up to 2% faster at page 64 than length, refresh, then loads."""
        pid_bh = tl.program_id(0)
        b = pid_bh // HKV
        h = pid_bh % HKV
        offs_d = tl.arange(0, D)
        summ = b * ssb + h * ssh
        first = tl.program_id(1) * BLOCK_P
        offs_p = first + tl.arange(0, BLOCK_P)
        sp = summ + offs_p[:, None] * ssp + offs_d[None, :]
        lo = tl.load(kmin_ptr + sp, mask=(offs_p < P)[:, None], other=0.0).to(tl.float32)  # [BLOCK_P, D]
        hi = tl.load(kmax_ptr + sp, mask=(offs_p < P)[:, None], other=0.0).to(tl.float32)
        length = tl.load(len_ptr + b)
        score = tl.zeros([BLOCK_P], dtype=tl.float32)
        for g in tl.static_range(G):
            qg = tl.load(q_ptr + b * sqb + (h * G + g) * sqh + offs_d).to(tl.float32)
            score += tl.sum(tl.maximum(qg[None, :] * lo, qg[None, :] * hi), axis=1)
        n_pages = (length + PAGE - 1) // PAGE
        last = n_pages - 1
        if (last >= first) & (last < first + BLOCK_P):  # refresh the partial last page (<= PAGE keys)
            offs_t = last * PAGE + tl.arange(0, PAGE)
            tmask = offs_t < length
            kt = tl.load(k_ptr + b * skb + h * skh + offs_t[:, None] * skn + offs_d[None, :],
                         mask=tmask[:, None], other=0.0).to(tl.float32)
            tl.store(kmin_ptr + summ + last * ssp + offs_d,
                     tl.min(tl.where(tmask[:, None], kt, float("inf")), axis=0).to(kmin_ptr.dtype.element_ty))
            tl.store(kmax_ptr + summ + last * ssp + offs_d,
                     tl.max(tl.where(tmask[:, None], kt, float("-inf")), axis=0).to(kmax_ptr.dtype.element_ty))
        pmask = offs_p < n_pages
        forced = (offs_p < SINK) | (offs_p >= n_pages - RECENT)  # the last page's score is never used
        score = tl.where(forced, float("inf"), score)
        score = tl.where(pmask, score, float("-inf"))
        tl.store(score_ptr + pid_bh * P + offs_p, score, mask=offs_p < P)

    @triton.jit
    def _attend_merge_kernel(
        q_ptr, k_ptr, v_ptr, score_ptr, idx_ptr, len_ptr, o_ptr, ml_ptr, out_ptr, count_ptr,
        sqb, sqh, skb, skh, skn, svb, svh, svn, sob, soh, P, SLOTS, NSPLIT, scale,
        HKV: tl.constexpr, G: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr,
        BLOCK_N: tl.constexpr, SPLIT_SLOTS: tl.constexpr, S_BLOCK: tl.constexpr, G_CHUNK: tl.constexpr,
        P_BLOCK: tl.constexpr, ROW: tl.constexpr, NUM: tl.constexpr, DEN: tl.constexpr, SINK: tl.constexpr,
        RECENT: tl.constexpr, SELECT: tl.constexpr,
    ):
        """One (row, KV head, split): select the row's top-k pages, then online softmax of the G grouped
        queries over this split's SPLIT_SLOTS of them; the last split to finish merges the partials with
        log-sum-exp weights (Flash-Decoding).

        Every split repeats the selection (P scores, read from L2) and writes only its own share of the
        kept list: on the H100 that is faster than a selection launch of its own, which costs a launch gap
        and a round trip through memory before any attention starts.

        Without SELECT the kept list is given (-1 padded) and only attended: :func:`attend_pages`."""
        pid_bh = tl.program_id(0)
        split = tl.program_id(1)
        b = pid_bh // HKV
        h = pid_bh % HKV
        length = tl.load(len_ptr + b)
        first = split * SPLIT_SLOTS
        if SELECT:
            k = _kept(length, PAGE, NUM, DEN, SINK, RECENT)
            offs_p, take, pos = _top_k(score_ptr + pid_bh * P, P, k, P_BLOCK, ROW)
            tl.store(idx_ptr + pid_bh * SLOTS + pos, offs_p,
                     mask=take & (pos >= first) & (pos < first + SPLIT_SLOTS))  # pos < k <= SLOTS
            pad = first + tl.arange(0, SPLIT_SLOTS)
            tl.store(idx_ptr + pid_bh * SLOTS + pad, tl.full([SPLIT_SLOTS], -1, tl.int32),
                     mask=(pad >= k) & (pad < SLOTS))
            tl.debug_barrier()  # this program's share of the list is visible to all its threads
        else:
            k = SLOTS
        offs_g = tl.arange(0, G_PAD)
        offs_d = tl.arange(0, D)
        offs_n = tl.arange(0, BLOCK_N)
        q = tl.load(q_ptr + b * sqb + (h * G + offs_g)[:, None] * sqh + offs_d[None, :],
                    mask=(offs_g < G)[:, None], other=0.0)
        m_i = tl.full([G_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D], tl.float32)
        kbase = k_ptr + b * skb + h * skh
        vbase = v_ptr + b * svb + h * svh
        for s0 in range(0, SPLIT_SLOTS * PAGE, BLOCK_N):  # token offsets within this split's pages
            slot = split * SPLIT_SLOTS + (s0 + offs_n) // PAGE
            smask = slot < k
            page = tl.load(idx_ptr + pid_bh * SLOTS + slot, mask=smask, other=0)
            tok = page * PAGE + (s0 + offs_n) % PAGE
            tmask = smask & (tok < length)
            if not SELECT:
                tmask = tmask & (page >= 0)  # -1 pads a given list
            kt = tl.load(kbase + tok[:, None] * skn + offs_d[None, :], mask=tmask[:, None], other=0.0)
            vt = tl.load(vbase + tok[:, None] * svn + offs_d[None, :], mask=tmask[:, None], other=0.0)
            qk = tl.dot(q, tl.trans(kt)) * scale  # [G_PAD, BLOCK_N] fp32
            qk = tl.where(tmask[None, :], qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_safe)
            p = tl.exp(qk - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt)
            m_i = m_new
        part = (pid_bh * NSPLIT + split) * G + offs_g  # partials of the G real query heads only
        gmask = offs_g < G
        tl.store(o_ptr + part[:, None] * D + offs_d[None, :], acc, mask=gmask[:, None])
        tl.store(ml_ptr + part * 2, m_i, mask=gmask)
        tl.store(ml_ptr + part * 2 + 1, l_i, mask=gmask)
        tl.debug_barrier()
        ticket = tl.atomic_add(count_ptr + pid_bh, 1, sem="acq_rel", scope="gpu")
        if ticket == NSPLIT - 1:
            # G_CHUNK heads at once: one load round trip for the whole group where the tile fits (1.1-1.7 us
            # faster at batch 1 on the H100 than one head after another, each waiting for the last's store)
            offs_s = tl.arange(0, S_BLOCK)
            offs_c = tl.arange(0, G_CHUNK)
            for g0 in tl.static_range(0, G, G_CHUNK):
                heads = g0 + offs_c
                rows = (pid_bh * NSPLIT + offs_s)[:, None] * G + heads[None, :]  # [S_BLOCK, G_CHUNK]
                rmask = (offs_s < NSPLIT)[:, None] & (heads < G)[None, :]
                m = tl.load(ml_ptr + rows * 2, mask=rmask, other=float("-inf"), cache_modifier=".cg")
                l = tl.load(ml_ptr + rows * 2 + 1, mask=rmask, other=0.0, cache_modifier=".cg")
                o = tl.load(o_ptr + rows[:, :, None] * D + offs_d[None, None, :], mask=rmask[:, :, None],
                            other=0.0, cache_modifier=".cg")
                w = tl.where(m == float("-inf"), 0.0, tl.exp(m - tl.max(m, axis=0)[None, :]))
                out = tl.sum(o * w[:, :, None], axis=0) / tl.sum(l * w, axis=0)[:, None]  # [G_CHUNK, D]
                tl.store(out_ptr + b * sob + (h * G + heads)[:, None] * soh + offs_d[None, :],
                         out.to(out_ptr.dtype.element_ty), mask=(heads < G)[:, None])
            # No other program of this launch touches the ticket again and the next launch sees this store,
            # so a plain store re-arms it: 0.3-0.7 us faster than an atomic exchange on the H100.
            tl.store(count_ptr + pid_bh, 0)


@functools.lru_cache(maxsize=None)
def _programs(device: torch.device) -> int:
    """Attention programs to aim for: one per SM (the interpreter, which runs programs one by one: 64)."""
    if device.type != "cuda":
        return 64
    return torch.cuda.get_device_properties(device.index or 0).multi_processor_count


_COUNTERS: dict[torch.device, torch.Tensor] = {}


def _counters(device: torch.device, n: int) -> torch.Tensor:
    """Zeroed int32 tickets the kernels re-arm themselves; allocated once (outside any graph capture)."""
    have = _COUNTERS.get(device)
    if have is None or have.numel() < n:
        _COUNTERS[device] = have = torch.zeros(max(n, 1024), device=device, dtype=torch.int32)
    return have


def _use_triton(q: torch.Tensor, page_size: int, *tensors: torch.Tensor) -> bool:
    """The Triton kernels apply: on CUDA (or the interpreter), power-of-two head dim and page size, every
    tensor's last dim contiguous. Otherwise the plain-torch reference runs."""
    d = q.shape[-1]
    return (triton is not None and (q.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")
            and not d & (d - 1) and not page_size & (page_size - 1)
            and all(t.stride(-1) == 1 for t in (q, *tensors)))


def _split_plan(slots: int, heads: int, page_size: int, d: int, device: torch.device) -> tuple[int, int, int]:
    """Split-K shape of the attention launch: (keys per step, kept pages per split, splits per head).

    About one (row, head, split) program per SM, 16 KB of keys per step (128 keys at d 64). Measured on the
    H100 against four programs per SM with 64-key steps (page 64, batch 1 and 8, 32K and 128K): 1.5-8%
    faster, as fewer splits mean fewer repeated selections and a shorter merge. A split of at most 16K key
    elements (32 KB in bf16) is attended in one step, one round trip fewer: 1-5% faster at batch 1 / 32K
    and batch 8 / 4K; one 64 KB step lost 6% at batch 1 / 64K. Fewer, longer splits (for half or a quarter
    of the SMs) were slower at every shape but batch 1 / 16K, where they tied. Where one program per SM
    would attend a single step, two per SM with half the pages each are faster (batch 1 / 32K: 4% at page
    64, 2.5% at page 16); with longer splits they were up to 2% slower (batch 8, and batch 1 / 128K), four
    per SM 7-21% slower. The pages per split is a power of two so that a growing cache compiles few variants.
    """
    block_n = max(page_size, 8192 // d)
    per_block = block_n // page_size

    def pages_per_split(programs: int) -> int:
        return max(per_block, triton.next_power_of_2(-(-slots * heads // programs)))

    split_slots = pages_per_split(_programs(device))
    if split_slots * page_size * d <= 16384:
        split_slots = pages_per_split(2 * _programs(device))
        block_n = split_slots * page_size
    return block_n, split_slots, -(-slots // split_slots)


def _check(q, keys, values, kmin, kmax, lengths, page_size, sink_pages, recent_pages) -> None:
    if q.dim() != 3 or keys.dim() != 4 or values.shape != keys.shape:
        raise ValueError(f"want q [B, Hq, D], keys/values [B, Hkv, N, D]; got {tuple(q.shape)}, "
                         f"{tuple(keys.shape)}, {tuple(values.shape)}")
    b, hq, d = q.shape
    if keys.shape[0] != b or keys.shape[3] != d or hq % keys.shape[1]:
        raise ValueError(f"q {tuple(q.shape)} does not match keys {tuple(keys.shape)} (Hq must be a multiple of Hkv)")
    pages = -(-keys.shape[2] // page_size)
    if kmin.shape != kmax.shape or tuple(kmin.shape) != (b, keys.shape[1], pages, d):
        raise ValueError(f"summaries must be [B, Hkv, {pages}, D]; got {tuple(kmin.shape)}")
    if lengths.shape != (b,):
        raise ValueError(f"lengths must be [B]={b}; got {tuple(lengths.shape)}")
    if sink_pages < 0 or recent_pages < 1:
        raise ValueError(f"need sink_pages >= 0 and recent_pages >= 1; got {sink_pages}, {recent_pages}")


def sparse_decode(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kmin: torch.Tensor,
    kmax: torch.Tensor,
    lengths: torch.Tensor,
    *,
    page_size: int,
    budget: float,
    sink_pages: int = 1,
    recent_pages: int = 1,
    scale: float | None = None,
    return_pages: bool = False,
):
    """Sparse decode attention for one new token per row.

    q: [B, Hq, D]; keys, values: [B, Hkv, N, D] cache buffers (last dim contiguous; rows past
    ``lengths[b]`` are ignored, so static caches work); kmin/kmax: [B, Hkv, ceil(N/page_size), D]
    summaries (refreshed in place for each row's last page); lengths: [B] int tokens valid, the new
    token included. Nothing here syncs with the host, so a decode step using it can be CUDA-graph captured;
    calls share per-device ticket counters, so do not run two at once on different streams.
    Returns out [B, Hq, D] (and the kept pages [B, Hkv, slots] int32, ascending, -1 padded, if asked).
    Runs the Triton kernels on CUDA (or under TRITON_INTERPRET=1), the plain-torch reference otherwise.
    """
    _check(q, keys, values, kmin, kmax, lengths, page_size, sink_pages, recent_pages)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not _use_triton(q, page_size, keys, values, kmin, kmax):
        out, pages = sparse_decode_reference(q, keys, values, kmin, kmax, lengths, page_size=page_size,
                                             budget=budget, sink_pages=sink_pages, recent_pages=recent_pages,
                                             scale=scale)
        return (out, pages) if return_pages else out
    b, hq, d = q.shape
    hkv, p = kmin.shape[1], kmin.shape[2]
    g = hq // hkv
    frac = _budget_fraction(budget)
    slots = _slots(p, budget, sink_pages, recent_pages)
    lengths = lengths.to(torch.int32)
    scores = torch.empty(b, hkv, p, device=q.device, dtype=torch.float32)
    pages = torch.empty(b, hkv, slots, device=q.device, dtype=torch.int32)
    # Pages per scoring program: 32 where 64 would leave SMs idle (batch 1 at 32K: 0.4-0.6 us faster on the
    # H100, the same elsewhere).
    block_p = 64 if b * hkv * triton.cdiv(p, 64) >= _programs(q.device) else 32
    _score_kernel[(b * hkv, triton.cdiv(p, block_p))](
        q, keys, kmin, kmax, lengths, scores,
        q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
        kmin.stride(0), kmin.stride(1), kmin.stride(2), p,
        HKV=hkv, G=g, D=d, PAGE=page_size, BLOCK_P=block_p, SINK=sink_pages, RECENT=recent_pages, num_warps=4,
    )
    out = _attend(q, keys, values, scores, pages, lengths, page_size, scale, select=True,
                  NUM=frac.numerator, DEN=frac.denominator, SINK=sink_pages, RECENT=recent_pages)
    return (out, pages) if return_pages else out


def _attend(q, keys, values, scores, pages, lengths, page_size: int, scale: float, *, select: bool, **consts):
    """Launch the select-attend-merge kernel over `pages` [B, Hkv, slots]: filled by its selection from
    `scores` (select) or given, -1 padded. Returns out [B, Hq, D]."""
    b, hq, d = q.shape
    hkv, slots = pages.shape[1], pages.shape[2]
    g = hq // hkv
    p = scores.shape[-1]
    counts = _counters(q.device, b * hkv)
    block_n, split_slots, nsplit = _split_plan(slots, b * hkv, page_size, d, q.device)
    g_pad = max(16, triton.next_power_of_2(g))
    o_part = torch.empty(b * hkv * nsplit * g, d, device=q.device, dtype=torch.float32)
    ml_part = torch.empty(b * hkv * nsplit * g, 2, device=q.device, dtype=torch.float32)
    s_block = triton.next_power_of_2(nsplit)
    g_chunk = min(triton.next_power_of_2(g), max(1, 8192 // (s_block * d)))  # <= 64 partial floats per thread
    out = torch.empty(b, hq, d, device=q.device, dtype=q.dtype)
    p_block = triton.next_power_of_2(p)
    # 8 warps once a row holds 16,384 pages (128 scores per thread at 4): 24% faster at 128K / page 8 on the
    # H100; at 8,192 pages and below 4 warps were faster (the attention loop prefers them).
    warps = 8 if select and p_block >= 16384 else 4
    _attend_merge_kernel[(b * hkv, nsplit)](
        q, keys, values, scores, pages, lengths, o_part, ml_part, out, counts,
        q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), out.stride(0), out.stride(1),
        p, slots, nsplit, scale,
        HKV=hkv, G=g, G_PAD=g_pad, D=d, PAGE=page_size, BLOCK_N=block_n, SPLIT_SLOTS=split_slots,
        S_BLOCK=s_block, G_CHUNK=g_chunk, P_BLOCK=p_block, ROW=min(128, p_block), num_warps=warps, SELECT=select,
        **consts,
    )
    return out


def attend_pages(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    pages: torch.Tensor,
    lengths: torch.Tensor,
    *,
    page_size: int,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of q [B, Hq, D] over given pages [B, Hkv, S] (int32, -1 padded) only: the attend-and-merge
    half of :func:`sparse_decode`, same kernel, no scoring or selection (e.g. to time that half alone, or to
    reuse one selection). Runs the reference (:func:`attend_pages_reference`) where Triton does not apply."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not _use_triton(q, page_size, keys, values):
        return attend_pages_reference(q, keys, values, pages, lengths, page_size, scale)
    pages = pages.to(torch.int32).contiguous()
    dummy_scores = pages.new_empty(1, dtype=torch.float32)  # never read without selection
    return _attend(q, keys, values, dummy_scores, pages, lengths.to(torch.int32), page_size, scale, select=False,
                   NUM=1, DEN=1, SINK=0, RECENT=1)
