"""Inference-free encoding: corpus IDF and query lookups against plain references, and sentence-transformers
Router models (SparseStaticEmbedding | MLMTransformer + SpladePooling) read exactly as SparseEncoder reads them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sprig.core.config import InferenceFreeConfig
from sprig.core.errors import SprigError
from sprig.core.models import default_splade
from sprig.core.types import to_csr
from sprig.encoders.inference_free import (
    InferenceFreeEncoder,
    document_frequencies,
    lookup,
)

TEXTS = ["Coffee consumption is linked with a lower risk of type 2 diabetes.", "Insulin resistance precedes type 2 diabetes by many years.",
         "Tobacco smoking causes most cases of lung cancer. " * 12, ""]  # one text longer than every max length, one empty
QUERIES = ["does coffee prevent diabetes?", "lung lung cancer and smoking", "zzqx"]


@pytest.fixture(scope="module")
def default_encoder():
    """SPLADE-tiny's masked LM for documents, corpus IDF for queries (every token kept: four texts give small IDFs)."""
    return InferenceFreeEncoder(InferenceFreeConfig(doc_max_length=16, query_min_idf=0), device="cpu")


def test_corpus_idf_equals_a_plain_count(default_encoder):
    tokenizer = default_encoder.tokenizer
    df, n = document_frequencies(tokenizer, iter(TEXTS), default_encoder.vocab_size, batch_size=3)
    sets = [set(tokenizer.encode(t, add_special_tokens=False)) for t in TEXTS]
    assert n == len(TEXTS) and {int(t): int(df[t]) for t in np.flatnonzero(df)} == {t: sum(t in s for s in sets) for t in set().union(*sets)}
    with pytest.raises(SprigError, match="fit the encoder"):
        default_encoder.encode_queries(["coffee"])
    idf = default_encoder.fit(TEXTS).idf
    diabetes = tokenizer.convert_tokens_to_ids("diabetes")
    assert idf.dtype == np.float32 and idf[diabetes] == pytest.approx(math.log(1 + (4 - 2 + 0.5) / (2 + 0.5)))
    assert idf.min() > 0  # a token in every text keeps a positive weight
    query = default_encoder.encode_queries(["diabetes diabetes"])[0]
    assert query.term_ids.tolist() == [diabetes] and query.weights[0] == idf[diabetes]
    default_encoder.query_min_idf = float(idf[diabetes]) + 1e-3  # the floor drops a token whose IDF is under it
    try:
        assert len(default_encoder.encode_queries(["diabetes diabetes"])[0]) == 0
    finally:
        default_encoder.query_min_idf = 0.0


def test_query_lookup_counts_a_token_once_and_drops_zero_weights():
    weights = np.array([0.0, 1.5, 2.0, 0.0, 3.0], np.float32)
    vec = lookup([4, 1, 4, 0, 2, 4], weights)
    assert vec.term_ids.tolist() == [1, 2, 4] and vec.weights.tolist() == [1.5, 2.0, 3.0]
    floored = lookup([4, 1, 4, 0, 2, 4], weights, min_weight=2.0)
    assert floored.term_ids.tolist() == [2, 4] and floored.weights.tolist() == [2.0, 3.0]


def router_model(path, activation: str, max_length: int = 32):
    """A tiny inference-free SparseEncoder built from SPLADE-tiny's files, saved to ``path``."""
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (
        MLMTransformer,
        Router,
        SparseStaticEmbedding,
        SpladePooling,
    )

    doc = MLMTransformer(default_splade(), max_seq_length=max_length)
    weights = torch.rand(len(doc.tokenizer.get_vocab()), generator=torch.Generator().manual_seed(0)) * 3
    weights[::3] = 0  # tokens the model never weights
    query = SparseStaticEmbedding(tokenizer=doc.tokenizer, weight=weights, frozen=True)
    router = Router.for_query_document(query_modules=[query], document_modules=[doc, SpladePooling("max", activation_function=activation)])
    SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu").save(str(path))
    return path


@pytest.mark.parametrize("activation", ["relu", "log1p_relu"])
def test_router_model_encodes_as_sentence_transformers(tmp_path, activation):
    from sentence_transformers.sparse_encoder import SparseEncoder

    path = router_model(tmp_path / "router", activation)
    ours = InferenceFreeEncoder(InferenceFreeConfig(model=str(path), doc_max_length=32, query_weights="model", batch_size=2, cpu_head="float32"), device="cpu")
    reference = SparseEncoder(str(path), device="cpu")
    for mine, theirs in [(ours.encode_documents(TEXTS), reference.encode_document(TEXTS, batch_size=2)),
                         (ours.encode_queries(QUERIES), reference.encode_query(QUERIES))]:
        expected = theirs.to_dense().numpy()
        got = to_csr(mine, ours.vocab_size).toarray()
        assert [v.term_ids.tolist() for v in mine] == [np.flatnonzero(row).tolist() for row in expected]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert len(ours.encode_queries(QUERIES)[0]) > 1 and len(ours.encode_documents(TEXTS)[0]) > 20  # real weights and real expansion


def test_opensearch_idf_json_weights_query_tokens(tmp_path):
    model = tmp_path / "mlm"
    model.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (model / f).symlink_to(f"{default_splade()}/{f}")
    (model / "idf.json").write_text(json.dumps({"coffee": 2.5, "diabetes": 1.25, "?": 0.5}))
    encoder = InferenceFreeEncoder(InferenceFreeConfig(model=str(model), doc_max_length=16, query_weights="model"), device="cpu")
    assert encoder.encode_queries(["Does coffee prevent diabetes? coffee"])[0].to_dict(encoder.vocab) == {"coffee": 2.5, "diabetes": 1.25, "?": 0.5}


def test_missing_query_weights_and_unreachable_hub_are_one_line_errors():
    with pytest.raises(SprigError, match="ships no query weights.*query_weights=corpus") as err:
        InferenceFreeEncoder(InferenceFreeConfig(query_weights="model"), device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(SprigError, match="Hugging Face hub") as err:
        InferenceFreeEncoder(InferenceFreeConfig(model="sprig-tests/no-such-model"), device="cpu")
    assert "\n" not in str(err.value)
