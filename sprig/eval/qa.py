"""QA evaluation of the answer path on a SQuAD file: EM/F1 per compression mode, with the small
model's floor (closed-book) and ceiling (oracle: the gold paragraph alone) as extra rows.

Every question is retrieved once and then answered by every row in turn, so all rows see the same
passages and the same machine load (timings on a shared machine drift; interleaving spreads the drift
evenly). ``ttft_ms`` is retrieval + compression + prefill (+ choosing the first token), as a caller
waits for it: each row that reads the retrieved passages is charged the question's one retrieval.
Every stage also has a process-CPU figure (``*_cpu_ms``), which other jobs on the machine barely move.

A row ``MODE@R`` runs a compression mode at budget ratio R (``recomp-extractive@0.1``), so a budget
sweep is one interleaved run. ``vs_none`` compares each row with ``none`` on the same questions: the
F1 difference (paired bootstrap interval) and the ratios of context tokens, prompt tokens and TTFT.
"""
from __future__ import annotations

import json
import logging
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprig.core.config import COMPRESS_MODES
from sprig.core.errors import InputError, SprigError
from sprig.core.types import Hit
from sprig.eval.provenance import provenance
from sprig.eval.qa_metrics import best, exact_match, f1
from sprig.rag.answer import Answer, Answerer, Retrieve, clock, parse_compress, since
from sprig.rag.prompt import CLOSED_BOOK_PREFIX, RAG_PREFIX, strip_citations

log = logging.getLogger(__name__)

BASELINE_ROWS = ("closed-book", "oracle")
ROWS: tuple[str, ...] = (*BASELINE_ROWS, *COMPRESS_MODES)
DEFAULT_ROWS = tuple(r for r in ROWS if r != "refrag")  # refrag needs a trained projector, which nothing ships yet: ask for it
MEANS = ("EM", "F1", "gold_in_context", "answer_in_context", "closed_book",  # then the Answer.stats keys:
         "retrieved_tokens", "context_tokens", "compression_rate", "prompt_tokens", "cached_prompt_tokens", "new_tokens",
         "retrieve_ms", "retrieve_cpu_ms", "compress_ms", "compress_cpu_ms", "prefill_ms", "prefill_cpu_ms",
         "ttft_ms", "ttft_cpu_ms", "latency_ms")
RATIOS = ("context_tokens", "prompt_tokens", "ttft_ms", "ttft_cpu_ms", "prefill_ms", "prefill_cpu_ms")  # vs_none


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


def parse_row(row: str) -> tuple[str, float | None]:
    """A row name -> (mode or baseline, budget ratio or None): ``none``, ``oracle``, ``recomp-extractive@0.1``,
    ``refrag@0.25`` (for refrag the ratio is its expansion fraction p)."""
    if row in BASELINE_ROWS:
        return row, None
    try:
        return parse_compress(row)
    except SprigError:
        raise SprigError(f"unknown QA row '{row}' (expected one of {', '.join(ROWS)}; a compression mode may take a budget "
                         f"ratio in (0, 1], as in recomp-extractive@0.1, and refrag its expansion fraction, as in refrag@0.25)") from None


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
    """Per-row mean metrics (with ``vs_none`` when ``none`` is a row), and retrieval figures shared by the rows."""
    parsed = {row: parse_row(row) for row in rows}
    for mode, _ in parsed.values():  # load every model before the clock starts (the dense encoder, for one)
        answerer.compressor(mode if mode in COMPRESS_MODES else "none")
    for prefix in (RAG_PREFIX, CLOSED_BOOK_PREFIX):  # warm the generator and build the scaffolds' cached KV
        answerer.generator.generate([*prefix, {"role": "user", "content": "Hi"}], max_new_tokens=2,
                                    prefix=prefix if answerer.generation.prefix_cache else None)
    records: dict[str, list[dict]] = {r: [] for r in rows}
    retrieve_ms, gold_retrieved = [], []
    out = predictions.open("w", encoding="utf-8") if predictions else None
    try:
        for n, item in enumerate(items, 1):
            t = clock()
            hits = retrieve(item.question, k, None) if any(m in COMPRESS_MODES for m, _ in parsed.values()) else []
            retrieval = since(t)
            retrieve_ms.append(retrieval[0])
            gold_retrieved.append(float(any(h.text.strip() == item.context.strip() for h in hits)))
            for row, (mode, budget) in parsed.items():
                answer = _run_row(answerer, mode, budget, item, hits)
                if mode in COMPRESS_MODES:
                    _charge_retrieval(answer, *retrieval)
                rec = score(answer, item)
                records[row].append(rec)
                if out:
                    out.write(json.dumps({"qid": item.qid, "row": row, "prediction": answer.text, "answers": item.answers,
                                          "note": answer.note, "citations": [c.passage_ids for c in answer.citations], **rec}) + "\n")
            log.info("%d/%d %s", n, len(items), " ".join(f"{r}:F1={_mean(records[r], 'F1'):.3f}" for r in rows))
    finally:
        if out:
            out.close()
    metrics = {row: {**{key: _mean(recs, key) for key in MEANS}, "ttft_ms_p50": statistics.median(r["ttft_ms"] for r in recs),
                     "ttft_cpu_ms_p50": statistics.median(r["ttft_cpu_ms"] for r in recs), "n": len(recs)}
               for row, recs in records.items()}
    if "none" in records:
        for row, recs in records.items():
            metrics[row]["vs_none"] = against(recs, records["none"])
    shared = {"retrieve_ms": statistics.fmean(retrieve_ms), f"gold_in_top{k}": statistics.fmean(gold_retrieved)}
    return metrics, shared


def against(records: list[dict], base: list[dict], resamples: int = 10_000, seed: int = 0) -> dict:
    """``records`` against ``base`` on the same questions: F1 difference in points with a paired
    bootstrap 95% interval, and ratios of means for token counts and times (RATIOS)."""
    diff = 100 * (np.array([r["F1"] for r in records]) - np.array([r["F1"] for r in base]))
    boot = np.random.default_rng(seed).choice(diff, (resamples, len(diff))).mean(axis=1)
    ratios = {f"{key}_ratio": _mean(records, key) / _mean(base, key) if _mean(base, key) else 0.0 for key in RATIOS}
    return {"F1_diff": float(diff.mean()), "F1_diff_ci95": [float(x) for x in np.percentile(boot, [2.5, 97.5])], **ratios}


def _run_row(answerer: Answerer, mode: str, budget: float | None, item: QAItem, hits: list[Hit]) -> Answer:
    if mode == "closed-book":
        return answerer.answer(item.question, closed_book=True)
    if mode == "oracle":
        gold = Hit("gold", 1.0, 1, title=item.title, text=item.context)
        return answerer.answer(item.question, mode="none", passages=[gold])
    return answerer.answer(item.question, mode=mode, passages=hits, budget_ratio=budget)


def _charge_retrieval(answer: Answer, wall_ms: float, cpu_ms: float) -> None:
    """Add the question's one retrieval to a row that read its passages, as a caller would wait for it."""
    s = answer.stats
    s["retrieve_ms"], s["retrieve_cpu_ms"] = wall_ms, cpu_ms
    s["ttft_ms"] += wall_ms
    s["ttft_cpu_ms"] += cpu_ms
    s["latency_ms"] += wall_ms


def _mean(records: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in records) if records else 0.0


def plot_f1_vs_compression(metrics: dict[str, dict], path: Path) -> None:
    """F1 against the fraction of retrieved tokens kept, one line per compression mode (its budgets);
    oracle and closed-book as reference lines."""
    fig, ax = _pyplot().subplots(figsize=(6.5, 4.2))
    for row, m in metrics.items():
        if row in BASELINE_ROWS:
            ax.axhline(100 * m["F1"], ls="--" if row == "oracle" else ":", color="grey")
            ax.annotate(row, (0.0, 100 * m["F1"]), textcoords="offset points", xytext=(4, 3), fontsize=8, color="grey")
    for i, (mode, rows) in enumerate(_by_mode(metrics).items()):
        points = sorted((metrics[r]["compression_rate"], 100 * metrics[r]["F1"], r) for r in rows)
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", ms=6, label=mode)
        for x, y, row in points:  # each mode's labels at its own height, so modes at similar points stay legible
            m = metrics[row]
            ax.annotate(f"TTFT {m['ttft_ms'] / 1000:.1f} s (CPU {m['ttft_cpu_ms'] / 1000:.1f} s)", (x, y),
                        textcoords="offset points", xytext=(5, 5 - 14 * i), fontsize=7)
    ax.set_xlim(-0.02, 1.35)
    ax.set_ylim(0, 115 * max(m["F1"] for m in metrics.values()) or 1)
    _save(fig, ax, path, "context tokens / retrieved tokens", "F1 (SQuAD)", "F1 against compression rate", "best")


def plot_ttft_vs_prompt_tokens(metrics: dict[str, dict], path: Path) -> None:
    """Mean TTFT (process CPU and wall) against mean prompt tokens per row, with the line of TTFT
    proportional to prompt tokens through ``none``: a row under it saves at least in proportion."""
    fig, ax = _pyplot().subplots(figsize=(6.5, 4.2))
    rows = list(metrics)
    x = [metrics[r]["prompt_tokens"] for r in rows]
    for key, marker, label in (("ttft_cpu_ms", "o", "CPU time"), ("ttft_ms", "x", "wall time")):
        ax.scatter(x, [metrics[r][key] / 1000 for r in rows], marker=marker, label=f"TTFT, {label}")
    for row, xi in zip(rows, x):
        ax.annotate(row, (xi, metrics[row]["ttft_cpu_ms"] / 1000), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if "none" in metrics:
        base = metrics["none"]
        ax.plot([0, base["prompt_tokens"]], [0, base["ttft_cpu_ms"] / 1000], "--", color="grey", label="proportional to none (CPU)")
    ax.set_xlim(0, 1.1 * max(x))
    ax.set_ylim(0, None)
    _save(fig, ax, path, "prompt tokens (mean)", "time to first token, s (mean)", "TTFT against prompt tokens", "center right")


def _by_mode(metrics: dict[str, dict]) -> dict[str, list[str]]:
    """Compression rows grouped by mode (``recomp-extractive@0.1`` and ``recomp-extractive`` together)."""
    groups: dict[str, list[str]] = {}
    for row in metrics:
        if row not in BASELINE_ROWS:
            groups.setdefault(parse_row(row)[0], []).append(row)
    return groups


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def run_qa(
    squad: str | Path, answerer: Answerer, retrieve: Retrieve, out_dir: str | Path | None, n: int, seed: int,
    rows: tuple[str, ...] = ROWS, k: int = 5, settings: dict | None = None,
) -> dict[str, dict]:
    """Evaluate a sample of ``squad`` and, with ``out_dir``, write metrics.json (one entry per row),
    run.json (settings, sample, shared retrieval figures, provenance), predictions.jsonl and the plots."""
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
        plot_ttft_vs_prompt_tokens(metrics, out / "ttft_vs_prompt_tokens.png")
    return metrics
