import numpy as np
import pytest
import torch

from sprig.core.config import SpladeConfig
from sprig.core.errors import SprigError
from sprig.core.models import default_dense, default_splade
from sprig.encoders.splade import (
    SpladeEncoder,
    splade_pool,
    splade_reference,
    to_sparse_vecs,
)


def densify(vecs, dim):
    out = np.zeros((len(vecs), dim), np.float32)
    for i, v in enumerate(vecs):
        out[i, v.term_ids] = v.weights
    return out


def test_chunked_pooling_equals_full_logits_reference():
    """The chunked, pool-as-you-go head equals log1p(relu) max pooling over full masked logits."""
    g = torch.Generator().manual_seed(0)
    lengths = [7, 1, 13]  # irregular, one single-token document
    hidden = torch.randn(sum(lengths), 24, generator=g)
    weight, bias = torch.randn(1003, 24, generator=g), torch.randn(1003, generator=g)
    padded = torch.zeros(3, 13, 24)
    mask = torch.zeros(3, 13)
    for i, (start, n) in enumerate(zip(np.cumsum([0] + lengths[:-1]), lengths)):
        padded[i, :n], mask[i, :n] = hidden[start : start + n], 1
    expected = splade_reference(padded @ weight.T + bias, mask)
    for chunk in (1003, 256, 100):
        assert torch.allclose(splade_pool(hidden, lengths, weight, bias, chunk), expected, atol=1e-6)


def test_vectors_equal_sentence_transformers_sparse_encoder(splade_encoder, scifact_docs):
    from sentence_transformers import SparseEncoder

    texts = [f"{d.title} {d.text}" for d in scifact_docs[:24]] + ["", "a"]
    ours = densify(splade_encoder.encode_documents(texts), splade_encoder.vocab_size)
    reference = SparseEncoder(default_splade(), device="cpu")
    reference.max_seq_length = 512
    theirs = reference.encode_document(texts, batch_size=8, convert_to_tensor=True).to_dense().numpy()
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours > 0).sum(1).mean() > 100  # real expansion, not an empty encoder


def test_bfloat16_cpu_head_stays_within_a_percent_of_float32(splade_encoder, scifact_docs):
    """The bf16 head (an option, recorded by the index) changes weights by rounding only: the same terms almost
    everywhere, every weight within 2% of the largest."""
    fast = SpladeEncoder(SpladeConfig(batch_size=16, doc_max_length=128, cpu_head="bfloat16"), device="cpu")
    exact = SpladeEncoder(SpladeConfig(batch_size=16, doc_max_length=128), device="cpu")
    texts = [f"{d.title} {d.text}" for d in scifact_docs[:16]]
    a, b = (densify(e.encode_documents(texts), e.vocab_size) for e in (exact, fast))
    assert fast.weight.dtype == torch.bfloat16 and fast.settings()["cpu_head"] == "bfloat16"
    assert np.abs(a - b).max() < 0.02 * a.max()
    jaccard = ((a > 0) & (b > 0)).sum() / ((a > 0) | (b > 0)).sum()
    assert jaccard > 0.98


def test_queries_truncate_at_query_max_length(splade_encoder):
    long_query = " ".join(["protein"] * 50 + ["zebrafish"] * 400)
    short = SpladeEncoder(SpladeConfig(query_max_length=32), device="cpu")
    assert splade_encoder.encode_queries([long_query])[0].dot(short.encode_queries([long_query])[0]) > 0
    zebra = splade_encoder.tokenizer.convert_tokens_to_ids("zebra")
    assert zebra in splade_encoder.encode_queries([long_query])[0].term_ids
    assert zebra not in short.encode_queries([long_query])[0].term_ids


def test_pruning_by_top_k_and_threshold():
    pooled = torch.tensor([[0.0, 0.5, 2.0, 0.1, 1.0]])
    assert to_sparse_vecs(pooled)[0].term_ids.tolist() == [1, 2, 3, 4]
    assert to_sparse_vecs(pooled, top_k=2)[0].term_ids.tolist() == [2, 4]
    assert to_sparse_vecs(pooled, threshold=0.4)[0].term_ids.tolist() == [1, 2, 4]


def test_not_a_masked_lm_is_a_clear_error(tmp_path):
    with pytest.raises(SprigError, match="masked"):
        SpladeEncoder(SpladeConfig(model=default_dense()), device="cpu")
    with pytest.raises(SprigError, match="no config.json"):
        SpladeEncoder(SpladeConfig(model=str(tmp_path)), device="cpu")
