"""The packed document pipeline (sprig/encoders/packed.py) gives the padded path's vectors, on CPU with SPLADE-tiny."""
import numpy as np
import pytest
import torch

from sprig.core.config import SpladeConfig
from sprig.encoders import packed
from sprig.encoders.splade import SpladeEncoder, splade_pool

MAX_LENGTH = 48


@pytest.fixture(scope="module")
def texts(scifact_docs):
    """20 texts in no length order: empty, one letter, sentences, passages past MAX_LENGTH tokens."""
    docs = [f"{d.title} {d.text}" for d in scifact_docs[:14]]
    return ["", docs[0]] + [d.split(".")[0] for d in docs[1:7]] + ["a"] + docs[7:] + [" ".join(docs[:3]), "retrieval", "x y z"]


def encoders(**options) -> tuple[SpladeEncoder, SpladeEncoder]:
    """(padded, packed) encoders on CPU in float32; 64 tokens per packed batch, so a passage is a batch of its own."""
    config = dict(doc_max_length=MAX_LENGTH, batch_size=4, cpu_head="float32", token_budget=64) | options
    return SpladeEncoder(SpladeConfig(**config), device="cpu"), SpladeEncoder(SpladeConfig(**config), device="cpu", packed_docs=True)


def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.term_ids, b.term_ids)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4, atol=1e-5)  # float32 sums in another order: ≤ 4e-6


def test_packed_documents_equal_padded_ones_in_input_order(texts):
    padded, packed_enc = encoders()
    assert packed_enc.packed_docs and not padded.packed_docs and "packed batches" in packed_enc.path()
    stats = packed.Stats()
    weight = packed_enc._doc_weight()
    head = lambda hidden, lengths: splade_pool(hidden, lengths, weight, packed_enc.bias, 4096)  # noqa: E731
    pipeline = packed.PackedEncoder(packed_enc.model, packed_enc.tokenizer, head, "cpu", token_budget=64)
    got = pipeline.encode(texts, MAX_LENGTH, stats=stats)
    assert stats.batches >= 5 and stats.tokens == stats.padded_tokens  # several batches, no padding
    ids = packed_enc.tokenizer([t or " " for t in texts], truncation=True, max_length=MAX_LENGTH)["input_ids"]
    assert stats.tokens == sum(map(len, ids))
    expected = padded.encode_documents(texts)
    assert_same(got, expected)
    assert_same(packed_enc.encode_documents(texts), expected)
    assert all(len(v) > 0 for v in expected)  # the empty text too: its special tokens
    # queries stay padded; on the varlen model they get SDPA with the padding mask
    assert_same(packed_enc.encode_queries(texts[:8]), padded.encode_queries(texts[:8]))


def test_packed_documents_honour_top_k_and_threshold(texts):
    padded, packed_enc = encoders(doc_top_k=7, threshold=0.4)
    got = packed_enc.encode_documents(texts)
    assert_same(got, padded.encode_documents(texts))
    assert all(len(v) <= 7 and (v.weights > 0.4).all() for v in got) and max(map(len, got)) == 7


def test_packed_path_is_cuda_only_by_default_and_empty_input_is_fine():
    assert not packed.available("cpu")
    _, packed_enc = encoders()
    assert packed_enc.encode_documents([]) == []


def test_an_error_on_a_thread_reaches_the_caller():
    _, packed_enc = encoders()

    def head(hidden, lengths):
        raise RuntimeError("head failed")

    with pytest.raises(RuntimeError, match="head failed"):
        packed.PackedEncoder(packed_enc.model, packed_enc.tokenizer, head, "cpu", token_budget=8).encode(["a b c"] * 50, MAX_LENGTH)
    with pytest.raises(TypeError):  # the tokenizer thread's
        packed.PackedEncoder(packed_enc.model, packed_enc.tokenizer, head, "cpu").encode([None, 3], MAX_LENGTH)


def test_packed_path_only_for_models_it_reproduces(splade_encoder):
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    assert packed.supports(splade_encoder.model)
    ids = dict(pad_token_id=0, eos_token_id=1, bos_token_id=2, cls_token_id=2, sep_token_id=1)
    sliding = ModernBertForMaskedLM(ModernBertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                     num_attention_heads=2, **ids))
    assert not packed.supports(sliding)  # its local layers attend within a window


def test_roberta_style_positions_match_its_padded_batches(splade_encoder, texts):
    """RoBERTa numbers positions after its padding id: packed position ids start there too."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from sprig.encoders.splade import _detach_output_projection

    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig(vocab_size=splade_encoder.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, pad_token_id=1, max_position_embeddings=MAX_LENGTH + 2)).eval()
    packed.use_varlen(model)
    weight, bias = _detach_output_projection(model)
    head = lambda hidden, lengths: splade_pool(hidden, lengths, weight, bias, 4096)  # noqa: E731
    assert packed.position_offset(model) == 2
    got, expected = (packed.PackedEncoder(model, splade_encoder.tokenizer, head, "cpu", 64, packed=p).encode(texts, MAX_LENGTH)
                     for p in (True, False))
    assert_same(got, expected)


def test_packed_batch_layout():
    b = packed.Batch([4, 9], [np.array([5, 6, 7]), np.array([8])], packed=True, pin=False, first_position=2)
    ids, positions, cu = (t.tolist() for t in b.tensors)
    assert ids == [[5, 6, 7, 8]] and positions == [[2, 3, 4, 2]] and cu == [0, 3, 4] and b.max_len == 3
    assert torch.equal(b.tensors[2], torch.tensor([0, 3, 4], dtype=torch.int32))
