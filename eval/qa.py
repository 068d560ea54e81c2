"""QA evaluation of the answer path on a SQuAD file: EM/F1 per compression mode, with the small
model's floor (closed-book) and ceiling (oracle: the gold paragraph alone) as extra rows.

Every question is retrieved once and then answered by every row in turn, so all rows see the same
passages and the same machine load (timings on a shared machine drift; interleaving spreads the drift
evenly). ``ttft_ms`` is compression + prefill + the first token; retrieval is shared by all rows and is
reported once, as ``retrieve_ms``.
"""
from __future__ import annotations

import json
import logging
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from eval.provenance import provenance
from eval.qa_metrics import best, exact_match, f1
from rag.answer import Answer, Answerer, Retrieve
from rag.compress.base import COMPRESS_MODES
from rag.prompt import strip_citations
from sprig.errors import InputError, SprigError
from sprig.types import Hit

log = logging.getLogger(__name__)

BASELINE_ROWS = ("closed-book", "oracle")
ROWS: tuple[str, ...] = (*BASELINE_ROWS, *COMPRESS_MODES)
MEANS = ("EM", "F1", "gold_in_context", "answer_in_context", "closed_book",  # then the Answer.stats keys:
         "retrieved_tokens", "context_tokens", "compression_rate", "prompt_tokens", "new_tokens", "compress_ms",
         "prefill_ms", "ttft_ms", "latency_ms")


@dataclass
class QAItem:
    qid: str
    question: str
    answers: list[str]
    context: str  # the gold paragraph
    title: str


def read_squad(path: str | Path) -> list[QAItem]:
    """Questions of a SQuAD v1.1-format file, in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", str(path)) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"not a SQuAD json file ({type(exc).__name__}: {exc}); expected {{'data': [articles]}}", str(path)) from None
    items = []
    for article in data:
        title = article.get("title", "").replace("_", " ")
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                items.append(QAItem(qa["id"], qa["question"], [a["text"] for a in qa["answers"]], para["context"], title))
    if not items:
        raise InputError("no questions found", str(path))
    return items


def sample(items: list[QAItem], n: int, seed: int) -> list[QAItem]:
    """``n`` questions drawn without replacement by ``seed`` (n <= 0 or n >= all keeps every question)."""
    if n <= 0 or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)


def score(answer: Answer, item: QAItem) -> dict:
    prediction = strip_citations(answer.text)
    used = {pid for block in answer.blocks for pid in block.passage_ids}
    gold = item.context.strip()
    context = " ".join(b.text for b in answer.blocks).lower()
    s = answer.stats
    return {
        "EM": best(exact_match, prediction, item.answers), "F1": best(f1, prediction, item.answers),
        "gold_in_context": float(any(h.passage_id in used and h.text.strip() == gold for h in answer.hits)),
        "answer_in_context": float(any(a.lower() in context for a in item.answers)),
        "closed_book": float(answer.closed_book),
        **{key: s[key] for key in MEANS[5:]},
    }


def evaluate_qa(
    answerer: Answerer,
    items: list[QAItem],
    retrieve: Retrieve,
    rows: tuple[str, ...] = ROWS,
    k: int = 5,
    predictions: Path | None = None,
) -> tuple[dict[str, dict], dict]:
    """Per-row mean metrics, and retrieval figures shared by the rows."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SprigError(f"unknown QA row(s) {', '.join(unknown)} (expected some of {', '.join(ROWS)})")
    for row in rows:  # load every model before the clock starts (the dense encoder, for one)
        answerer.compressor(row if row in COMPRESS_MODES else "none")
    answerer.generator.generate([{"role": "user", "content": "Hi"}], max_new_tokens=2)
    records: dict[str, list[dict]] = {r: [] for r in rows}
    retrieve_ms, gold_retrieved = [], []
    out = predictions.open("w", encoding="utf-8") if predictions else None
    try:
        for n, item in enumerate(items, 1):
            t = time.perf_counter()
            hits = retrieve(item.question, k, None) if set(rows) & set(COMPRESS_MODES) else []
            retrieve_ms.append((time.perf_counter() - t) * 1000)
            gold_retrieved.append(float(any(h.text.strip() == item.context.strip() for h in hits)))
            for row in rows:
                answer = _run_row(answerer, row, item, hits)
                rec = score(answer, item)
                records[row].append(rec)
                if out:
                    out.write(json.dumps({"qid": item.qid, "row": row, "prediction": answer.text, "answers": item.answers,
                                          "note": answer.note, "citations": [c.passage_ids for c in answer.citations], **rec}) + "\n")
            log.info("%d/%d %s", n, len(items), " ".join(f"{r}:F1={_mean(records[r], 'F1'):.3f}" for r in rows))
    finally:
        if out:
            out.close()
    metrics = {row: {**{key: _mean(recs, key) for key in MEANS}, "ttft_ms_p50": statistics.median(r["ttft_ms"] for r in recs), "n": len(recs)}
               for row, recs in records.items()}
    shared = {"retrieve_ms": statistics.fmean(retrieve_ms), f"gold_in_top{k}": statistics.fmean(gold_retrieved)}
    return metrics, shared


def _run_row(answerer: Answerer, row: str, item: QAItem, hits: list[Hit]) -> Answer:
    if row == "closed-book":
        return answerer.answer(item.question, closed_book=True)
    if row == "oracle":
        gold = Hit("gold", 1.0, 1, title=item.title, text=item.context)
        return answerer.answer(item.question, mode="none", passages=[gold])
    return answerer.answer(item.question, mode=row, passages=hits)


def _mean(records: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in records) if records else 0.0


def plot_f1_vs_compression(metrics: dict[str, dict], path: Path) -> None:
    """F1 against the fraction of retrieved tokens kept; oracle and closed-book as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row, m in metrics.items():
        if row in BASELINE_ROWS:
            ax.axhline(100 * m["F1"], ls="--" if row == "oracle" else ":", color="grey")
            ax.annotate(row, (0.0, 100 * m["F1"]), textcoords="offset points", xytext=(4, 3), fontsize=8, color="grey")
        else:
            ax.scatter(m["compression_rate"], 100 * m["F1"], s=40)
            ax.annotate(f"{row}\nTTFT {m['ttft_ms']:.0f} ms", (m["compression_rate"], 100 * m["F1"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlim(-0.02, 1.15)
    ax.set_ylim(0, 115 * max(m["F1"] for m in metrics.values()) or 1)
    ax.set_xlabel("context tokens / retrieved tokens")
    ax.set_ylabel("F1 (SQuAD)")
    ax.set_title("F1 against compression rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_qa(
    squad: str | Path, answerer: Answerer, retrieve: Retrieve, out_dir: str | Path | None, n: int, seed: int,
    rows: tuple[str, ...] = ROWS, k: int = 5, settings: dict | None = None,
) -> dict[str, dict]:
    """Evaluate a sample of ``squad`` and, with ``out_dir``, write metrics.json (one entry per row),
    run.json (settings, sample, shared retrieval figures, provenance), predictions.jsonl and the plot."""
    items = read_squad(squad)
    chosen = sample(items, n, seed)
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics, shared = evaluate_qa(answerer, chosen, retrieve, rows, k, out / "predictions.jsonl" if out else None)
    if out:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        run = {"squad": str(squad), "questions_in_file": len(items), "sample": n, "seed": seed, "n": len(chosen), "k": k,
               "rows": list(rows), **shared, "wall_s": time.perf_counter() - start,
               "settings": settings or {}, "provenance": provenance()}
        (out / "run.json").write_text(json.dumps(run, indent=2))
        plot_f1_vs_compression(metrics, out / "f1_vs_compression.png")
    return metrics
