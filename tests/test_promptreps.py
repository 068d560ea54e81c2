"""PromptReps on the real SmolLM2-135M GGUF: both vectors against a plain reference, one forward pass for both
halves of an index, a hybrid index built and searched, and the bad-input errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sprig.core.config import PromptRepsConfig, SprigConfig
from sprig.core.errors import SprigError
from sprig.core.models import default_dense, default_generator
from sprig.encoders.bm25 import LUCENE_STOPWORDS
from sprig.encoders.factory import EncoderSet
from sprig.encoders.promptreps import PromptRepsEncoder, promptreps_encoder

# As an index records it (the model's folder and file), so reopening the index below finds this encoder loaded.
CONFIG = PromptRepsConfig(model=default_generator()[0], gguf_file=default_generator()[1], doc_max_length=24, query_max_length=12)
TEXTS = ["Coffee consumption is linked with a lower risk of type 2 diabetes.", "Zinc lozenges",
         "Short sleep duration is associated with obesity in children " * 3, "the of and"]


@pytest.fixture(scope="module")
def encoder() -> PromptRepsEncoder:
    return promptreps_encoder(CONFIG, "cpu")  # the instance the index build below gets too: one load per process


def reference(encoder: PromptRepsEncoder, text: str, template: str, max_length: int) -> tuple[np.ndarray, dict[int, float]]:
    """The definition, one text at a time: the model called whole on prefix + text + suffix ids; its last hidden
    state at the last token, L2-normalised, and log(1 + ReLU(full next-token logits)) at the ids of the text's
    words (lowercased, stopwords dropped, each tokenised alone)."""
    tok = encoder.lm.tokenizer
    prefix, suffix = template.split("{text}")
    ids = tok(prefix)["input_ids"] + tok(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    ids += tok(suffix, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = encoder.lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    dense = torch.nn.functional.normalize(out.hidden_states[-1][0, -1], dim=-1).numpy()
    weights = torch.log1p(torch.relu(out.logits[0, -1]))
    words = {w for w in re.findall(r"\w+", text.lower()) if w not in LUCENE_STOPWORDS}
    own = {i for w in words for i in tok(w, add_special_tokens=False)["input_ids"]}
    return dense, {i: float(weights[i]) for i in sorted(own) if weights[i] > 0}


@pytest.mark.parametrize("side", ["doc", "query"])
def test_vectors_equal_plain_reference(encoder, side):
    """Batched with right padding and truncation, as the definition on each text alone."""
    template, max_length = (CONFIG.doc_template, 24) if side == "doc" else (CONFIG.query_template, 12)
    reps = encoder.encode(TEXTS, side)
    for text, vec, row in zip(TEXTS, reps.sparse, reps.dense):
        dense, sparse = reference(encoder, text, template, max_length)
        np.testing.assert_allclose(row, dense, atol=1e-4)
        assert vec.term_ids.tolist() == list(sparse)
        np.testing.assert_allclose(vec.weights, list(sparse.values()), atol=1e-4)
    assert len(reps.sparse[0]) > 5 and len(reps.sparse[3]) == 0  # stopwords only: nothing to weigh


def test_max_terms_keeps_the_heaviest_words(encoder, monkeypatch):
    full = encoder.encode_batch(TEXTS[:1], "doc")[0][0]
    monkeypatch.setattr(encoder, "config", CONFIG.model_copy(update={"max_terms": 3}))
    top = encoder.encode_batch(TEXTS[:1], "doc")[0][0]
    assert len(top) == 3 and np.allclose(np.sort(top.weights), np.sort(full.weights)[-3:])


def test_one_forward_pass_fills_both_halves(encoder):
    config = SprigConfig(device="cpu", promptreps=CONFIG, dense={"model": "promptreps"})
    encoders = EncoderSet.build(config, ["promptreps"], dense=True)
    assert encoders.sparse["promptreps"].encoder is encoders.dense.encoder is encoder
    passes = []
    hook = encoder.lm.body.register_forward_hook(lambda *_: passes.append(1))
    try:
        texts = ["Folic acid before conception prevents neural tube defects.", "Aerobic exercise improves memory."]
        encoded = encoders.encode(texts, texts)
    finally:
        hook.remove()
    assert len(passes) == 1  # one batch, one pass: the dense half reused the sparse half's
    again = encoder.encode(texts, "doc")
    assert encoded.dense.shape == (2, encoder.dim) and np.array_equal(encoded.dense, again.dense)
    assert [v.term_ids.tolist() for v in encoded.sparse["promptreps"]] == [v.term_ids.tolist() for v in again.sparse]
    settings = encoders.settings()
    assert settings["dense"] == {"model": "promptreps", "dim": encoder.dim}
    assert settings["promptreps"]["vocab_size"] == 49152 and settings["promptreps"]["doc_max_length"] == 24


def test_hybrid_index_build_and_search(tmp_path, encoder):
    """An index whose sparse and dense retrievers are both PromptReps; reopened with a plain config, it gets its
    encoder back from the manifest and fuses the two runs."""
    from sprig.indexer.build import build_index
    from sprig.retriever.searcher import Searcher
    from tests.sprig_fixtures import TOPICS, write_corpus

    config = SprigConfig(device="cpu", promptreps=CONFIG, dense={"model": "promptreps"},
                         index={"sparse": "promptreps", "dense": True, "sentence_vectors": False, "shard_size": 5})
    report = build_index(write_corpus(tmp_path / "corpus.jsonl"), tmp_path / "idx", config, progress=False)
    searcher = Searcher(report.index_dir, SprigConfig(device="cpu"))
    assert searcher.retrievers == ["promptreps", "dense"] and searcher.default_mode() == "hybrid"
    from sprig.index.sparse import SparseIndex  # where the decoder benchmark reads the sparse half's bytes
    assert SparseIndex.open(report.index_dir / "sparse" / "promptreps", verify=False).nbytes > 0
    assert searcher.encoders.dense.encoder is encoder
    query = "does coffee prevent diabetes"
    hits = searcher.search(query, k=3)
    assert hits[0].passage_id == "d5" and set(hits[0].explain["retrievers"]) == {"promptreps", "dense"}
    assert {t["term"] for t in hits[0].explain["terms"]["promptreps"]} >= {"diabetes"}
    reps = encoder.encode([query], "query")
    docs = encoder.encode([f"{title} {text}" for title, text in TOPICS], "doc")
    dense_hits = searcher.search(query, k=len(TOPICS), mode="dense")
    for hit in dense_hits:  # FAISS flat over the stored rows: exact inner products
        assert hit.score == pytest.approx(float(docs.dense[int(hit.passage_id[1:])] @ reps.dense[0]), abs=1e-5)
    sparse_hits = searcher.search(query, k=len(TOPICS), mode="promptreps")
    assert sparse_hits[0].passage_id == "d5"
    for hit in sparse_hits:
        assert hit.score == pytest.approx(reps.sparse[0].dot(docs.sparse[int(hit.passage_id[1:])]), rel=0.02)
    searcher.close()


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(SprigError, match=r"promptreps.doc_template 'Passage: no slot' has 0 \{text\} slot\(s\); expected 1$"):
        PromptRepsEncoder(PromptRepsConfig(doc_template="Passage: no slot"), "cpu")
    with pytest.raises(SprigError, match=r"BertModel, not a causal language model; PromptReps needs a causal language model") as err:
        PromptRepsEncoder(PromptRepsConfig(model=default_dense()), "cpu")
    assert default_dense() in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SprigError, match="--sparse promptreps"):
        EncoderSet.build(SprigConfig(device="cpu", dense={"model": "promptreps"}), [], dense=True)
