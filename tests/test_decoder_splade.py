"""Decoder SPLADE on the real SmolLM2-135M GGUF: echo pooling against full LM logits, the chunked head, pruning,
the `splade` kind's backbone choice, an index built and searched with it, and the bad-input errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sprig.core.config import SpladeConfig, SprigConfig
from sprig.core.errors import SprigError
from sprig.core.models import default_dense, default_generator, default_splade
from sprig.encoders.causal_lm import dequantised, is_causal
from sprig.encoders.decoder_splade import DecoderSpladeEncoder, splade_encoder
from sprig.encoders.splade import SpladeEncoder

TEXTS = ["Coffee consumption is linked with a lower risk of type 2 diabetes.", "Zinc lozenges", "Tobacco smoking causes most cases of lung cancer."]


@pytest.fixture(scope="module")
def encoder():
    return DecoderSpladeEncoder(SpladeConfig(backbone="causal", doc_max_length=24, query_max_length=12, batch_size=4), device="cpu")


def echo_reference(encoder: DecoderSpladeEncoder, texts: list[str], max_length: int) -> torch.Tensor:
    """The definition, one text at a time: the model called whole (its own LM head, full [T, V] logits) on
    "<prompt> text <sep> text", log(1 + ReLU(logits)), max over the second copy's positions."""
    tok = encoder.tokenizer
    prompt, sep, tail = encoder.template.template.split("{text}")
    rows = []
    for text in texts:
        ids = tok(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        head = tok(prompt)["input_ids"] + ids + tok(sep, add_special_tokens=False)["input_ids"]
        full = head + ids + tok(tail, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = encoder.model(input_ids=torch.tensor([full])).logits[0]
        rows.append(torch.log1p(torch.relu(logits[len(head) : len(head) + len(ids)])).max(0).values)
    return torch.stack(rows)


def test_echo_pooling_equals_full_logits_reference(encoder):
    """Batched (right padding, truncation to 24 tokens per copy) and chunked, as the definition on each text alone."""
    texts = [*TEXTS, "Short sleep duration is associated with obesity in children " * 3]
    got = encoder.pooled(texts, 24)
    assert got.shape == (len(texts), encoder.vocab_size)
    assert torch.allclose(got, echo_reference(encoder, texts, 24), atol=1e-4)


def test_head_is_projected_in_chunks_never_whole(encoder, monkeypatch):
    """Each pooled block is [tokens, vocab_chunk] at most, the LM head module never runs, and chunking changes nothing."""
    widths, real = [], torch.segment_reduce

    def spy(data, *args, **kwargs):
        widths.append(data.shape[1])
        return real(data, *args, **kwargs)

    def head_ran(*_):
        raise AssertionError("the LM head ran over every token")

    monkeypatch.setattr(torch, "segment_reduce", spy)
    hook = encoder.model.get_output_embeddings().register_forward_hook(head_ran)
    try:
        monkeypatch.setattr(encoder, "vocab_chunk", 1000)
        chunked = encoder.pooled(TEXTS, 16)
        monkeypatch.setattr(encoder, "vocab_chunk", encoder.vocab_size)
        whole = encoder.pooled(TEXTS, 16)
    finally:
        hook.remove()
    assert max(widths[:-1]) == 1000 and len(widths) == -(-encoder.vocab_size // 1000) + 1
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_untrained_head_is_pruned_to_the_stated_top_k(encoder):
    assert SpladeConfig().top_k("causal") == (512, 64) and SpladeConfig().top_k("masked") == (0, 0)
    assert SpladeConfig(doc_top_k=0, query_top_k=5).top_k("causal") == (0, 5)
    pooled = encoder.pooled(TEXTS[:1], 24)[0]
    assert int((pooled > 0).sum()) > 10_000  # why the default prunes
    doc, query = encoder.encode_documents(TEXTS[:1])[0], encoder.encode_queries(["does coffee prevent diabetes"])[0]
    assert len(doc) == 512 and len(query) == 64
    assert np.allclose(np.sort(doc.weights), np.sort(pooled.numpy())[-512:])  # the k largest
    words = {encoder.vocab[t] for t in query.term_ids}
    assert {" coffee", " diabetes", " prevent"} <= words
    assert doc.dot(query) > 0


def test_without_expansion_a_text_weighs_its_own_ids_only(encoder, monkeypatch):
    """expansion=false: the echo weights of the text's own token ids, every other id 0, and no top-k prune."""
    full = encoder.pooled(TEXTS, 24)
    monkeypatch.setattr(encoder, "expansion", False)
    own = encoder.pooled(TEXTS, 24)
    for text, row, got in zip(TEXTS, full, own):
        ids = sorted(set(encoder.tokenizer(text, add_special_tokens=False, truncation=True, max_length=24)["input_ids"]))
        assert got.nonzero().flatten().tolist() == [i for i in ids if row[i] > 0]
        assert torch.allclose(got[ids], row[ids], atol=1e-5)  # only the own ids' rows of the head are projected
    assert SpladeConfig(expansion=False).top_k("causal") == (0, 0)
    assert encoder.settings()["expansion"] is False  # an index records it, so its queries are encoded alike
    with pytest.raises(SprigError, match="splade.expansion=false .* causal"):
        SpladeEncoder(SpladeConfig(expansion=False), "cpu")


def test_backbone_is_detected_from_the_checkpoint(encoder):
    folder, gguf = default_generator()
    assert is_causal(folder, gguf) and is_causal(f"{folder}/{gguf}", None) and is_causal(dequantised(folder, gguf), None)
    assert not is_causal(default_splade(), None) and not is_causal(default_dense(), None)
    assert type(splade_encoder(SpladeConfig(), "cpu")) is SpladeEncoder  # "default" stays SPLADE-tiny
    # the bundled decoder is recorded as "default", so the index opens under any install (with backbone "causal")
    assert {k: encoder.settings()[k] for k in ("backbone", "model", "gguf_file")} == {"backbone": "causal", "model": "default", "gguf_file": None}


def test_index_build_and_search(tmp_path):
    """`sprig index` with --sparse splade on the GGUF; a Searcher opened with a plain config gets the causal
    backbone back from the manifest, and its engine scores follow the stored vectors' dot products."""
    from sprig.indexer.build import build_index
    from sprig.retriever.searcher import Searcher
    from tests.sprig_fixtures import TOPICS, write_corpus

    folder, gguf = default_generator()
    config = SprigConfig(device="cpu", splade={"model": f"{folder}/{gguf}", "doc_max_length": 32, "query_max_length": 12, "batch_size": 8},
                         index={"sparse": "splade", "dense": False, "shard_size": 5})
    report = build_index(write_corpus(tmp_path / "corpus.jsonl"), tmp_path / "idx", config, progress=False)
    searcher = Searcher(report.index_dir, SprigConfig(device="cpu"))
    enc = searcher.encoders["splade"]
    assert isinstance(enc, DecoderSpladeEncoder) and enc.query_max_length == 12
    assert searcher.index.encoder_settings["splade"]["vocab_size"] == 49152
    query = "zinc lozenges and the common cold"  # an untrained head ranks by shared tokens: a query with rare ones
    hits = searcher.search(query, k=len(TOPICS), mode="splade")
    assert hits[0].passage_id == "d9"
    qvec = enc.encode_queries([query])[0]
    stored = searcher.store.vectors("splade", range(1, len(TOPICS) + 1))
    exact = {f"d{row - 1}": qvec.dot(vec) for row, vec in stored.items()}
    for hit in hits:
        assert hit.score == pytest.approx(exact[hit.passage_id], rel=0.02)
    terms = {t["term"] for t in hits[0].explain["terms"]["splade"]}
    assert {" Zinc", "inc", "enges", " cold"} & terms and not any("Ġ" in t for t in terms)  # decoded token text
    searcher.close()


def test_bad_models_are_one_line_errors(tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    with pytest.raises(SprigError, match=r"BertModel, not a causal language model; decoder SPLADE needs") as err:
        DecoderSpladeEncoder(SpladeConfig(model=default_dense(), backbone="causal"), device="cpu")
    assert default_dense() in str(err.value) and "\n" not in str(err.value)
    # A causal architecture whose checkpoint lacks the head (an untied lm_head that was never saved).
    headless = tmp_path / "headless"
    tokenizer = AutoTokenizer.from_pretrained(dequantised(*default_generator()))
    LlamaModel(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=1, tie_word_embeddings=False)).save_pretrained(headless)
    tokenizer.save_pretrained(headless)
    config = json.loads((headless / "config.json").read_text())
    (headless / "config.json").write_text(json.dumps(config | {"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(SprigError, match=r"has no trained LM head \(missing lm_head.weight\)"):
        DecoderSpladeEncoder(SpladeConfig(model=str(headless), backbone="causal"), device="cpu")
    with pytest.raises(SprigError, match=r"nosucharch is not supported.*needs a causal language model .*from GGUF"):
        DecoderSpladeEncoder(SpladeConfig(model=str(unsupported_gguf(tmp_path))), device="cpu")
    with pytest.raises(SprigError, match=r"splade.causal_template .* has 0 \{text\} slot\(s\); expected 1 or 2"):
        DecoderSpladeEncoder(SpladeConfig(causal_template="no slot here", backbone="causal"), device="cpu")


def unsupported_gguf(folder: Path) -> Path:
    """A valid GGUF file of an architecture transformers has no loader for."""
    import gguf

    path = folder / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "nosucharch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
