"""Fidelity of sparse-attention decoding with real weights: SmolLM2 answering SQuAD RAG prompts.

Each prompt holds the question's gold paragraph among other paragraphs of the same article (shuffled),
so the context spans many KV pages. The prompt is prefilled once, densely; the same prefilled cache
is then decoded greedily with dense attention and with sparse attention at each budget
(rag/sparse_attention.py; on CPU the plain-torch reference path runs). Reported: token agreement with the
dense answer (position-wise over the dense answer's tokens), exact-match of whole answers, and SQuAD F1
against the gold answers (official normalisation), with the standard error of the per-question F1
difference (the same questions are answered in every mode, so the comparison is paired).

Run: python -m eval.bench.sparse_attention_fidelity --out DIR [--questions 60] [--paragraphs 6]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import time
from pathlib import Path

import torch

from eval.qa_metrics import best, f1
from rag.generator import Generator
from rag.sparse_attention import apply_sparse_attention, remove_sparse_attention

DATA = Path(os.environ.get("SPRIG_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SYSTEM = "Answer the question with a short phrase taken from the passages. Do not explain."


def rag_prompts(path: Path, questions: int, paragraphs: int, seed: int = 0) -> list[dict]:
    """One question per article paragraph, taken in file order over articles round-robin."""
    rng = random.Random(seed)
    articles = json.loads(path.read_text())["data"]
    items = []
    for i in range(max(len(a["paragraphs"]) for a in articles)):
        for a in articles:
            if i >= len(a["paragraphs"]) or len(a["paragraphs"]) < paragraphs:
                continue
            gold = a["paragraphs"][i]
            others = [p["context"] for j, p in enumerate(a["paragraphs"]) if j != i]
            context = rng.sample(others, paragraphs - 1) + [gold["context"]]
            rng.shuffle(context)
            qa = gold["qas"][0]
            passages = "\n\n".join(f"[{k + 1}] {c}" for k, c in enumerate(context))
            user = f"Passages:\n{passages}\n\nQuestion: {qa['question']}"
            items.append(dict(id=qa["id"], question=qa["question"], golds=[x["text"] for x in qa["answers"]],
                              messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]))
            if len(items) == questions:
                return items
    return items


@torch.inference_mode()
def greedy(model, first: int, cache, eos: set[int], max_new: int) -> list[int]:
    """Decode from a prefilled cache; `first` is the token the prefill chose."""
    out, token = [], first
    for _ in range(max_new):
        if token in eos:
            break
        out.append(token)
        logits = model(input_ids=torch.tensor([[token]], device=model.device), past_key_values=cache,
                       use_cache=True).logits
        token = int(logits[0, -1].argmax())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--paragraphs", type=int, default=6)
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.125])
    ap.add_argument("--page-size", type=int, nargs="+", default=[16])
    ap.add_argument("--sink-pages", type=int, default=1)
    ap.add_argument("--recent-pages", type=int, nargs="+", default=[1])
    ap.add_argument("--dense-layers", type=int, nargs="+", default=[2])
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--model", default="default", help="HF folder / id, or a folder holding --gguf-file")
    ap.add_argument("--gguf-file", default=None)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gen = Generator(args.model, args.gguf_file, device=args.device)
    model, tok = gen.model.to(getattr(torch, args.dtype)), gen.tokenizer
    items = rag_prompts(DATA / "qa" / "squad-dev-a.json", args.questions, args.paragraphs)
    modes = {"dense": None} | {f"sparse_{b:g}_recent{r}_page{p}_dense{d}": (b, r, p, d) for d in args.dense_layers
                               for p in args.page_size for r in args.recent_pages for b in args.budgets}
    rows, started, summary = [], time.perf_counter(), {}
    for item in items:
        ids = gen.encode_chat(item["messages"])
        remove_sparse_attention(model)
        with torch.inference_mode():
            pre = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
        first = int(pre.logits[0, -1].argmax())
        row = dict(id=item["id"], prompt_tokens=len(ids), golds=item["golds"])
        for name, mode in modes.items():
            if mode is None:
                remove_sparse_attention(model)
            else:
                apply_sparse_attention(model, page_size=mode[2], budget=mode[0], dense_layers=mode[3],
                                       sink_pages=args.sink_pages, recent_pages=mode[1])
            new = greedy(model, first, copy.deepcopy(pre.past_key_values), gen.eos_ids, args.max_new_tokens)
            answer = tok.decode(new, skip_special_tokens=True).strip()
            row[name] = dict(tokens=new, answer=answer, f1=best(f1, answer, item["golds"]))
        rows.append(row)
        summary = dict(model=gen.name, device=str(model.device), dtype=args.dtype, questions=len(rows),
                       paragraphs=args.paragraphs, sink_pages=args.sink_pages, max_new_tokens=args.max_new_tokens,
                       mean_prompt_tokens=sum(r["prompt_tokens"] for r in rows) / len(rows),
                       seconds=time.perf_counter() - started, modes=summarise(rows, modes))
        # rewritten after every question, so a run stopped at a time limit still reports what it did
        (args.out / "sparse_attention_fidelity.json").write_text(json.dumps(dict(summary=summary, rows=rows), indent=1))
    remove_sparse_attention(model)
    print(json.dumps(summary, indent=1))


def summarise(rows: list[dict], modes) -> dict:
    """Per mode: mean SQuAD F1, its difference to dense with the paired standard error, agreement with dense."""
    out = {}
    for name in modes:
        agree = total = exact = 0
        for r in rows:
            dense, mine = r["dense"]["tokens"], r[name]["tokens"]
            agree += sum(a == b for a, b in zip(dense, mine))
            total += max(len(dense), len(mine))
            exact += dense == mine
        mean_f1 = 100 * sum(r[name]["f1"] for r in rows) / len(rows)
        dense_f1 = 100 * sum(r["dense"]["f1"] for r in rows) / len(rows)
        diffs = torch.tensor([r[name]["f1"] - r["dense"]["f1"] for r in rows], dtype=torch.float64) * 100
        out[name] = dict(f1=mean_f1, f1_minus_dense=mean_f1 - dense_f1,
                         f1_minus_dense_se=float(diffs.std() / len(rows) ** 0.5) if len(rows) > 1 else None,
                         token_agreement=agree / max(total, 1), answer_exact_match=exact / len(rows))
    return out


if __name__ == "__main__":
    main()
