"""Prefix caching in the generator, on a tiny random Llama (2 layers) with SmolLM2's tokenizer and chat
template: prefilling the rest of a prompt on a copy of the cached scaffold KV must give the logits of a
full prefill, and the same greedy tokens, dense and with sparse attention."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sprig.core.models import default_generator
from sprig.rag.compress.base import ContextBlock
from sprig.encoders.causal_lm import dequantised
from sprig.rag.generator import Generator
from sprig.rag.prompt import (
    CLOSED_BOOK_PREFIX,
    RAG_PREFIX,
    closed_book_messages,
    rag_messages,
)
from sprig.rag.sparse_attention import apply_sparse_attention

BLOCKS = [ContextBlock("The Denver Broncos beat the Carolina Panthers 24 to 10 in Super Bowl 50, which was played "
                       "at Levi's Stadium in Santa Clara. " * 3, ["0-0"], "Super Bowl 50"),
          ContextBlock("Carolina lost the game.", ["0-1"], "Super Bowl 50")]
QUESTION = "Who won Super Bowl 50?"


def tiny_generator(path) -> Generator:
    tokenizer = AutoTokenizer.from_pretrained(dequantised(*default_generator()))
    torch.manual_seed(0)  # initializer_range 0.3: a 1% error in the cached keys moves the logits past the tolerance
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         initializer_range=0.3, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Generator(str(path))


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return tiny_generator(tmp_path_factory.mktemp("tiny-llama"))


def logits(gen: Generator, prompt: list[int], prefix) -> tuple[torch.Tensor, int]:
    """Logits of the prompt positions that were prefilled, and how many leading tokens came from the cache."""
    cache, cached = gen._start_cache(prompt, prefix)
    with torch.inference_mode():
        out = gen.model(input_ids=torch.tensor([prompt[cached:]]), past_key_values=cache, use_cache=True)
    return out.logits[0], cached


@pytest.mark.parametrize("messages, prefix", [(rag_messages(QUESTION, BLOCKS), RAG_PREFIX),
                                              (closed_book_messages(QUESTION), CLOSED_BOOK_PREFIX)])
def test_prefix_cached_prefill_matches_full_prefill(generator, messages, prefix):
    prompt = generator.encode_chat(messages)
    full, none_cached = logits(generator, prompt, None)
    part, cached = logits(generator, prompt, prefix)
    assert none_cached == 0
    assert 0 < cached == len(generator.prefix_kv(prefix).ids) < len(prompt) - 1
    assert torch.allclose(part, full[cached:], atol=1e-5, rtol=1e-4)


def test_greedy_tokens_with_and_without_the_prefix_cache(generator):
    prompt = generator.encode_chat(rag_messages(QUESTION, BLOCKS))
    shared = [t.clone() for kv in generator.prefix_kv(RAG_PREFIX).kv for t in kv]
    plain, plain_stats = generator.generate(prompt, max_new_tokens=16)
    cached, cached_stats = generator.generate(prompt, max_new_tokens=16, prefix=RAG_PREFIX)
    assert cached == plain and cached_stats.new_tokens == plain_stats.new_tokens > 0
    assert plain_stats.cached_tokens == 0 and cached_stats.cached_tokens == len(generator.prefix_kv(RAG_PREFIX).ids)
    # the shared prefix KV is never written by a request
    assert all(torch.equal(a, b) for a, b in zip(shared, (t for kv in generator.prefix_kv(RAG_PREFIX).kv for t in kv)))


def test_prompt_not_starting_with_the_prefix_is_prefilled_whole(generator):
    prompt = generator.encode_chat(closed_book_messages(QUESTION))
    full, _ = logits(generator, prompt, None)
    part, cached = logits(generator, prompt, RAG_PREFIX)  # shares only the template's first tokens, if any
    assert cached < len(generator.prefix_kv(RAG_PREFIX).ids)
    assert torch.allclose(part, full[cached:], atol=1e-5, rtol=1e-4)


def test_sparse_attention_with_the_prefix_cache(tmp_path):
    gen = tiny_generator(tmp_path)
    apply_sparse_attention(gen.model, page_size=16, budget=0.25, dense_layers=1, recent_pages=1)
    prompt = gen.encode_chat(rag_messages(QUESTION, BLOCKS))
    assert len(prompt) > 8 * 16  # enough pages for the budget to drop some
    plain, _ = gen.generate(prompt, max_new_tokens=16)
    cached, stats = gen.generate(prompt, max_new_tokens=16, prefix=RAG_PREFIX)
    assert cached == plain and stats.cached_tokens > 0
