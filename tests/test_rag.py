"""RAG answer path without the real generator: metrics, sentence splitting, stop strings, citations,
RECOMP extractive against a plain reference, and selective augmentation in the pipeline."""
from __future__ import annotations

import json
import re
import string
from collections import Counter

import numpy as np
import pytest

from sprig.core.config import CompressConfig, SprigConfig
from sprig.core.errors import SprigError
from sprig.core.types import Hit
from sprig.encoders.sentences import split_sentences
from sprig.eval.qa import (
    RATIOS,
    QAItem,
    against,
    evaluate_qa,
    parse_row,
    read_squad,
    sample,
    score,
)
from sprig.eval.qa_metrics import best, exact_match, f1, normalize_answer
from sprig.rag.answer import Answerer, sparse_attention_settings
from sprig.rag.compress.base import ContextBlock
from sprig.rag.compress.recomp_extractive import RecompExtractive
from sprig.rag.generator import GenerationStats, Generator, _safe_end
from sprig.rag.prompt import cite, strip_citations


# --- SQuAD metrics: the official evaluate-v1.1.py, restated plainly as the reference -------------
def _official_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _official_f1(pred: str, gold: str) -> float:
    p, g = _official_normalize(pred).split(), _official_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    return 0.0 if same == 0 else 2 * (same / len(p)) * (same / len(g)) / (same / len(p) + same / len(g))


@pytest.mark.parametrize("pred,gold", [
    ("The Denver Broncos!", "Denver Broncos"), ("Denver", "Denver Broncos"), ("an apple a day", "apple day"),
    ("Santa Clara, California", "Levi's Stadium"), ("", "x"), ("1,000 people", "1000 people"), ("A", "the"),
])
def test_squad_metrics_match_official(pred, gold):
    assert normalize_answer(pred) == _official_normalize(pred)
    assert f1(pred, gold) == pytest.approx(_official_f1(pred, gold))
    assert exact_match(pred, gold) == float(_official_normalize(pred) == _official_normalize(gold))


def test_best_takes_max_over_golds():
    assert best(f1, "Denver", ["Carolina Panthers", "Denver Broncos"]) == pytest.approx(2 / 3)
    assert best(exact_match, "the broncos", ["Broncos", "Denver"]) == 1.0


# --- sentences, stop strings, citations -----------------------------------------------------------
def test_split_sentences_keeps_abbreviations_and_initials():
    text = 'Dr. Smith met J. S. Bach in the U.S. Army. He said "Go!" Then 2016 came. end of text'
    assert split_sentences(text) == ["Dr. Smith met J. S. Bach in the U.S. Army.", 'He said "Go!"', "Then 2016 came. end of text"]
    assert split_sentences("   ") == []


def test_split_sentences_loses_no_words():
    text = "One. Two three? Four! (Five.) Six... Seven"
    assert " ".join(split_sentences(text)).split() == text.split()


@pytest.mark.parametrize("text,stop,expected", [
    ("Paris.\nNext", ["\n"], (6, True)),
    ("Paris [", ["[END]"], (6, False)),  # "[" may grow into the stop string: hold it back
    ("Paris [1]", ["[END]"], (9, False)),
    ("caf\ufffd", [], (3, False)),  # half a UTF-8 character
    ("abc", ["b", "c"], (1, True)),
])
def test_safe_end(text, stop, expected):
    assert _safe_end(text, stop) == expected


BLOCKS = [ContextBlock("Denver Broncos won the game.", ["p1"]), ContextBlock("Carolina Panthers lost.", ["p2", "p3"])]


def test_cite_markers_map_to_passages():
    cites = cite("Broncos [1] and Panthers [2] [9]", BLOCKS)
    assert [(c.number, c.passage_ids, c.found_by) for c in cites] == [(1, ["p1"], "marker"), (2, ["p2", "p3"], "marker")]
    assert strip_citations("Broncos [1] [2]") == "Broncos"


def test_cite_without_markers_attributes_by_overlap():
    assert [(c.number, c.found_by) for c in cite("Carolina Panthers", BLOCKS)] == [(2, "overlap")]
    assert cite("something unrelated entirely", BLOCKS) == []


# --- RECOMP extractive vs a plain reference -------------------------------------------------------
class BagOfWords:
    """A deterministic stand-in for the dense encoder: normalised word counts over a fixed vocabulary."""

    def __init__(self, texts):
        self.vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in t.lower().split()}))}

    def _encode(self, texts):
        out = np.zeros((len(texts), len(self.vocab) + 1), np.float32)
        for r, t in enumerate(texts):
            for w in t.lower().split():
                out[r, self.vocab.get(w, len(self.vocab))] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    encode_queries = encode_documents = _encode


def words(text: str) -> int:
    return len(text.split())


def _reference_extract(query, passages, budget, enc):
    units = [(i, j, s) for i, p in enumerate(passages) for j, s in enumerate(split_sentences(p.text))]
    q = enc.encode_queries([query])[0]
    ranked = sorted(range(len(units)), key=lambda u: (-float(enc.encode_documents([units[u][2]])[0] @ q), u))
    kept, used = [], 0
    for u in ranked:
        if used + words(units[u][2]) <= budget:
            kept.append(u)
            used += words(units[u][2])
    return [units[u][2] for u in sorted(kept)]


@pytest.mark.parametrize("budget", [0, 5, 12, 25, 1000])
def test_recomp_extractive_matches_reference(budget):
    passages = [
        Hit("a", 2.0, 1, title="A", text="The cat sat on the mat. Dogs bark loudly at night. The cat likes fish."),
        Hit("b", 1.0, 2, title="B", text="Fish swim in the sea. A cat cannot swim well. Birds fly south."),
    ]
    query = "what does the cat like to eat fish"
    enc = BagOfWords([p.text for p in passages] + [query])
    out = RecompExtractive(words, enc).compress(query, passages, budget)
    expected = _reference_extract(query, passages, budget, enc)
    assert [s for b in out.blocks for s in split_sentences(b.text)] == expected
    assert out.output_tokens <= budget and out.input_tokens == sum(words(p.text) for p in passages)
    assert all(len(b.passage_ids) == 1 for b in out.blocks)
    assert [b.passage_ids[0] for b in out.blocks] == sorted({b.passage_ids[0] for b in out.blocks})  # passage order kept


# --- the pipeline with a scripted generator -----------------------------------------------------
class ScriptedGenerator:
    """Counts words as tokens and answers with a fixed text; records the prompts it was given."""

    name, max_context = "scripted", 200
    check_fits = Generator.check_fits

    def __init__(self, reply="Denver Broncos [1]"):
        self.reply, self.prompts = reply, []

    def count_tokens(self, text):
        return words(text)

    def encode_chat(self, messages):
        self.prompts.append(messages)
        return list(range(sum(words(m["content"]) for m in messages)))

    def stream(self, prompt, max_new_tokens=64, stop=(), temperature=0.0, seed=0, stats=None, prefix=None):
        stats.prompt_tokens, stats.new_tokens, stats.finish_reason = len(prompt), 3, "stop"
        yield from re.findall(r"\S+\s*", self.reply)

    def generate(self, messages, **kwargs):
        stats = GenerationStats()
        return "".join(self.stream(self.encode_chat(messages), stats=stats)), stats


HITS = [Hit("0-0", 0.9, 1, title="Super Bowl 50", text="The Denver Broncos won. The game was in Santa Clara."),
        Hit("0-1", 0.4, 2, title="Super Bowl 50", text="Carolina lost the game.")]


def answerer(reply="Denver Broncos [1]", **compress):
    gen = ScriptedGenerator(reply)
    return Answerer(gen, lambda q, k, mode: HITS[:k], CompressConfig(**compress), dense_encoder=lambda: BagOfWords([h.text for h in HITS] + ["who won"])), gen


def test_answer_uses_context_and_cites():
    a, gen = answerer()
    result = a.answer("Who won Super Bowl 50?")
    assert not result.closed_book and result.note == ""
    assert [(c.number, c.passage_ids) for c in result.citations] == [(1, ["0-0"])]
    assert "The Denver Broncos won." in gen.prompts[-1][-1]["content"]
    assert result.stats["context_tokens"] == result.stats["retrieved_tokens"] == 14


def test_extractive_budget_and_rate():
    a, _ = answerer(budget_ratio=0.5)
    result = a.answer("who won", mode="recomp-extractive")
    assert result.stats["context_tokens"] <= 7 and result.stats["compression_rate"] <= 0.5


def test_abstain_threshold_answers_closed_book():
    a, gen = answerer(abstain_threshold=0.95)
    result = a.answer("Who won?")
    assert result.closed_book and "0.900" in result.note and result.citations == []
    assert "Passages" not in gen.prompts[-1][-1]["content"]


def test_empty_compression_answers_closed_book():
    a, _ = answerer(reply="NONE")
    result = a.answer("Who won?", mode="recomp-abstractive")
    assert result.closed_book and "recomp-abstractive found nothing" in result.note


def test_bad_input_is_a_user_error():
    a, _ = answerer()
    with pytest.raises(SprigError, match="expected one of none, recomp-extractive, recomp-abstractive"):
        a.answer("Who won?", mode="refrag-magic")
    with pytest.raises(SprigError, match="empty"):
        a.answer("   ")
    with pytest.raises(SprigError, match="over the 200-token context"):
        a.answer("why " * 190)


# --- SQuAD reading and scoring ---------------------------------------------------------------------
def test_read_squad_sample_and_score(tmp_path):
    path = tmp_path / "squad.json"
    paras = [{"context": h.text, "qas": [{"id": f"q{i}", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 4}]}]}
             for i, h in enumerate(HITS)]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Super_Bowl_50", "paragraphs": paras}]}))
    items = read_squad(path)
    assert [i.qid for i in items] == ["q0", "q1"] and items[0].title == "Super Bowl 50"
    assert sample(items, 1, seed=3) == sample(items, 1, seed=3) and sample(items, 0, 0) == items
    a, _ = answerer()
    rec = score(a.answer("Who won?"), items[0])
    assert rec["EM"] == 1.0 and rec["gold_in_context"] == 1.0 and rec["answer_in_context"] == 1.0
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SprigError, match="not a SQuAD json file"):
        read_squad(bad)


def test_budget_ratio_per_call_overrides_the_config():
    a, _ = answerer(budget_ratio=1.0)
    full = a.answer("who won", mode="recomp-extractive")
    half = a.answer("who won", mode="recomp-extractive", budget_ratio=0.5)
    assert full.stats["context_tokens"] == 14 and half.stats["context_tokens"] <= 7
    s = half.stats
    assert s["ttft_cpu_ms"] == pytest.approx(s["retrieve_cpu_ms"] + s["compress_cpu_ms"] + s["prefill_cpu_ms"])
    assert s["ttft_ms"] == pytest.approx(s["retrieve_ms"] + s["compress_ms"] + s["prefill_ms"])


@pytest.mark.parametrize("row,expected", [("oracle", ("oracle", None)), ("none", ("none", None)),
                                          ("recomp-extractive@0.1", ("recomp-extractive", 0.1))])
def test_parse_row(row, expected):
    assert parse_row(row) == expected


@pytest.mark.parametrize("row", ["refrag-magic", "oracle@0.5", "recomp-extractive@0", "recomp-extractive@1.5", "none@x"])
def test_parse_row_refuses(row):
    with pytest.raises(SprigError, match="unknown QA row"):
        parse_row(row)


def test_against_matches_plain_means():
    rng = np.random.default_rng(1)
    rows = [[{"F1": float(rng.random()), **{k: float(rng.random()) + 0.1 for k in RATIOS}} for _ in range(9)] for _ in range(2)]
    out = against(*rows)
    diffs = [100 * (a["F1"] - b["F1"]) for a, b in zip(*rows)]
    assert out["F1_diff"] == pytest.approx(sum(diffs) / len(diffs))
    assert min(diffs) <= out["F1_diff_ci95"][0] <= out["F1_diff"] <= out["F1_diff_ci95"][1] <= max(diffs)
    for k in RATIOS:
        assert out[f"{k}_ratio"] == pytest.approx(sum(r[k] for r in rows[0]) / sum(r[k] for r in rows[1]))


def test_evaluate_qa_rows_budgets_and_retrieval_charge():
    a, _ = answerer()
    items = [QAItem("q0", "who won", ["Denver Broncos"], HITS[0].text, "Super Bowl 50")]
    metrics, shared = evaluate_qa(a, items, a.retrieve, ("closed-book", "none", "recomp-extractive@0.5"), k=2)
    assert set(metrics) == {"closed-book", "none", "recomp-extractive@0.5"} and shared["gold_in_top2"] == 1.0
    assert metrics["recomp-extractive@0.5"]["context_tokens"] <= 7 and metrics["none"]["context_tokens"] == 14
    assert metrics["closed-book"]["retrieve_ms"] == 0 and metrics["none"]["retrieve_ms"] > 0
    assert metrics["none"]["vs_none"]["context_tokens_ratio"] == 1.0
    assert metrics["recomp-extractive@0.5"]["vs_none"]["context_tokens_ratio"] <= 0.5


def test_sparse_attention_settings_follow_the_attention_section():
    import inspect

    from sprig.rag.sparse_attention import apply_sparse_attention

    assert sparse_attention_settings(SprigConfig()) is None
    settings = sparse_attention_settings(SprigConfig(attention={"mode": "sparse", "budget": 0.5}))
    assert settings["budget"] == 0.5 and set(settings) <= set(inspect.signature(apply_sparse_attention).parameters)
