"""SPLADE document encoding on one GPU: a plain transformers loop, sentence-transformers' SparseEncoder and sprig's
fused path, end to end (tokenisation and SparseVec conversion included), on the same texts in one run.

    python -m sprig.eval.bench.splade_gpu --data /path/to/scifact --splade-tiny /path/to/cognition/model \\
        --docs 20000 --out splade-gpu.json

Models: "bert-base", a BertForMaskedLM with a bert-base config and random weights whose MLM bias is shifted
so that about --target-nnz ids per document are positive (no trained BERT-base SPLADE exists offline; random
weights alone give ~30,000 non-zeros per document), saved once to a temp folder that all three paths load;
and SPLADE-tiny from its local folder. Paths:

* plain: AutoModelForMaskedLM, full [batch, tokens, vocab] logits, log1p(ReLU) times the mask, max over
  tokens (SPLADE's reference code), rows to SparseVecs on the CPU; batches in input order, padded.
* sentence-transformers: SparseEncoder (MLMTransformer + SpladePooling("max")) encode_document, sparse
  tensor to SparseVecs; on the first --st-docs texts (it is far slower).
* sprig: the encoder's packed pipeline (sprig.encoders.packed, which `sprig index --device cuda` runs): a
  tokenizer thread packs documents into variable-length batches (--token-budget tokens, no padding; attention
  by torch's flash varlen kernel) or, where that is missing or with --padded, length-sorted padded buckets (the
  padding fraction is reported); the main thread runs the body and splade_pool (the fused Triton head on CUDA);
  a conversion thread compacts the non-zeros on the GPU on its own stream and builds SparseVecs.

Reported per model and path: docs/s, mean non-zeros per document, peak GPU memory, agreement with the plain
path on the first documents; for sprig a breakdown (tokenise CPU s, GPU body and head s by CUDA events, on CPU by
the clock, conversion CPU s, time the GPU loop waited for the tokenizer); and the head alone (fused kernel vs the torch
chunked splade_pool on one packed batch of real token states).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from sprig.core.types import SparseVec
from sprig.encoders.packed import PackedEncoder, Stats, available, use_varlen
from sprig.encoders.splade import _detach_output_projection, load_masked_lm, splade_pool, to_sparse_vecs
from sprig.kernels import splade_head


def read_texts(data: Path, n: int) -> list[str]:
    """BEIR corpus texts (title, a space, text), repeated until there are ``n``."""
    with open(data / "corpus.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts = [f"{r.get('title', '')} {r['text']}".strip() for r in rows]
    return [texts[i % len(texts)] for i in range(n)]


def default_splade_tiny() -> str:
    spec = importlib.util.find_spec("cognition")  # located, not imported
    return str(Path(spec.submodule_search_locations[0]) / "model") if spec else ""


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device == "cuda" else None


# ----------------------------------------------------------------------------------------------------------
# The random BERT-base masked LM, made sparse
# ----------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def build_bert_base(folder: Path, tokenizer_dir: str, texts: list[str], max_length: int, target_nnz: int,
                    device: str, layers: int) -> dict:
    """Random BertForMaskedLM (bert-base config) with its MLM bias lowered by one constant c, chosen on
    calibration texts so that a document's mean count of ids with max_t logit > c is ``target_nnz``."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    with torch.device(device):
        model = BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, num_hidden_layers=layers)).eval()
    weight, bias = model.cls.predictions.decoder.weight, model.cls.predictions.bias
    calib = texts[:: max(1, len(texts) // 32)][:32]
    batch = tok(calib, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    hidden = model.cls.predictions.transform(model.bert(**batch).last_hidden_state)
    mask = batch["attention_mask"].bool()
    logits = hidden[mask] @ weight.T + bias  # [tokens, vocab] float32, once
    peaks = torch.segment_reduce(logits, "max", lengths=mask.sum(1), axis=0)
    shift = float(torch.quantile(peaks.flatten()[:: max(1, peaks.numel() // 2_000_000)].float(), 1 - target_nnz / peaks.shape[1]))
    bias -= shift
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {"bias_shift": round(shift, 4), "calibration_docs": len(calib), "layers": layers}


# ----------------------------------------------------------------------------------------------------------
# (a) plain transformers loop, (b) sentence-transformers
# ----------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def run_plain(folder: str, texts: list[str], max_length: int, batch_size: int, device: str, dtype) -> tuple[list[SparseVec], dict]:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder, dtype=dtype).to(device).eval()

    def encode(chunk: list[str]) -> list[SparseVec]:
        batch = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        logits = model(**batch).logits
        pooled = torch.max(torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1), dim=1).values
        return to_sparse_vecs(pooled)

    encode(texts[:batch_size])  # warm-up
    peak_reset(device)
    sync(device)
    t0 = time.perf_counter()
    out = [v for i in range(0, len(texts), batch_size) for v in encode(texts[i : i + batch_size])]
    seconds = time.perf_counter() - t0
    return out, {"docs": len(texts), "seconds": round(seconds, 3), "docs_per_s": round(len(texts) / seconds, 1),
                 "peak_gib": peak_gib(device), "batch_size": batch_size}


def run_sentence_transformers(folder: str, texts: list[str], max_length: int, batch_size: int, device: str,
                              dtype) -> tuple[list[SparseVec], dict]:
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(folder, device=device).to(dtype)  # a bare masked LM: MLMTransformer + SpladePooling("max")
    model.max_seq_length = max_length

    def encode(chunk: list[str]) -> list[SparseVec]:
        emb = model.encode_document(chunk, batch_size=batch_size, convert_to_sparse_tensor=True).coalesce().cpu()
        rows, cols = emb.indices().numpy()
        vals = emb.values().float().numpy()
        bounds = np.searchsorted(rows, np.arange(len(chunk) + 1))
        return [SparseVec(cols[a:b].astype(np.int32), vals[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    encode(texts[:batch_size])
    peak_reset(device)
    sync(device)
    t0 = time.perf_counter()
    out = encode(texts)
    seconds = time.perf_counter() - t0
    return out, {"docs": len(texts), "seconds": round(seconds, 3), "docs_per_s": round(len(texts) / seconds, 1),
                 "peak_gib": peak_gib(device), "batch_size": batch_size,
                 "modules": [type(m).__name__ for m in model]}


# ----------------------------------------------------------------------------------------------------------
# (c) sprig: packed batches, fused head, overlapped tokenisation and conversion
# ----------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def run_sprig(folder: str, texts: list[str], max_length: int, token_budget: int, device: str, packed: bool, how: str = "lists",
              dummy_mask: bool = False, compile_body: bool = False) -> tuple[list[SparseVec], dict, tuple]:
    """The encoder's pipeline (sprig.encoders.packed, what `sprig index --device cuda` runs), with its switches."""
    tok, model = load_masked_lm(folder, device)  # the encoder's loader: bf16 on CUDA, float32 on CPU
    if packed:
        use_varlen(model)
    weight, bias = _detach_output_projection(model)
    # torch.compile fuses the body's elementwise work (bias, GELU, LayerNorm, residuals) that eager runs as separate
    # memory-bound kernels between the GEMMs; dynamic shapes, since every packed batch has its own token count.
    forward = torch.compile(model, dynamic=True) if compile_body else model
    head = lambda hidden, lengths: splade_pool(hidden, lengths, weight, bias, 4096)  # noqa: E731
    pipeline = PackedEncoder(model, tok, head, device, token_budget, packed, how, dummy_mask, forward)
    sample: list = []

    def pass_over(chunk: list[str], keep: bool) -> tuple[list[SparseVec], dict]:
        stats = Stats()
        keep_first = lambda hidden, lengths: sample or sample.append((hidden, lengths))  # noqa: E731
        out = pipeline.encode(chunk, max_length, stats=stats, on_batch=keep_first if keep else None)
        return out, asdict(stats)

    t0 = time.perf_counter()
    # warm-up: Triton compile, cuBLAS, allocator; keeps a head sample. Compiled, three batches' worth of texts, so
    # the recompile for dynamic shapes (after the first batch) happens here too, and its cost is reported.
    pass_over(texts[: 768 if compile_body else 256], keep=True)
    warmup_s = time.perf_counter() - t0
    peak_reset(device)
    sync(device)
    t0 = time.perf_counter()
    out, stats = pass_over(texts, keep=False)
    seconds = time.perf_counter() - t0
    stats = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
    stats.update(docs=len(texts), seconds=round(seconds, 3), docs_per_s=round(len(texts) / seconds, 1), peak_gib=peak_gib(device),
                 attention="packed, flash varlen" if packed and device == "cuda" else "packed, SDPA per document" if packed else "padded buckets",
                 padding_fraction=round(1 - stats["tokens"] / stats["padded_tokens"], 4), token_budget=token_budget,
                 tokenise=how, dummy_mask=dummy_mask, compiled=compile_body, warmup_s=round(warmup_s, 1))
    return out, stats, (sample[0], weight, bias)


def head_alone(sample: tuple, weight: torch.Tensor, bias: torch.Tensor | None, device: str, repeats: int = 10) -> dict:
    """The fused kernel vs the torch chunked splade_pool on one batch of real token states: time, extra peak
    memory, largest difference."""
    (hidden, lengths) = sample
    row: dict = {"tokens": int(hidden.shape[0]), "docs": len(lengths), "width": int(hidden.shape[1]), "vocab": int(weight.shape[0])}

    def timed(fused: bool) -> tuple[torch.Tensor, float, float | None]:
        patch = contextlib.nullcontext() if fused else mock.patch.object(splade_head, "available", lambda t: False)
        with patch, torch.inference_mode():
            out = splade_pool(hidden, lengths, weight, bias, 4096)  # warm
            peak_reset(device)
            base = torch.cuda.memory_allocated() if device == "cuda" else 0
            sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                out = splade_pool(hidden, lengths, weight, bias, 4096)
            sync(device)
            ms = (time.perf_counter() - t0) / repeats * 1e3
        extra = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1) if device == "cuda" else None
        return out, ms, extra

    torch_out, torch_ms, torch_mib = timed(False)
    if device == "cuda" and splade_head.available(hidden):
        fused_out, fused_ms, fused_mib = timed(True)
        row.update(fused_ms=round(fused_ms, 3), fused_extra_mib=fused_mib, fused_max_abs_diff=float((fused_out - torch_out).abs().max()),
                   fused_nnz_agree=float(((fused_out > 0) == (torch_out > 0)).float().mean()))
    flops = 2 * hidden.shape[0] * hidden.shape[1] * weight.shape[0]
    row.update(torch_ms=round(torch_ms, 3), torch_extra_mib=torch_mib, head_tflop=round(flops / 1e12, 3))
    return row


def agreement(a: list[SparseVec], b: list[SparseVec], vocab: int, n: int = 64) -> dict:
    """Largest weight difference and mean Jaccard of the non-zero sets over the first ``n`` documents."""
    diffs, jac = [], []
    for x, y in zip(a[:n], b[:n]):
        dx, dy = np.zeros(vocab, np.float32), np.zeros(vocab, np.float32)
        dx[x.term_ids], dy[y.term_ids] = x.weights, y.weights
        diffs.append(np.abs(dx - dy).max() / max(dx.max(), 1e-9))
        union = ((dx > 0) | (dy > 0)).sum()
        jac.append(((dx > 0) & (dy > 0)).sum() / union if union else 1.0)
    return {"max_rel_diff": round(float(max(diffs)), 4), "jaccard": round(float(np.mean(jac)), 4)}


def nnz(vecs: list[SparseVec]) -> float:
    return round(float(np.mean([v.term_ids.size for v in vecs])), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl)")
    ap.add_argument("--splade-tiny", default=default_splade_tiny(), help="SPLADE-tiny model folder ('' to skip)")
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--st-docs", type=int, default=4_000, help="texts for sentence-transformers (slow)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128, help="plain loop and sentence-transformers")
    ap.add_argument("--token-budget", type=int, default=65_536, help="sprig: tokens per packed batch")
    ap.add_argument("--target-nnz", type=int, default=200, help="bert-base: mean non-zeros per document")
    ap.add_argument("--layers", type=int, default=12, help="bert-base layers (fewer only for CPU smoke tests)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--padded", action="store_true", help="sprig: padded buckets even where varlen attention exists")
    ap.add_argument("--tokenise", choices=["numpy", "lists"], default="lists", help="sprig: the tokenizer thread's ids (tokenise())")
    ap.add_argument("--dummy-mask", action="store_true", help="sprig, packed: pass a 4-d attention mask to the body (PackedEncoder)")
    ap.add_argument("--compile", action="store_true", help="sprig: torch.compile the model body (dynamic shapes)")
    ap.add_argument("--paths", type=lambda v: v.split(","), default=["plain", "st", "sprig"],
                    help="comma-separated subset of plain,st,sprig")
    ap.add_argument("--out", default="splade-gpu.json")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; pass --device cpu")
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    packed = not args.padded and (available(args.device) or args.device == "cpu")
    from transformers import AutoConfig

    texts = read_texts(Path(args.data), args.docs)
    report: dict = {"docs": len(texts), "max_length": args.max_length, "dtype": str(dtype), "device": args.device,
                    "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                    "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "sentence_transformers")},
                    "triton": getattr(splade_head.triton, "__version__", None), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"bert-base": str(Path(tmp) / "bert-base")}
        if args.splade_tiny:
            models["splade-tiny"] = args.splade_tiny
        tokenizer_dir = args.splade_tiny or default_splade_tiny()
        setup = build_bert_base(Path(models["bert-base"]), tokenizer_dir, texts, args.max_length, args.target_nnz, args.device, args.layers)
        for name, folder in models.items():
            row: dict = {"setup": setup} if name == "bert-base" else {}
            vecs: dict[str, list[SparseVec]] = {}
            vocab = AutoConfig.from_pretrained(folder).vocab_size
            if "plain" in args.paths:
                vecs["plain"], row["plain"] = run_plain(folder, texts, args.max_length, args.batch_size, args.device, dtype)
            if "st" in args.paths:
                vecs["st"], row["st"] = run_sentence_transformers(folder, texts[: args.st_docs], args.max_length,
                                                                  args.batch_size, args.device, dtype)
            if "sprig" in args.paths:
                vecs["sprig"], row["sprig"], (sample, weight, bias) = run_sprig(folder, texts, args.max_length, args.token_budget,
                                                                               args.device, packed, args.tokenise,
                                                                               args.dummy_mask, args.compile)
                row["head_alone"] = head_alone(sample, weight, bias, args.device)
            for key, got in vecs.items():
                row[key]["nnz_per_doc"] = nnz(got)
                if key != "plain" and "plain" in vecs:
                    row[key]["vs_plain"] = agreement(got, vecs["plain"], vocab)
                    row[key]["speedup_vs_plain"] = round(row[key]["docs_per_s"] / row["plain"]["docs_per_s"], 2)
            report["models"][name] = row
            if args.device == "cuda":
                torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(report, indent=2))
    print_table(report)


def print_table(report: dict) -> None:
    print(f"{report['docs']} docs, length {report['max_length']}, {report['dtype']}, {report['gpu'] or report['device']}")
    print(f"{'model':12} {'path':6} {'docs':>6} {'docs/s':>9} {'x plain':>8} {'nnz/doc':>8} {'peak GiB':>9}  agreement with plain")
    for name, row in report["models"].items():
        for path in ("plain", "st", "sprig"):
            if path in row:
                r = row[path]
                print(f"{name:12} {path:6} {r['docs']:6} {r['docs_per_s']:9.1f} {r.get('speedup_vs_plain', 1.0):8.2f} "
                      f"{r['nnz_per_doc']:8.1f} {str(r['peak_gib']):>9}  {r.get('vs_plain', '')}")
        if "sprig" in row:
            s = row["sprig"]
            print(f"  sprig: wall {s['seconds']} s = GPU body {s['body_s']} s + head {s['head_s']} s (CUDA events; CPU: clock); threads: tokenise "
                  f"{s['tokenise_s']} s, convert {s['convert_s']} s; GPU loop waited {s['wait_tokens_s']} s for tokens; "
                  f"{s['batches']} batches, {s['attention']}, padding {s['padding_fraction']:.1%}")
            print(f"  head alone: {row['head_alone']}")


if __name__ == "__main__":
    main()
