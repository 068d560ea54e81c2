import numpy as np
import pytest
import torch

from sprig.core.models import default_dense
from sprig.encoders.dense import pool


def test_vectors_equal_sentence_transformers(dense_encoder, scifact_docs):
    from sentence_transformers import SentenceTransformer

    texts = [f"{d.title} {d.text}" for d in scifact_docs[:32]] + ["short query"]
    ours = dense_encoder.encode_documents(texts)
    theirs = SentenceTransformer(default_dense(), device="cpu").encode(texts, normalize_embeddings=False)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)  # the model's config asks for Normalize
    assert dense_encoder.settings()["pooling"] == "mean" and dense_encoder.max_length == 256


@pytest.mark.parametrize("how", ["cls", "mean", "max", "lasttoken"])
def test_pooling_modes_against_plain_loops(how):
    states = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    out = pool(states, mask, how)
    for i in range(3):
        real = states[i, : int(mask[i].sum())]
        expected = {"cls": real[0], "mean": real.mean(0), "max": real.max(0).values, "lasttoken": real[-1]}[how]
        assert torch.allclose(out[i], expected, atol=1e-6)
