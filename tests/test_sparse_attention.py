"""Sparse-attention decode: the plain-torch reference against brute force and dense attention, the
Triton kernel under TRITON_INTERPRET=1 against the reference, and the Llama transform end to end."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sprig.kernels.page_summary import page_summary
from sprig.kernels.sparse_decode import (
    kept_pages,
    page_scores_reference,
    select_pages_reference,
    sparse_decode,
    sparse_decode_reference,
)

ROOT = Path(__file__).resolve().parents[1]


def _inputs(b=3, hq=12, hkv=4, n=203, d=32, page=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, n, d, generator=g).to(dtype)
    v = torch.randn(b, hkv, n, d, generator=g).to(dtype)
    lengths = torch.tensor([n - 37 * i for i in range(b)], dtype=torch.int32)
    kmin, kmax = page_summary(k, page, lengths)
    return q, k, v, lengths, kmin, kmax


def test_page_summary_matches_loops():
    _, k, _, lengths, kmin, kmax = _inputs(page=8)
    for b, n in enumerate(lengths.tolist()):
        for p in range(kmin.shape[2]):
            page = k[b, :, p * 8 : min((p + 1) * 8, n)]
            if page.shape[1] == 0:
                assert not kmin[b, :, p].any() and not kmax[b, :, p].any()
            else:
                torch.testing.assert_close(kmin[b, :, p], page.amin(dim=1), rtol=0, atol=0)
                torch.testing.assert_close(kmax[b, :, p], page.amax(dim=1), rtol=0, atol=0)


def test_scores_bound_every_key_in_the_page():
    """Quest's bound: for each query head, max over a page of q·k <= sum_d max(q_d min_d, q_d max_d)."""
    q, k, _, lengths, kmin, kmax = _inputs()
    b, hq, d = q.shape
    hkv, g = k.shape[1], hq // k.shape[1]
    qg = q.view(b, hkv, g, d)
    single = [page_scores_reference(qg[:, :, j], kmin, kmax, lengths, 16, 0, 0) for j in range(g)]  # G = 1
    for bi, n in enumerate(lengths.tolist()):
        for h in range(hkv):
            for j in range(g):
                dots = k[bi, h, :n] @ qg[bi, h, j]
                for p in range(-(-n // 16)):
                    assert dots[p * 16 : (p + 1) * 16].max() <= single[j][bi, h, p] + 1e-4


def test_selection_is_brute_force_top_k():
    q, _, _, lengths, kmin, kmax = _inputs(n=700)
    sink, recent, budget = 1, 2, 0.25
    scores = page_scores_reference(q, kmin, kmax, lengths, 16, sink, recent)
    n_pages = (lengths.long() + 15) // 16
    k = kept_pages(n_pages, budget, sink, recent)
    slots = int(kept_pages(torch.tensor(kmin.shape[2]), budget, sink, recent))
    pages = select_pages_reference(scores, k, slots)
    for b in range(q.shape[0]):
        kb, nb = int(k[b]), int(n_pages[b])
        assert kb == max(sink + recent, -(-nb // 4))
        for h in range(kmin.shape[1]):
            brute = sorted(torch.topk(scores[b, h, :nb], kb).indices.tolist())
            assert pages[b, h, :kb].tolist() == brute
            assert (pages[b, h, kb:] == -1).all()
            assert {0, nb - 2, nb - 1} <= set(brute)  # sink and recent pages are always kept


@pytest.mark.parametrize("lengths", [None, [203, 166, 129]])
def test_reference_equals_dense_when_budget_covers_every_page(lengths):
    q, k, v, _, _, _ = _inputs()
    lengths = torch.tensor(lengths or [k.shape[2]] * 3, dtype=torch.int32)
    kmin, kmax = page_summary(k, 16, lengths)
    out, pages = sparse_decode_reference(q, k, v, kmin, kmax, lengths, page_size=16, budget=1.0)
    for b, n in enumerate(lengths.tolist()):
        dense = F.scaled_dot_product_attention(q[b : b + 1, :, None], k[b : b + 1, :, :n], v[b : b + 1, :, :n],
                                               enable_gqa=True)[0, :, 0]
        torch.testing.assert_close(out[b], dense, rtol=1e-5, atol=1e-5)
        assert pages[b, 0, : -(-n // 16)].tolist() == list(range(-(-n // 16)))


def test_refresh_makes_a_stale_last_page_exact():
    q, k, v, lengths, kmin, kmax = _inputs()
    fresh = (kmin.clone(), kmax.clone())
    for b, n in enumerate(lengths.tolist()):
        kmin[b, :, (n - 1) // 16] = 5.0
        kmax[b, :, (n - 1) // 16] = -5.0
    sparse_decode_reference(q, k, v, kmin, kmax, lengths, page_size=16, budget=0.25)
    assert torch.equal(kmin, fresh[0]) and torch.equal(kmax, fresh[1])


def test_wrapper_rejects_bad_shapes():
    q, k, v, lengths, kmin, kmax = _inputs()
    with pytest.raises(ValueError, match="summaries"):
        sparse_decode(q, k, v, kmin[:, :, :-1], kmax[:, :, :-1], lengths, page_size=16, budget=0.25)
    with pytest.raises(ValueError, match="budget"):
        sparse_decode(q, k, v, kmin, kmax, lengths, page_size=16, budget=0.0)


@pytest.mark.skipif(sys.platform != "linux" and importlib.util.find_spec("triton") is None,
                    reason="triton has no wheels for this platform")
def test_triton_kernel_under_interpreter_matches_reference():
    """The kernels run on CPU tensors with TRITON_INTERPRET=1 (set before triton is imported, so in a
    child process). fp32 and fp16: the 3.6 interpreter computes bf16 tl.dot wrongly; bf16 is checked on GPU
    by sprig/eval/bench/sparse_attention.py. On Linux a missing triton fails rather than skips: the dev extra
    installs it, so its absence is a set-up bug that a skip would hide."""
    assert importlib.util.find_spec("triton") is not None, "triton is not installed: pip install -e '.[dev]'"
    script = textwrap.dedent("""
        import torch
        from sprig.kernels.page_summary import page_summary
        from sprig.kernels.sparse_decode import (_slots, _split_plan, attend_pages, attend_pages_reference,
                                           page_scores_reference, sparse_decode, sparse_decode_reference)
        splits = []
        for dtype, (b, hq, hkv, n, d, page, budget), ties in [
            (torch.float32, (2, 8, 2, 300, 64, 16, 0.25), False),
            (torch.float16, (1, 9, 3, 777, 32, 8, 0.125), False),
            (torch.float32, (2, 4, 1, 77, 32, 8, 1.0), False),
            (torch.float32, (2, 4, 2, 1200, 32, 4, 0.125), True),
            (torch.float32, (2, 8, 2, 4100, 64, 16, 0.25), False),  # several splits per head: shares, merge
            (torch.float32, (2, 8, 2, 500, 32, 16, 0.0625), False),  # the sink and recent pages fill the budget
            (torch.float32, (1, 4, 2, 40, 32, 16, 0.25), False),  # every page forced: no finite score
            (torch.float32, (1, 4, 1, 8192, 128, 16, 0.25), False),  # 32 splits at d 128: merged 2 heads at a time
        ]:
            splits.append(_split_plan(_slots(-(-n // page), budget, 1, 2), b * hkv, page, d, torch.device("cpu"))[2])
            torch.manual_seed(n)
            q = torch.randn(b, hq, d).to(dtype)
            k, v = torch.randn(b, hkv, n, d).to(dtype), torch.randn(b, hkv, n, d).to(dtype)
            if ties:  # small integers: many pages share a score, so the lower-index rule decides
                q, k = q.sign(), k.round().clamp(-1, 1)
            lengths = torch.tensor([n - 41 * i for i in range(b)], dtype=torch.int32)
            kmin, kmax = page_summary(k, page, lengths)
            opts = dict(page_size=page, budget=budget, sink_pages=1, recent_pages=2)
            kmin_t, kmax_t = kmin.clone(), kmax.clone()
            for row, n_row in enumerate(lengths.tolist()):  # a stale last page: the kernel must refresh it
                kmin_t[row, :, (n_row - 1) // page], kmax_t[row, :, (n_row - 1) // page] = 7.0, -7.0
            out, pages = sparse_decode(q, k, v, kmin_t, kmax_t, lengths, return_pages=True, **opts)
            ref, ref_pages = sparse_decode_reference(q, k, v, kmin, kmax, lengths, **opts)
            assert torch.equal(pages, ref_pages), (pages, ref_pages)
            if ties:
                row = page_scores_reference(q, kmin, kmax, lengths, page, 1, 2)[0, 0]
                row = row[row.isfinite()]
                assert row.unique().numel() < row.numel() // 2  # ties were exercised
            assert torch.equal(kmin_t, kmin) and torch.equal(kmax_t, kmax)
            err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
            assert err < (1e-5 if dtype == torch.float32 else 2e-3), err
        assert max(splits) > 1, splits
        # the attend half alone, over given pages: any order, -1 pads anywhere, a partial last page, 8 splits
        b, hkv, n, d, page = 2, 2, 4100, 64, 16
        q, k, v = torch.randn(b, 4 * hkv, d), torch.randn(b, hkv, n, d), torch.randn(b, hkv, n, d)
        lengths = torch.tensor([n, n - 41], dtype=torch.int32)
        given = torch.stack([torch.randperm(-(-n // page))[:64] for _ in range(b * hkv)]).view(b, hkv, 64)
        given[..., ::7] = -1
        given[1, :, 0] = (n - 42) // page
        out = attend_pages(q, k, v, given.to(torch.int32), lengths, page_size=page)
        ref = attend_pages_reference(q, k, v, given, lengths, page, d ** -0.5)
        err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
        assert err < 1e-5, err
        print("ok")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=256, vocab_size=300, head_dim=32)
    return LlamaForCausalLM(cfg).eval()


def test_transform_with_full_budget_decodes_like_dense(tiny_llama, monkeypatch):
    import sprig.rag.sparse_attention as sa

    calls = []
    monkeypatch.setattr(sa, "sparse_decode", lambda *a, **kw: calls.append(1) or sparse_decode(*a, **kw))
    ids = torch.randint(0, 300, (1, 200), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sa.remove_sparse_attention(tiny_llama)
        dense = tiny_llama.generate(ids, max_new_tokens=20, do_sample=False)  # crosses a page boundary
        sa.apply_sparse_attention(tiny_llama, page_size=16, budget=1.0, dense_layers=1)
        sparse = tiny_llama.generate(ids, max_new_tokens=20, do_sample=False)
        sa.remove_sparse_attention(tiny_llama)
    assert torch.equal(dense, sparse)
    assert len(calls) == 19 * 2  # decode steps x sparse layers; prefill and layer 0 stay dense


def test_remove_puts_back_the_dense_attention_the_model_had(tiny_llama):
    """A model loaded with eager attention (sliding-window models on CUDA) gets eager back, not SDPA."""
    from sprig.rag.sparse_attention import apply_sparse_attention, remove_sparse_attention

    before = tiny_llama.config._attn_implementation
    try:
        tiny_llama.config._attn_implementation = "eager"
        apply_sparse_attention(tiny_llama, page_size=16, budget=0.5, dense_layers=1)
        apply_sparse_attention(tiny_llama, page_size=16, budget=0.5, dense_layers=1)  # twice: still remembers eager
        remove_sparse_attention(tiny_llama)
        assert tiny_llama.config._attn_implementation == "eager"
    finally:
        tiny_llama.config._attn_implementation = before
        tiny_llama.sprig_dense_attention = before


def test_transform_keeps_first_layers_dense_and_validates(tiny_llama):
    from sprig.rag.sparse_attention import (
        apply_sparse_attention,
        remove_sparse_attention,
    )

    apply_sparse_attention(tiny_llama, page_size=16, budget=0.125, dense_layers=2)
    marked = [layer.self_attn.sprig_pages is not None for layer in tiny_llama.model.layers]
    assert marked == [False, False, True]
    remove_sparse_attention(tiny_llama)
    with pytest.raises(ValueError, match="power of two"):
        apply_sparse_attention(tiny_llama, page_size=12)
    with pytest.raises(ValueError, match="budget"):
        apply_sparse_attention(tiny_llama, budget=1.5)
