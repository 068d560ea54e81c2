"""Inference-free retrieval end to end on a 12-passage BEIR folder: the stored IDF, exact and approximate
search against exact dot products, hybrid fusion, the API (POST /documents keeps the built IDF), the CLI
and `sprig eval beir` through brute force and through the index."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sprig.core.config import SprigConfig
from sprig.core.errors import SprigError
from sprig.index.manifest import read_manifest
from sprig.index.reader import IDF_STATE
from sprig.retriever.fusion import fuse
from sprig.retriever.searcher import Searcher
from tests.sprig_fixtures import TOPICS
from tests.test_inference_free import router_model

QUERIES = {"q1": ("does coffee prevent diabetes", "d5"), "q2": ("artemisinin malaria treatment", "d2"), "q3": ("tobacco and lung cancer", "d7")}
MODE = "inference-free"


def config(**inference_free) -> SprigConfig:
    return SprigConfig(device="cpu", inference_free={"doc_max_length": 64, "batch_size": 8, **inference_free},
                       index={"sparse": MODE, "sentence_vectors": False, "shard_size": 5})


def write_beir(folder):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": t, "text": x}) + "\n" for i, (t, x) in enumerate(TOPICS)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": text}) + "\n" for q, (text, _) in QUERIES.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d) in QUERIES.items()))
    return folder


def sprig(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sprig.api.cli", *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(BEIR folder, index with inference-free + dense, an open Searcher)."""
    from sprig.indexer.build import build_index

    root = tmp_path_factory.mktemp("inference_free")
    data = write_beir(root / "mini")
    build_index(data, root / "idx", config(), progress=False)
    searcher = Searcher(root / "idx", config())
    yield data, root / "idx", searcher
    searcher.close()


def test_index_stores_corpus_idf_next_to_its_postings(built):
    _, idx, searcher = built
    manifest = read_manifest(idx, verify=True)
    assert "idf" in manifest["features"] and manifest["idf"]["n_docs"] == len(TOPICS)
    assert IDF_STATE.as_posix() in manifest["checksums"] and set(manifest["sparse"]) == {MODE}
    tokenizer = searcher.encoders[MODE].tokenizer
    token_sets = [set(tokenizer.encode(f"{t} {x}", add_special_tokens=False)) for t, x in TOPICS]
    idf = np.load(idx / IDF_STATE)
    for token in ("coffee", "type", "the"):
        t = tokenizer.convert_tokens_to_ids(token)
        df = sum(t in s for s in token_sets)
        assert idf[t] == pytest.approx(math.log(1 + (len(TOPICS) - df + 0.5) / (df + 0.5)), rel=1e-6), token


def test_exact_and_approximate_search_match_exact_dot_products(built):
    _, _, searcher = built
    stored = searcher.store.vectors(MODE, range(1, len(TOPICS) + 1))
    engine = searcher.index.sparse[MODE]
    for text, expected in QUERIES.values():
        q = searcher.encoders[MODE].encode_queries([text])[0]
        exact = {row: q.dot(v) for row, v in stored.items()}
        best = max(exact, key=exact.get)
        hits = searcher.search(text, k=5, mode=MODE)
        assert hits[0].passage_id == searcher.store.get([best])[best].passage_id == expected
        for h in hits:  # quantised impacts: close to the float dot products
            assert h.score == pytest.approx(exact[searcher.store.row_of(h.passage_id)], rel=0.05, abs=0.05)
        rows, _ = engine.search(q, k=3, mode="approx", query_cut=3)
        assert rows[0] == best


def test_hybrid_fuses_inference_free_with_weight_one(built):
    _, _, searcher = built
    assert searcher.modes == ["hybrid", MODE, "dense"] and MODE not in searcher.config.fusion.weights
    text = QUERIES["q1"][0]
    hits = searcher.search(text, k=4)
    runs, _ = searcher.runs([text], [MODE, "dense"], searcher.config.fusion.depth)
    expected = fuse(runs[0], "convex", {"dense": searcher.config.fusion.weights["dense"]}, k=4)
    assert [searcher.store.row_of(h.passage_id) for h in hits] == expected.ids.tolist()
    assert [h.score for h in hits] == pytest.approx(expected.scores.tolist())
    assert set(hits[0].explain["retrievers"]) == {MODE, "dense"} and hits[0].explain["terms"][MODE]


def test_api_searches_and_post_documents_keep_the_built_idf(built, tmp_path):
    from fastapi.testclient import TestClient

    from sprig.api.app import create_app

    idx = tmp_path / "idx"
    shutil.copytree(built[1], idx)
    idf_bytes, idf_entry = (idx / IDF_STATE).read_bytes(), read_manifest(idx)["idf"]
    with TestClient(create_app(idx, config())) as client:
        assert client.get("/health").json()["modes"] == ["hybrid", MODE, "dense"]
        assert MODE in json.dumps(client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"])
        body = client.post("/search", json={"query": QUERIES["q2"][0], "k": 2, "mode": MODE}).json()
        assert body["mode"] == MODE and body["data"][0]["id"] == "d2"
        doc = {"id": "new/1", "title": "Tardigrades", "text": "Tardigrades survive desiccation with disordered proteins."}
        assert client.post("/documents", json={"documents": [doc]}).status_code == 201
        encoder_idf = client.app.state.searcher.encoders[MODE].idf
        hits = client.post("/search", json={"query": "tardigrades desiccation", "k": 1, "mode": MODE}).json()["data"]
        assert [h["id"] for h in hits] == ["new/1"]
        weighted = client.post("/search", json={"query": "coffee", "k": 1, "weights": {MODE: 2.0, "dense": 0.0}}).json()
        assert weighted["mode"] == "hybrid" and weighted["data"][0]["id"] == "d5"
    # The IDF stays the one of the build: the file, its manifest entry and the encoder's copy.
    assert (idx / IDF_STATE).read_bytes() == idf_bytes and read_manifest(idx, verify=True)["idf"] == idf_entry
    assert np.array_equal(encoder_idf, np.load(idx / IDF_STATE)) and read_manifest(idx)["passages"] == len(TOPICS) + 1


def test_eval_beir_brute_force_and_index_agree(built, tmp_path):
    from sprig.api.cli import build_parser
    from sprig.eval.beir import run_beir

    data, idx, _ = built
    assert build_parser().parse_args(["eval", "beir", str(data), "--retriever", MODE, "--out", "x"]).retriever == MODE
    brute = run_beir(data, MODE, tmp_path / "brute", config(), progress=False)
    indexed = run_beir(data, MODE, tmp_path / "index", config(), progress=False, index=idx)
    assert brute["nDCG@10"] == indexed["nDCG@10"] == 1.0
    brute_run = [line.split()[:3] for line in (tmp_path / "brute" / "run.trec").read_text().splitlines()]
    index_run = [line.split()[:3] for line in (tmp_path / "index" / "run.trec").read_text().splitlines()]
    assert [r for r in brute_run if r[0] == "q1"][:3] == [r for r in index_run if r[0] == "q1"][:3]


def test_cli_index_with_model_weights_searches_with_them_and_a_missing_idf_is_one_line(built, tmp_path):
    data = built[0]
    env = {"SPRIG_INFERENCE_FREE__MODEL": str(router_model(tmp_path / "router", "relu")), "SPRIG_INFERENCE_FREE__DOC_MAX_LENGTH": "32"}
    result = sprig("index", str(data), "--out", str(tmp_path / "idx"), "--sparse", MODE, "--dense", "none", "--quiet",
                   SPRIG_INFERENCE_FREE__QUERY_WEIGHTS="model", **env)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "idx")
    assert "idf" not in manifest["features"] and manifest["encoders"][MODE]["query_weights"] == "model"
    # The index records its query weights: a plain search (config default: corpus) weights queries as it was built.
    result = sprig("search", str(tmp_path / "idx"), QUERIES["q1"][0], "--mode", MODE, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["explain"]["mode"] == MODE
    # An index that claims corpus weights without the stored IDF: one line naming what is missing, exit 2.
    manifest["encoders"][MODE]["query_weights"] = "corpus"
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    result = sprig("search", str(tmp_path / "idx"), "coffee", "--mode", MODE)
    assert result.returncode == 2 and "no stored IDF" in result.stderr and "QUERY_WEIGHTS=corpus" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(SprigError, match="no stored IDF"):
        Searcher(tmp_path / "idx", config())
