"""GPU benchmark of sparse-attention decode (sprig/kernels/sparse_decode.py) against dense SDPA decode.

Sections, each written to OUT/sparse_attention.json as it finishes:
  correctness  Triton kernel vs the plain-torch reference on fresh random inputs (bf16 and fp16);
  copy_bw      device-to-device copy bandwidth (bytes read + written), the memory ceiling;
  op           attention-op latency, dense SDPA (eager and CUDA-graph) vs sparse (eager and CUDA-graph),
               over contexts x batches x budgets; the inputs rotate over enough buffers to exceed L2;
  floor        the same op with scoring and selection taken away (attend_pages over the pages a call kept)
               beside one copy of as many bytes as that attention reads: what attention alone costs;
  e2e          decode tokens/s at one context for a ~1B Llama-architecture model with random weights,
               dense vs sparse (sprig/rag/sparse_attention.py transform), each step captured in a CUDA graph.

Run: python -m sprig.eval.bench.sparse_attention --out DIR [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from sprig.kernels.page_summary import page_summary
from sprig.kernels.sparse_decode import (
    attend_pages,
    attend_pages_reference,
    kept_pages,
    sparse_decode,
    sparse_decode_reference,
)

HQ, HKV, D = 32, 8, 64  # Llama-3.2-1B attention shape


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def check_correctness() -> list[dict]:
    """Triton vs reference: same kept pages, same refreshed summaries, output rel. error <= 1e-2."""
    cases = [  # B, Hq, Hkv, N, D, page, budget, dtype
        (1, 32, 8, 4096 + 37, 64, 16, 1 / 8, torch.bfloat16),
        (4, 32, 8, 16384, 64, 16, 1 / 16, torch.bfloat16),
        (3, 12, 4, 5000, 128, 32, 1 / 4, torch.float16),
        (2, 9, 3, 2048 + 5, 64, 16, 1 / 8, torch.bfloat16),
        (8, 32, 8, 32768, 64, 16, 1 / 8, torch.bfloat16),
        (1, 32, 8, 131072 - 3, 64, 16, 1 / 8, torch.bfloat16),  # 8192 pages per row
        (2, 32, 8, 131072, 64, 64, 1 / 8, torch.float16),
    ]
    rows = []
    for b, hq, hkv, n, d, page, budget, dtype in cases:
        q = torch.randn(b, hq, d, device="cuda", dtype=dtype)
        k = torch.randn(b, hkv, n, d, device="cuda", dtype=dtype)
        v = torch.randn(b, hkv, n, d, device="cuda", dtype=dtype)
        lengths = torch.tensor([n - 97 * i for i in range(b)], device="cuda", dtype=torch.int32)
        kmin, kmax = page_summary(k, page, lengths)
        # the last page of each row gets a stale summary: kernel and reference must both refresh it
        for t, fill in ((kmin, 7.0), (kmax, -7.0)):
            for i, ln in enumerate(lengths.tolist()):
                t[i, :, (ln - 1) // page] = fill
        kmin_t, kmax_t, kmin_r, kmax_r = kmin.clone(), kmax.clone(), kmin.clone(), kmax.clone()
        opts = dict(page_size=page, budget=budget, sink_pages=1, recent_pages=1)
        out, pages = sparse_decode(q, k, v, kmin_t, kmax_t, lengths, return_pages=True, **opts)
        torch.cuda.synchronize()
        ref, ref_pages = sparse_decode_reference(q, k, v, kmin_r, kmax_r, lengths, **opts)
        same_pages_ref = attend_pages_reference(q, k, v, pages, lengths, page, d**-0.5)
        row = dict(
            shape=dict(B=b, Hq=hq, Hkv=hkv, N=n, D=d), page=page, budget=budget, dtype=str(dtype),
            finite=bool(torch.isfinite(out).all()),
            summary_refresh_equal=bool(torch.equal(kmin_t, kmin_r) and torch.equal(kmax_t, kmax_r)),
            pages_mismatch=float((pages != ref_pages).float().mean()),
            rel_err_same_pages=rel_err(out, same_pages_ref),
            rel_err_reference=rel_err(out, ref),
        )
        # budget 1: every page kept, so the kernel must equal dense SDPA on equal-length rows
        full = torch.full((b,), n, device="cuda", dtype=torch.int32)
        dense = F.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True)[:, :, 0]
        kmin, kmax = page_summary(k, page)
        all_pages = sparse_decode(q, k, v, kmin, kmax, full, page_size=page, budget=1.0)
        row["rel_err_budget1_vs_sdpa"] = rel_err(all_pages, dense)
        row["ok"] = (row["finite"] and row["summary_refresh_equal"] and row["rel_err_same_pages"] <= 1e-2
                     and row["rel_err_budget1_vs_sdpa"] <= 1e-2 and row["pages_mismatch"] <= 1e-3)
        rows.append(row)
    return rows


def copy_bandwidth() -> float:
    """Bytes read + written per second of a 2 GiB device-to-device copy."""
    src = torch.randn(2**29, device="cuda")  # 2 GiB fp32
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    del src, dst
    return 2 * 2**31 / (ms * 1e-3)


def graph_ms(fn, reps: int = 50) -> float:
    """Median replay time of fn captured in one CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return do_bench(graph.replay, warmup=25, rep=reps * 2, return_mode="median")


def op_sweep(contexts, batches, budgets, page_sizes, copy_bw: float) -> list[dict]:
    rows = []
    for n in contexts:
        for b in batches:
            kv_bytes = 2 * b * HKV * n * D * 2
            sets = max(1, min(32, math.ceil(256e6 / kv_bytes)))  # rotate buffers past the 50 MB L2
            data = []
            for _ in range(sets):
                k = torch.randn(b, HKV, n, D, device="cuda", dtype=torch.bfloat16)
                data.append(dict(q=torch.randn(b, HQ, 1, D, device="cuda", dtype=torch.bfloat16), k=k,
                                 v=torch.randn_like(k), lengths=torch.full((b,), n, device="cuda", dtype=torch.int32)))

            def dense():
                for x in data:
                    F.scaled_dot_product_attention(x["q"], x["k"], x["v"], enable_gqa=True)

            x0 = data[0]
            # median of 3: one eager call at batch 1 is host-bound and once read 40% slow
            dense_single = statistics.median(
                do_bench(lambda: F.scaled_dot_product_attention(x0["q"], x0["k"], x0["v"], enable_gqa=True),
                         warmup=25, rep=100, return_mode="median") for _ in range(3))
            dense_eager = do_bench(dense, warmup=25, rep=100, return_mode="median") / sets
            dense_graph = graph_ms(dense) / sets
            base = dict(context=n, batch=b, sets=sets, kv_bytes=kv_bytes, dense_single_call_ms=dense_single,
                        dense_eager_ms=dense_eager,
                        dense_graph_ms=dense_graph, dense_gbps=kv_bytes / dense_eager / 1e6)
            rows.append(dict(base, kind="dense"))
            for page in page_sizes:
                for x in data:
                    x["kmin"], x["kmax"] = page_summary(x["k"], page)
                for budget in budgets:
                    opts = dict(page_size=page, budget=budget, sink_pages=1, recent_pages=1)

                    def sparse():
                        for x in data:
                            sparse_decode(x["q"][:, :, 0], x["k"], x["v"], x["kmin"], x["kmax"], x["lengths"], **opts)

                    sparse()
                    eager = do_bench(sparse, warmup=25, rep=100, return_mode="median") / sets
                    graph = graph_ms(sparse) / sets
                    pages = -(-n // page)
                    kept = int(kept_pages(torch.tensor(pages), budget, 1, 1))
                    moved = b * HKV * (2 * pages * D * 2 + 2 * kept * page * D * 2 + 2 * pages * 4)
                    rows.append(dict(base, kind="sparse", page=page, budget=budget, kept_pages=kept,
                                     sparse_eager_ms=eager, sparse_graph_ms=graph, bytes=moved,
                                     sparse_gbps=moved / graph / 1e6, frac_copy_bw=moved / graph / 1e-3 / copy_bw,
                                     speedup_vs_dense_single_call=dense_single / graph,
                                     speedup_vs_dense_eager=dense_eager / graph,
                                     speedup_vs_dense_graph=dense_graph / graph))
                    print(f"N={n:6d} B={b} page={page} budget=1/{round(1 / budget):2d} dense 1-call {dense_single:.4f} "
                          f"rotated {dense_eager:.4f} "
                          f"(graph {dense_graph:.4f}) sparse {eager:.4f} graph {graph:.4f} ms "
                          f"x{dense_single / graph:.2f} (vs dense graph x{dense_graph / graph:.2f})", flush=True)
            del data
            torch.cuda.empty_cache()
    return rows


def kernel_breakdown(cases) -> list[dict]:
    """Device time of each kernel of one sparse call (profiler, eager launches): where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    rows = []
    for n, b, page, budget in cases:
        q = torch.randn(b, HQ, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, HKV, n, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        lengths = torch.full((b,), n, device="cuda", dtype=torch.int32)
        kmin, kmax = page_summary(k, page)
        call = lambda: sparse_decode(q, k, v, kmin, kmax, lengths, page_size=page, budget=budget)  # noqa: E731
        call()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(50):
                call()
            torch.cuda.synchronize()
        times = {e.key: e.device_time_total / e.count / 1e3 for e in prof.key_averages() if e.device_time_total > 0}
        rows.append(dict(context=n, batch=b, page=page, budget=budget, kernel_ms=times))
        print("breakdown", n, b, page, {key[:40]: round(t, 4) for key, t in times.items()}, flush=True)
    return rows


def attention_floor(cases, budget: float = 1 / 8) -> list[dict]:
    """Full op vs its attend-and-merge half alone (the kept pages given) vs a copy of the kept K/V bytes, each
    in a CUDA graph over rotated buffers, and one eager dense call: how much of the op is attention alone."""
    rows = []
    for n, b, page in cases:
        sets = max(1, min(32, math.ceil(256e6 / (2 * b * HKV * n * D * 2))))
        data = []
        for _ in range(sets):
            k = torch.randn(b, HKV, n, D, device="cuda", dtype=torch.bfloat16)
            x = dict(q=torch.randn(b, HQ, D, device="cuda", dtype=torch.bfloat16), k=k, v=torch.randn_like(k),
                     lengths=torch.full((b,), n, device="cuda", dtype=torch.int32))
            x["kmin"], x["kmax"] = page_summary(k, page)
            out, x["pages"] = sparse_decode(x["q"], k, x["v"], x["kmin"], x["kmax"], x["lengths"], page_size=page,
                                            budget=budget, return_pages=True)
            alone = attend_pages(x["q"], k, x["v"], x["pages"], x["lengths"], page_size=page)
            assert rel_err(alone, out) < 1e-6, "attend_pages must repeat the op's attention"
            kept_bytes = 2 * int((x["pages"] >= 0).sum()) * page * D * 2
            x["src"] = torch.empty(kept_bytes // 4, device="cuda", dtype=torch.bfloat16)  # copy reads and writes
            x["dst"] = torch.empty_like(x["src"])  # half each: as many bytes as the attention reads
            data.append(x)

        def full():
            for x in data:
                sparse_decode(x["q"], x["k"], x["v"], x["kmin"], x["kmax"], x["lengths"], page_size=page,
                              budget=budget)

        def attention_alone():
            for x in data:
                attend_pages(x["q"], x["k"], x["v"], x["pages"], x["lengths"], page_size=page)

        def copy():
            for x in data:
                x["dst"].copy_(x["src"])

        x0 = data[0]
        dense = statistics.median(
            do_bench(lambda: F.scaled_dot_product_attention(x0["q"][:, :, None], x0["k"], x0["v"], enable_gqa=True),
                     warmup=25, rep=100, return_mode="median") for _ in range(3))
        row = dict(context=n, batch=b, page=page, budget=budget, sets=sets, kept_kv_bytes=kept_bytes,
                   dense_single_call_ms=dense, **{f"{name}_graph_ms": graph_ms(f) / sets for name, f in
                                                 (("full", full), ("attention_alone", attention_alone), ("copy", copy))})
        row |= {f"{name}_vs_dense": dense / row[f"{name}_graph_ms"] for name in ("full", "attention_alone", "copy")}
        rows.append(row)
        print("floor", {key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items()}, flush=True)
        del data
        torch.cuda.empty_cache()
    return rows


class StaticKV:
    """Minimal preallocated KV cache for one decode position (the transformers Cache.update contract)."""

    def __init__(self, layers: int, b: int, n: int, dtype: torch.dtype):
        self.keys = [torch.randn(b, HKV, n, D, device="cuda", dtype=dtype) for _ in range(layers)]
        self.values = [torch.randn(b, HKV, n, D, device="cuda", dtype=dtype) for _ in range(layers)]
        self.pos = torch.tensor([n - 1], device="cuda")

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.pos, key_states)
        self.values[layer_idx].index_copy_(2, self.pos, value_states)
        return self.keys[layer_idx], self.values[layer_idx]


def llama_1b():
    """Llama-3.2-1B-shaped model with random bf16 weights on the GPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=HQ,
                      num_key_value_heads=HKV, head_dim=D, vocab_size=128256, tie_word_embeddings=True,
                      max_position_embeddings=131072, rope_theta=500000.0)
    torch.manual_seed(0)
    with torch.device("cuda"):
        return LlamaForCausalLM(cfg).to(torch.bfloat16).eval()


def e2e(model, context: int, batch: int, budget: float, page: int, dense_layers: int) -> dict:
    """One decode step at `context` cached tokens (random cache), dense vs the sparse transform."""
    from sprig.rag.sparse_attention import (
        apply_sparse_attention,
        remove_sparse_attention,
    )

    cfg = model.config
    cache = StaticKV(cfg.num_hidden_layers, batch, context, torch.bfloat16)
    ids_init = torch.randint(0, cfg.vocab_size, (batch, 1), device="cuda")
    ids = ids_init.clone()
    pos = torch.full((batch, 1), context - 1, device="cuda")
    logits_out = torch.empty(batch, cfg.vocab_size, device="cuda", dtype=torch.bfloat16)

    @torch.no_grad()
    def step():
        h = model.model.embed_tokens(ids)
        pe = model.model.rotary_emb(h, position_ids=pos)
        for layer in model.model.layers:
            h = layer(h, attention_mask=None, position_ids=pos, past_key_values=cache, use_cache=True,
                      position_embeddings=pe)
            h = h[0] if isinstance(h, tuple) else h
        logits = model.lm_head(model.model.norm(h))[:, -1]
        logits_out.copy_(logits)
        ids.copy_(logits.argmax(-1, keepdim=True))

    def timed(name: str) -> dict:
        ids.copy_(ids_init)
        step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        torch.cuda.synchronize()
        eager = (time.perf_counter() - t0) / 20 * 1e3
        graph = graph_ms(step, reps=30)
        ids.copy_(ids_init)  # the same input token for every variant's logits
        step()
        return {f"{name}_eager_ms": eager, f"{name}_graph_ms": graph, f"{name}_tokens_per_s": batch / graph * 1e3,
                f"{name}_logits": logits_out.float().clone()}

    def summarise(budget_: float):
        apply_sparse_attention(model, page_size=page, budget=budget_, dense_layers=dense_layers)
        for layer in model.model.layers:
            if layer.self_attn.sprig_pages is not None:
                layer.self_attn.sprig_pages.rebuild(cache.keys[layer.self_attn.layer_idx], pos[:, -1].int() + 1)

    res = dict(context=context, batch=batch, budget=budget, page=page, dense_layers=dense_layers,
               params=sum(p.numel() for p in model.parameters()))
    remove_sparse_attention(model)
    res.update(timed("dense"))
    summarise(budget)
    res.update(timed("sparse"))
    summarise(1.0)  # every page kept: must reproduce the dense logits
    full = timed("budget1")
    res["budget1_vs_dense_logits_rel_err"] = rel_err(full["budget1_logits"], res["dense_logits"])
    res["sparse_vs_dense_logits_rel_err"] = rel_err(res["sparse_logits"], res["dense_logits"])
    for key in ("dense_logits", "sparse_logits"):
        del res[key]
    res["speedup_graph"] = res["dense_graph_ms"] / res["sparse_graph_ms"]
    res["speedup_eager"] = res["dense_eager_ms"] / res["sparse_eager_ms"]
    remove_sparse_attention(model)
    del cache
    torch.cuda.empty_cache()
    return res


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, b in zip(axes, (1, 8)):
        dense = [r for r in rows if r["kind"] == "dense" and r["batch"] == b]
        ax.plot([r["context"] for r in dense], [r["dense_single_call_ms"] for r in dense], "k-o",
                label="dense SDPA (1 eager call)")
        ax.plot([r["context"] for r in dense], [r["dense_graph_ms"] for r in dense], "k--", label="dense SDPA (graph)")
        for page, style in ((16, "-o"), (64, ":s")):
            for budget in sorted({r["budget"] for r in rows if r["kind"] == "sparse"}, reverse=True):
                sp = [r for r in rows if r["kind"] == "sparse" and r["batch"] == b and r["budget"] == budget
                      and r["page"] == page]
                ax.plot([r["context"] for r in sp], [r["sparse_graph_ms"] for r in sp], style,
                        label=f"sparse 1/{round(1 / budget)}, page {page} (graph)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel("attention op latency (ms)")
        ax.set_title(f"batch {b}, 32 q / 8 kv heads, d=64, bf16")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="one context per batch, for a smoke run")
    ap.add_argument("--skip", nargs="*", default=[], choices=["correctness", "op", "sweep", "floor", "breakdown", "e2e"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                        host=platform.node())
    out = args.out / "sparse_attention.json"

    def save():
        out.write_text(json.dumps(result, indent=1))

    if "correctness" not in args.skip:
        result["correctness"] = check_correctness()
        save()
        for r in result["correctness"]:
            print("correctness", {k: r[k] for k in ("shape", "dtype", "budget", "pages_mismatch",
                                                    "rel_err_same_pages", "rel_err_budget1_vs_sdpa", "ok")}, flush=True)
    result["copy_bw_Bps"] = copy_bandwidth()
    print(f"copy bandwidth {result['copy_bw_Bps'] / 1e12:.2f} TB/s", flush=True)
    save()
    if "op" not in args.skip:
        contexts = [32768] if args.quick else [4096, 16384, 32768, 65536, 131072]
        if "sweep" not in args.skip:
            result["op"] = op_sweep(contexts, [1, 8], [1 / 4, 1 / 8, 1 / 16], [16, 64], result["copy_bw_Bps"])
            save()
        result["op_pages"] = op_sweep([32768, 131072], [1, 8], [1 / 8], [8, 32], result["copy_bw_Bps"])
        save()
        if "sweep" not in args.skip:
            plot(result["op"], args.out / "sparse_attention.png")
    if "floor" not in args.skip:
        result["floor"] = attention_floor([(32768, 8, 64), (131072, 1, 64), (32768, 1, 64), (131072, 8, 64),
                                           (32768, 8, 16), (131072, 1, 16)])
        save()
    if "breakdown" not in args.skip:
        result["breakdown"] = kernel_breakdown([(32768, 1, 16, 1 / 8), (32768, 8, 16, 1 / 8), (131072, 1, 16, 1 / 8),
                                                (32768, 1, 64, 1 / 8), (32768, 8, 64, 1 / 8), (131072, 1, 64, 1 / 8),
                                                (131072, 8, 64, 1 / 8)])
        save()
    if "e2e" not in args.skip:
        model = llama_1b()
        result["e2e"] = []
        for batch, page in ((8, 16), (8, 32), (8, 64), (1, 16), (1, 64)):
            r = e2e(model, 32768, batch, 1 / 8, page, 2)
            result["e2e"].append(r)
            save()
            print("e2e", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)


if __name__ == "__main__":
    main()
