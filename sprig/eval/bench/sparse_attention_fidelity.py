"""Fidelity of sparse-attention decoding with real weights: SmolLM2 answering SQuAD RAG prompts.

Each prompt holds the question's gold paragraph among other paragraphs of the same article (shuffled),
so the context spans many KV pages: `--paragraphs` of them, or with `--context-tokens N` as many as fit
N tokens of passage text (articles' paragraph lengths differ widely, so a paragraph count leaves the
prompt length loose; a token budget holds it near the length being measured, e.g. close to SmolLM2's
8,192-token window). Questions whose article cannot fill 90% of N are skipped, so every prompt's passages
hold between 0.9·N and N tokens. The prompt is prefilled once, densely; the same prefilled cache
is then decoded greedily with dense attention and with sparse attention at each budget
(sprig/rag/sparse_attention.py; on CPU the plain-torch reference path runs). Reported: token agreement with the
dense answer (position-wise over the dense answer's tokens), exact-match of whole answers, and SQuAD F1
against the gold answers (official normalisation), with the standard error of the per-question F1
difference (the same questions are answered in every mode, so the comparison is paired).

Decoding a 135M model is Python-bound, so several processes share one GPU well: `--shard I --shards N`
answers questions i with i % N == I of the same prompt list, and `--merge` joins the JSONs of shards (and
of runs of other modes on the same questions) by question id into one summary of the same format.

Run: python -m sprig.eval.bench.sparse_attention_fidelity --out DIR [--questions 60] [--paragraphs 6 | --context-tokens N]
         [--shard I --shards N]
     python -m sprig.eval.bench.sparse_attention_fidelity --merge OUT.json DIR_OR_JSON [...]
     python -m sprig.eval.bench.sparse_attention_fidelity --plot OUT.png MERGED_JSON [...]   # F1 loss vs prompt length
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path
from typing import Callable

import torch

from sprig.core.errors import SprigError
from sprig.core.files import write_text_atomic
from sprig.eval.datasets import SHARED
from sprig.eval.qa_metrics import best, f1
from sprig.rag.generator import Generator
from sprig.rag.sparse_attention import apply_sparse_attention, remove_sparse_attention

SYSTEM = "Answer the question with a short phrase taken from the passages. Do not explain."
RESULT = "sparse_attention_fidelity.json"
# runs merge only when these agree: the same question id means the same prompt and the same decoding
# (a JSON written before a setting existed reads as None for it, i.e. that setting's default)
SETTINGS = ("model", "device", "dtype", "paragraphs", "context_tokens", "sink_pages", "max_new_tokens")


def rag_prompts(path: Path, questions: int, paragraphs: int, seed: int = 0, context_tokens: int | None = None,
                count_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """One question per article paragraph, taken in file order over articles round-robin.

    The context is `paragraphs` paragraphs of the article, or with `context_tokens` as many as fit that
    many tokens (`count_tokens`, the model's tokenizer); a question whose article cannot fill 90% of it
    is skipped. With `count_tokens`, each item records its passages' token count as `context_tokens`.
    """
    if context_tokens is not None and count_tokens is None:
        raise ValueError("context_tokens needs count_tokens")
    rng = random.Random(seed)
    articles = json.loads(path.read_text())["data"]
    items = []
    for i in range(max(len(a["paragraphs"]) for a in articles)):
        for a in articles:
            if i >= len(a["paragraphs"]) or (context_tokens is None and len(a["paragraphs"]) < paragraphs):
                continue
            gold = a["paragraphs"][i]
            others = [p["context"] for j, p in enumerate(a["paragraphs"]) if j != i]
            if context_tokens is None:
                context = rng.sample(others, paragraphs - 1) + [gold["context"]]
                rng.shuffle(context)
            elif fitted := _fit(gold["context"], others, context_tokens, count_tokens, rng):
                context, tokens = fitted
            else:
                continue
            qa = gold["qas"][0]
            passages = _passages(context)
            user = f"Passages:\n{passages}\n\nQuestion: {qa['question']}"
            items.append(dict(id=qa["id"], question=qa["question"], golds=[x["text"] for x in qa["answers"]],
                              messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]))
            if count_tokens is not None:
                items[-1]["context_tokens"] = count_tokens(passages) if context_tokens is None else tokens
            if len(items) == questions:
                return items
    return items


def _passages(context: list[str]) -> str:
    """The numbered passage blocks of a prompt."""
    return "\n\n".join(f"[{k + 1}] {c}" for k, c in enumerate(context))


def _fit(gold: str, others: list[str], budget: int, count_tokens: Callable[[str], int],
         rng: random.Random) -> tuple[list[str], int] | None:
    """Gold first, then the others in random order while the passages stay within `budget` tokens; shuffled.

    Filling estimates the count block by block (each numbered block with the separator before it, which
    tokenizers may split differently than alone); since renumbering after the shuffle and merges across
    block edges can still move it, the last-added paragraphs are dropped until the exact count of the
    final text fits. Returns the paragraphs and that count, or None when it is under 90% of the budget.
    """
    chosen, used = [gold], count_tokens(f"[1] {gold}")
    for c in rng.sample(others, len(others)):
        used += count_tokens(f"\n\n[{len(chosen) + 1}] {c}")
        if used > budget:
            break
        chosen.append(c)
    context = rng.sample(chosen, len(chosen))
    while (tokens := count_tokens(_passages(context))) > budget and len(chosen) > 1:
        context.remove(chosen.pop())
    return (context, tokens) if 0.9 * budget <= tokens <= budget else None


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
    ap.add_argument("--out", type=Path, help="folder for this run's JSON (required unless --merge)")
    ap.add_argument("--merge", type=Path, nargs="+", metavar=("OUT_JSON", "DIR_OR_JSON"),
                    help=f"join the {RESULT} files under the given folders (or the given JSON files) into OUT_JSON, "
                         "print a markdown table and exit")
    ap.add_argument("--plot", type=Path, nargs="+", metavar=("OUT_PNG", "JSON"),
                    help="plot F1 - dense against mean prompt tokens, one line per sparse mode, from summary JSONs "
                         "(e.g. merged runs at several prompt lengths) and exit")
    ap.add_argument("--shard", type=int, default=0, help="answer questions i with i %% shards == shard")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--paragraphs", type=int, default=6)
    ap.add_argument("--context-tokens", type=int, default=None,
                    help="instead of --paragraphs, fill each prompt with paragraphs of the gold one's article up to "
                         "this many passage tokens; questions whose article cannot fill 90%% of it are skipped")
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
    if args.merge is not None and len(args.merge) < 2:
        ap.error("--merge needs OUT_JSON and at least one folder or JSON file")
    if args.plot is not None and len(args.plot) < 2:
        ap.error("--plot needs OUT_PNG and at least one summary JSON")
    try:  # a bad input file is one line naming it, not a traceback
        if args.merge is not None:
            merged = merge(args.merge[1:])
            write_text_atomic(args.merge[0], json.dumps(merged, indent=1))
            print(table(merged["summary"]))
            return
        if args.plot is not None:
            plot(args.plot[1:], args.plot[0])
            return
    except SprigError as exc:
        ap.exit(2, f"{ap.prog}: {exc}\n")
    if args.out is None:
        ap.error("--out is required unless --merge or --plot is given")
    if args.context_tokens is not None and args.context_tokens < 1:
        ap.error(f"--context-tokens must be positive, got {args.context_tokens}")
    if not 0 <= args.shard < args.shards:
        ap.error(f"--shard must be in 0..{args.shards - 1} (--shards {args.shards}), got {args.shard}")
    print(json.dumps(run(args), indent=1))


def run(args: argparse.Namespace) -> dict:
    """Answer this shard's questions in every mode; rewrite the JSON after each question. Returns the summary."""
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gen = Generator(args.model, args.gguf_file, device=args.device)
    model, tok = gen.model.to(getattr(torch, args.dtype)), gen.tokenizer
    items = list(enumerate(rag_prompts(SHARED / "qa" / "squad-dev-a.json", args.questions, args.paragraphs,
                                       context_tokens=args.context_tokens, count_tokens=gen.count_tokens)))
    items = items[args.shard :: args.shards]
    modes = {"dense": None} | {f"sparse_{b:g}_recent{r}_page{p}_dense{d}": (b, r, p, d) for d in args.dense_layers
                               for p in args.page_size for r in args.recent_pages for b in args.budgets}
    rows, started, summary = [], time.perf_counter(), {}
    for index, item in items:
        ids = gen.encode_chat(item["messages"])
        remove_sparse_attention(model)
        with torch.inference_mode():
            pre = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
        first = int(pre.logits[0, -1].argmax())
        row = dict(id=item["id"], index=index, prompt_tokens=len(ids), context_tokens=item["context_tokens"],
                   golds=item["golds"])
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
                       paragraphs=args.paragraphs if args.context_tokens is None else None,
                       context_tokens=args.context_tokens, sink_pages=args.sink_pages,
                       max_new_tokens=args.max_new_tokens, shard=args.shard, shards=args.shards,
                       mean_prompt_tokens=sum(r["prompt_tokens"] for r in rows) / len(rows),
                       seconds=time.perf_counter() - started, modes=summarise(rows, modes))
        # rewritten after every question, so a run stopped at a time limit still reports what it did
        write_text_atomic(args.out / RESULT, json.dumps(dict(summary=summary, rows=rows), indent=1))
    remove_sparse_attention(model)
    return summary


def merge(paths: list[Path]) -> dict:
    """Join runs by question id: shards of one prompt list, or runs of other modes on the same questions.

    The first answer read for a (question, mode) is kept; a later different one (dense bf16 decoding is
    not bit-for-bit repeatable across GPU processes) is counted in `disagreements`. Files that cannot be
    read (a process killed before its first question left none) are listed in `unreadable`.
    """
    files = list(dict.fromkeys(f.resolve() for p in paths for f in (sorted(p.rglob(RESULT)) if p.is_dir() else [p])))
    settings, modes, rows, sources, unreadable, disagreements = None, {}, {}, [], [], 0
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            unreadable.append(f"{path}: {exc}")
            continue
        mine = {k: data["summary"].get(k) for k in SETTINGS}
        settings = settings or mine
        if mine != settings:
            differ = [k for k in SETTINGS if mine[k] != settings[k]]
            raise SprigError(f"{path}: {', '.join(f'{k}={mine[k]!r}' for k in differ)} differs from "
                             f"{sources[0]['path']} ({', '.join(f'{k}={settings[k]!r}' for k in differ)}); cannot merge")
        names = list(data["summary"]["modes"])
        modes.update(dict.fromkeys(names))
        for r in data["rows"]:
            row = rows.setdefault(r["id"], {k: r[k] for k in ("id", "index", "prompt_tokens", "context_tokens", "golds")
                                            if k in r})
            if row["prompt_tokens"] != r["prompt_tokens"]:
                raise SprigError(f"{path}: question {r['id']} has {r['prompt_tokens']} prompt tokens, "
                                 f"{row['prompt_tokens']} in an earlier file; not the same prompt list")
            for name in names:
                if name in row:
                    disagreements += row[name]["tokens"] != r[name]["tokens"]
                else:
                    row[name] = r[name]
        sources.append(dict(path=str(path), questions=len(data["rows"]), seconds=data["summary"].get("seconds")))
    if settings is None:
        raise SprigError(f"no readable {RESULT} under {', '.join(map(str, paths))}" + "".join(f"; {u}" for u in unreadable))
    rows = sorted(rows.values(), key=lambda r: r.get("index", 0))  # the prompt list's order, as one unsharded run
    summary = dict(settings, questions=len(rows), mean_prompt_tokens=sum(r["prompt_tokens"] for r in rows) / len(rows),
                   disagreements=disagreements, unreadable=unreadable, sources=sources, modes=summarise(rows, modes))
    return dict(summary=summary, rows=rows)


def table(summary: dict) -> str:
    """The summary's modes as a markdown table (F1 in points)."""
    lines = ["| mode | questions | SQuAD F1 | F1 − dense (± s.e.) | token agreement | identical answers |",
             "|---|---|---|---|---|---|"]
    for name, m in summary["modes"].items():
        se = f" ± {m['f1_minus_dense_se']:.2f}" if m["f1_minus_dense_se"] is not None else ""
        lines.append(f"| {name} | {m['questions']} | {m['f1']:.2f} | {m['f1_minus_dense']:+.2f}{se} | "
                     f"{m['token_agreement']:.2f} | {100 * m['answer_exact_match']:.0f}% |")
    return "\n".join(lines)


def plot(paths: list[Path], out: Path) -> None:
    """F1 − dense (± 1.96 s.e.) against mean prompt tokens, one line per sparse mode, with the 1-point target:
    how the loss of a budget changes with context length, from the summaries of runs at several lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[float, float, float]]] = {}
    for path in paths:
        try:
            summary = json.loads(Path(path).read_text())["summary"]
            modes, tokens = summary["modes"], summary["mean_prompt_tokens"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SprigError(f"{path}: not a fidelity summary ({exc!r})") from exc
        for name, m in modes.items():
            if name != "dense":
                lines.setdefault(name, []).append(
                    (tokens, m["f1_minus_dense"], 1.96 * (m["f1_minus_dense_se"] or 0.0)))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, points) in enumerate(sorted(lines.items())):
        x, y, err = zip(*sorted(points))
        shift = 30 * (i - (len(lines) - 1) / 2)  # side by side, so the error bars stay apart
        ax.errorbar([t + shift for t in x], y, yerr=err, marker="o", capsize=3, label=name)
    ax.axhline(-1.0, color="k", ls="--", lw=1, label="1 point below dense")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set_xlabel("mean prompt tokens")
    ax.set_ylabel("SQuAD F1 − dense (points, ± 1.96 s.e.)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def summarise(rows: list[dict], modes) -> dict:
    """Per mode, over the questions answered both in it and densely: their count, mean SQuAD F1, its
    difference to dense with the paired standard error, agreement with dense. Modes with none are left out."""
    out = {}
    for name in modes:
        rows_in = [r for r in rows if name in r and "dense" in r]
        if not rows_in:
            continue
        agree = total = exact = 0
        for r in rows_in:
            dense, mine = r["dense"]["tokens"], r[name]["tokens"]
            agree += sum(a == b for a, b in zip(dense, mine))
            total += max(len(dense), len(mine))
            exact += dense == mine
        n = len(rows_in)
        mean_f1 = 100 * sum(r[name]["f1"] for r in rows_in) / n
        dense_f1 = 100 * sum(r["dense"]["f1"] for r in rows_in) / n
        diffs = torch.tensor([r[name]["f1"] - r["dense"]["f1"] for r in rows_in], dtype=torch.float64) * 100
        out[name] = dict(questions=n, f1=mean_f1, f1_minus_dense=mean_f1 - dense_f1,
                         f1_minus_dense_se=float(diffs.std() / n ** 0.5) if n > 1 else None,
                         token_agreement=agree / max(total, 1), answer_exact_match=exact / n)
    return out


if __name__ == "__main__":
    main()
