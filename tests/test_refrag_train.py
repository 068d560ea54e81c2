"""REFRAG training and its benchmark without the real models: the data split, the stage examples, the loss
against a plain full-logits reference, batched generation against the one-sequence answer path, the bootstrap,
and the shipped-projector lookup; on the tiny random Llama and Gemma of test_refrag."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sprig.core.errors import InputError
from sprig.core.types import Hit
from sprig.eval.bench.refrag_eval import mean_ci
from sprig.eval.bench.refrag_generate import generate_batch
from sprig.rag.generator import EMBEDDED, EmbeddedPrompt
from sprig.rag.prompt import RAG_PREFIX
from sprig.rag.refrag_projector import ChunkProjector, shipped_projector
from sprig.rag.refrag_split import (
    EVAL_ARTICLES,
    TRAIN_ARTICLES,
    is_training_text,
    question_articles,
    squad_article,
)
from sprig.rag.refrag_stages import (
    QAExample,
    answer_target,
    following_paragraphs,
    next_paragraph_examples,
    qa_examples,
    reconstruction_example,
)
from sprig.rag.refrag_train import (
    IGNORE,
    TrainingPassage,
    continuation,
    fit,
    predictions,
    sampler,
    token_accuracy,
)
from tests.conftest import dataset
from tests.test_refrag import (
    ARCHS,
    PASSAGES,
    QUESTION,
    SPEC,
    compressor,
    tiny_generator,
)


@pytest.fixture(scope="module", params=sorted(ARCHS))
def generator(request, tmp_path_factory):
    """The tiny random Llama and Gemma with SmolLM2's tokenizer (test_refrag's models)."""
    return tiny_generator(tmp_path_factory.mktemp(request.param), request.param)


# --- the split --------------------------------------------------------------------------------------------
def test_the_split_keeps_articles_16_to_23_out_of_training():
    assert set(TRAIN_ARTICLES).isdisjoint(EVAL_ARTICLES) and [*TRAIN_ARTICLES, *EVAL_ARTICLES] == list(range(24))
    assert squad_article("15-3") == 15 and is_training_text("squad-a", "15-40") and not is_training_text("squad-a", "16-0")
    assert is_training_text("scifact", "4983") and is_training_text("nfcorpus", "MED-10")  # no evaluation questions there
    with pytest.raises(InputError, match="not a squad-a passage id"):
        squad_article("MED-10")


def test_every_squad_question_has_the_article_of_its_gold_paragraph():
    articles = question_articles(dataset("squad-a"))
    assert len(articles) == 5696 and articles["56be4db0acb8001400a502ec"] == 0  # the first question: Super Bowl 50
    held_out = sum(a in EVAL_ARTICLES for a in articles.values())
    assert held_out == 183 + 182 + 136 + 106 + 108 + 116 + 264 + 295  # articles 16-23 of squad-dev-a.json


# --- stage examples ---------------------------------------------------------------------------------------
def passage(n_tokens: int, k: int, dim: int = 32, start: int = 100) -> TrainingPassage:
    ids = list(range(start, start + n_tokens))
    tokens = np.diff(np.append(np.arange(0, n_tokens, k), n_tokens)).astype(np.int32)
    return TrainingPassage(ids, tokens, np.arange(len(tokens) * dim, dtype=np.float32).reshape(-1, dim))


def test_continuation_predicts_the_target_after_the_prefix():
    e = continuation([7, EMBEDDED, EMBEDDED], np.zeros((2, 4), np.float32), [1, 2, 3])
    assert e.ids == [7, EMBEDDED, EMBEDDED, 1, 2] and e.labels == [IGNORE, IGNORE, 1, 2, 3]


def test_reconstruction_reads_chunks_and_reproduces_their_tokens():
    p = passage(20, 8)
    e = reconstruction_example(p, 2)
    assert e.ids == [EMBEDDED] * 2 + p.ids[:15] and e.labels == [IGNORE] + p.ids[:16]
    assert np.array_equal(e.vectors, p.vectors[:2])
    assert reconstruction_example(p, 9).labels[2:] == p.ids  # more chunks than the passage has: all of it


def test_next_paragraph_follows_within_an_article_else_the_second_half():
    assert following_paragraphs(["3-0", "3-1", "3-3", "4-0", "MED-1", "77"]) == [1, None, None, None, None, None]
    a, b, single = passage(20, 8), passage(30, 8, start=500), passage(5, 8)
    examples = next_paragraph_examples([a, b, single], [1, None, None], next_tokens=10)
    assert len(examples) == 2  # a one-chunk passage has no second half
    assert examples[0].ids == [EMBEDDED] * 3 + b.ids[:9] and examples[0].labels[2:] == b.ids[:10]
    assert np.array_equal(examples[0].vectors, a.vectors)
    assert examples[1].ids[:2] == [EMBEDDED] * 2 and examples[1].labels[1:] == b.ids[16:26]  # 2 of 4 chunks read


def test_answer_target_cites_the_gold_paragraph_when_retrieved():
    hits = [Hit("1-2", 1.0, 1), Hit("0-0", 0.5, 2)]
    assert answer_target(QAExample("q", "Denver Broncos", hits, "0-0")) == "Denver Broncos [2]"
    assert answer_target(QAExample("q", "Denver Broncos", hits, "9-9")) == "Denver Broncos"


def test_qa_examples_are_the_answer_paths_prompt_then_the_answer(generator):
    refrag = compressor(generator, 8)
    qa = QAExample(QUESTION, "Denver Broncos", PASSAGES, PASSAGES[0].passage_id)
    [example] = qa_examples(refrag, [qa], [0.0])
    prompt = refrag.compress(QUESTION, PASSAGES, 0).decoder_input
    answer = generator.tokenizer("Denver Broncos [1]", add_special_tokens=False)["input_ids"] + [generator.tokenizer.eos_token_id]
    assert example.ids == prompt.ids + answer[:-1] and example.labels[len(prompt.ids) - 1:] == answer
    with torch.no_grad():  # its vectors are the raw chunk vectors the compressor projects
        torch.testing.assert_close(refrag.projector(torch.from_numpy(example.vectors)), prompt.embeds)


# --- the loss and the loop --------------------------------------------------------------------------------
def test_predictions_equal_the_full_logits_of_each_sequence(generator):
    """Right-padded batch, labelled positions only, against each example's own forward pass with its own embeddings."""
    torch.manual_seed(0)
    projector = ChunkProjector(SPEC.__class__(generator.label, 64, "v", 32, 4))
    batch = [continuation([EMBEDDED, 5, EMBEDDED], np.random.rand(2, 32).astype(np.float32), [9, 10, 11]),
             continuation([EMBEDDED], np.random.rand(1, 32).astype(np.float32), [12, 13])]
    with torch.no_grad():
        logits, targets = predictions(generator.model, projector, batch)
        reference = []
        for e in batch:
            ids = torch.tensor(e.ids)
            x = generator.model.get_input_embeddings()(ids.clamp(min=0))
            x[ids == EMBEDDED] = projector(torch.from_numpy(e.vectors))
            full = generator.model(inputs_embeds=x[None]).logits[0]
            reference.append(full[torch.tensor(e.labels) != IGNORE])
    torch.testing.assert_close(logits, torch.cat(reference), atol=1e-4, rtol=1e-4)
    assert targets.tolist() == [9, 10, 11, 12, 13]


def test_fit_trains_the_projector_alone_and_accuracy_rises(generator):
    torch.manual_seed(0)
    projector = ChunkProjector(SPEC.__class__(generator.label, 64, "v", 32, 4))
    examples = [continuation([EMBEDDED], np.eye(32, dtype=np.float32)[i : i + 1], [200 + i, 300 + i]) for i in range(4)]
    before = token_accuracy(generator.model, projector, examples)
    frozen = [p.detach().clone() for p in generator.model.parameters()]
    losses = fit(generator.model, projector, sampler(examples, 4, 0), steps=60, lr=1e-2)
    assert len(losses) == 60 and losses[-1] < losses[0] / 2 and token_accuracy(generator.model, projector, examples) > before
    assert all(torch.equal(a, b) for a, b in zip(frozen, generator.model.parameters()))
    assert fit(generator.model, projector, sampler(examples, 4, 0), steps=1000, lr=1e-3, max_seconds=0.0) == []



def test_fit_skips_a_non_finite_step_and_keeps_the_weights_finite(generator):
    """One batch whose chunk vector is NaN: that step is recorded as NaN and skipped, the others still train."""
    torch.manual_seed(0)
    projector = ChunkProjector(SPEC.__class__(generator.label, 64, "v", 32, 4))
    good = continuation([EMBEDDED], np.eye(32, dtype=np.float32)[:1], [200, 300])
    bad = continuation([EMBEDDED], np.full((1, 32), np.nan, dtype=np.float32), [200, 300])
    batches = iter([[good], [bad], [good]])
    losses = fit(generator.model, projector, lambda _progress: next(batches), steps=3, lr=1e-2)
    assert np.isfinite(losses[0]) and np.isnan(losses[1]) and np.isfinite(losses[2])
    assert all(torch.isfinite(p).all() for p in projector.parameters())

# --- benchmark helpers --------------------------------------------------------------------------------------
def test_batched_generation_answers_as_the_answer_path(generator):
    refrag = compressor(generator, 8)
    prompts = [refrag.compress(QUESTION, PASSAGES[:n], 0).decoder_input for n in (1, 3)]
    prompts.append(generator.encode_chat([*RAG_PREFIX, {"role": "user", "content": QUESTION}]))
    one_by_one = [generator.generate(p, max_new_tokens=6)[0].split("\n")[0].strip() for p in prompts]
    assert generate_batch(generator, prompts, max_new_tokens=6, batch_size=3) == one_by_one
    assert isinstance(prompts[0], EmbeddedPrompt)


def test_mean_ci_brackets_the_mean():
    mean, (lo, hi) = mean_ci([0.0, 1.0] * 50)
    assert mean == 0.5 and lo < 0.5 < hi and hi - lo < 0.25
    assert mean_ci([3.0] * 10) == (3.0, [3.0, 3.0])


def test_merge_pairs_rows_run_apart_question_by_question(monkeypatch):
    from sprig.eval.bench import refrag_eval
    from sprig.eval.qa import QAItem

    items = [QAItem(f"q{i}", "?", ["paris"], "", "") for i in range(40)]
    monkeypatch.setattr(refrag_eval, "squad_questions", lambda data, articles: items)
    right = {q.qid: "Paris [1]" if i % 2 else "Rome" for i, q in enumerate(items)}  # half right
    wrong = {q.qid: "Rome" for q in items}

    def report(row, answers, command):
        return {"rows": {row: {"F1": 0.0, "answers": answers, "F1_vs_none": 9.9}}, "questions": len(items),
                "chunk_vector_bytes": {}, "prompt_seconds": 1.0, "decoder": "d", "device": "cuda", "settings": {},
                "projectors": {}, "command": command, "wall_s": 1.0, "provenance": {}}

    merged = refrag_eval.merge(None, [report("none", wrong, "a"), report("refrag-k16@0.1", right, "b")])
    assert list(merged["rows"]) == ["none", "refrag-k16@0.1"] and merged["prompt_seconds"] == {"a": 1.0, "b": 1.0}
    diff = merged["rows"]["refrag-k16@0.1"]
    assert diff["F1_vs_none"] == pytest.approx(50.0) and diff["F1_vs_none_ci95"][0] < 50.0 < diff["F1_vs_none_ci95"][1]
    assert merged["rows"]["none"]["F1_vs_none"] == 0.0
    again = refrag_eval.merge(None, [merged, report("refrag-k8@0", right, "c")])  # a merge merges on
    assert again["prompt_seconds"] == {"a": 1.0, "b": 1.0, "c": 1.0} and [m["command"] for m in again["merged"]] == ["a", "b", "c"]
    assert again["rows"]["refrag-k8@0"]["F1_vs_none"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="questions"):
        refrag_eval.merge(None, [report("none", wrong, "a") | {"questions": 3}])


def test_shipped_projector_is_found_only_for_its_exact_setup(tmp_path):
    ChunkProjector(SPEC).save(tmp_path / "tiny-k4")
    assert shipped_projector(SPEC, tmp_path) == tmp_path / "tiny-k4"
    assert shipped_projector(SPEC.__class__(*[*vars(SPEC).values()][:-1], 8), tmp_path) is None
    assert shipped_projector(SPEC, tmp_path / "absent") is None


def test_plot_joins_the_gpu_quality_rows_with_the_cpu_ttft_rows(tmp_path):
    from sprig.eval.bench.refrag_plot import joined_rows, plot_f1_vs_positions, plot_f1_vs_ttft

    pairs = joined_rows()
    assert pairs == {"none": "none", "recomp-extractive=refrag-k16@0.1": "recomp-extractive@0.15625", "refrag-k16@0": "refrag@0",
                     "refrag-k16@0.1": "refrag@0.1", "refrag-k16@0.25": "refrag@0.25"}
    assert joined_rows(8) == {"none": "none", "refrag-k8@0": "refrag@0", "refrag-k8@0.1": "refrag@0.1", "refrag-k8@0.25": "refrag@0.25"}
    quality = {"rows": {row: {"F1": 10.0 + i, "F1_ci95": [9.0 + i, 11.0 + i]}
                        for i, row in enumerate([*pairs, *list(joined_rows(8))[1:], "oracle", "closed-book"])}}
    ttfts = [{"k": k, "rows": {row: {"ttft_cpu_ms": 100.0 * (i + 1)} for i, row in enumerate(joined_rows(k).values())}} for k in (16, 8)]
    plot_f1_vs_ttft(quality, ttfts, tmp_path / "f1.png")
    assert (tmp_path / "f1.png").stat().st_size > 10_000
    for m in quality["rows"].values():
        m["context_positions"] = 100.0
    plot_f1_vs_positions(quality, tmp_path / "positions.png")  # every row; k = 8 and 32 absent here
    assert (tmp_path / "positions.png").stat().st_size > 10_000


def test_report_tables_come_from_the_runs_json(tmp_path):
    import json

    from sprig.eval.bench.refrag_report import render
    from sprig.eval.bench.refrag_ttft import rows as ttft_rows

    row = {"EM": 5.0, "EM_ci95": [4.0, 6.0], "F1": 20.0, "F1_ci95": [18.0, 22.0], "F1_vs_none": -1.5, "F1_vs_none_ci95": [-2.5, -0.5],
           "context_positions": 140.0, "prompt_positions": 300.0}
    rows = {name: row for name in ("none", "refrag-k16@0.1", "recomp-extractive=refrag-k16@0.1")}
    (tmp_path / "eval.json").write_text(json.dumps({"rows": rows, "chunk_vector_bytes": {"16": 2**20}, "questions": 1390}))
    timing = {"prompt_tokens": 300, "retrieve_cpu_ms": 10, "compress_cpu_ms": 5, "prefill_cpu_ms": 100, "ttft_cpu_ms": 120}
    for k, speedup in ((16, 12.0), (8, 9.0)):
        rows = ttft_rows(k)
        ttft = {"k": k, "rows": {r: timing for r in rows},
                "speedup_vs_none": {r: {"prefill_cpu_ms_speedup": speedup, "ttft_cpu_ms_speedup": 6.0} for r in rows[1:]}}
        (tmp_path / f"ttft-{k}.json").write_text(json.dumps(ttft))
    text = render(tmp_path, [tmp_path / "ttft-16.json", tmp_path / "ttft-8.json"])
    assert text.index("TTFT at k = 8:") < text.index("TTFT at k = 16:")  # a table per chunk size, smallest first
    assert "| recomp-extractive@0.21250 | 300 |" in text and "| refrag@0.1 | 300 | 10 | 5 | 100 | 120 | 9.00x | 6.00x |" in text
    assert "| refrag-k16@0.1 | 5.0 (4.0 to 6.0) | 20.0 (18.0 to 22.0) | -1.5 (-2.5 to -0.5) | 140 | 300 |" in text
    assert "k = 16: 1.00 MiB" in text and "prefill at k = 16, p = 0 vs none: 12.00x (target 10x)" in text
    assert "| none | 300 | 10 | 5 | 100 | 120 | 1.00x | 1.00x |" in text
