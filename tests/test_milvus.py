"""The Milvus backend on milvus-lite: every mode's top-10 equals float32 brute force over the stored vectors (as the
native engine's does, up to its uint8 impacts), writes are visible to the next search, and (slow) full SciFact
scores the native figure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from sprig.core.config import SprigConfig
from sprig.corpus.chunking import Passage
from sprig.index.backend import parse_location
from sprig.index.milvus import MilvusLocation
from sprig.retriever.fusion import Run, fuse
from sprig.retriever.searcher import Searcher
from tests.conftest import dataset

pytest.importorskip("milvus_lite")

DOCS, QUERIES, K = 200, 20, 10


def test_locations_parse_in_one_place():
    assert parse_location("http://milvus:19530/scifact") == MilvusLocation("http://milvus:19530", "scifact")
    assert parse_location("runs/idx.db") == MilvusLocation("runs/idx.db", "sprig")
    assert parse_location("runs/idx.db#other") == MilvusLocation("runs/idx.db", "other")
    assert str(parse_location("runs/idx.db#other")) == "runs/idx.db#other" and str(parse_location("http://h:1/c")) == "http://h:1/c"
    assert parse_location("indexes/scifact") == Path("indexes/scifact")


def test_cli_index_into_milvus_lite_then_search(tmp_path, capsys):
    """`sprig index --out FILE.db#COLLECTION` builds a folder aside and exports it; `sprig search` takes the location."""
    from sprig.api.cli import main
    from tests.sprig_fixtures import write_corpus

    corpus, location = write_corpus(tmp_path / "corpus.jsonl"), f"{tmp_path / 'cli.db'}#tiny"
    assert main(["index", str(corpus), "--out", location, "--sparse", "bm25", "--dense", "none", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) | {"seconds": 0, "docs_per_s": 0} == {
        "index": location, "passages": 12, "seconds": 0, "docs_per_s": 0}
    assert main(["search", location, "smoking risk and lung cancer", "-k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [h["id"] for h in lines][:1] == ["d7"] and lines[0]["explain"]["terms"]["bm25"]


def test_unreachable_server_and_missing_collection_are_one_line_exit_2(tmp_path, capsys):
    from sprig.api.cli import main

    for location, expected in (("http://127.0.0.1:9/docs", "no Milvus answers at http://127.0.0.1:9"),
                               (f"{tmp_path / 'empty.db'}#docs", "no sprig collection 'docs'")):
        assert main(["search", location, "lung cancer"]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_failed_export_leaves_the_previous_collection_serving(tiny_index, tmp_path, monkeypatch):
    from sprig.index.milvus import MilvusIndex
    from sprig.indexer.export import export_index

    target = f"{tmp_path / 'x.db'}#tiny"
    assert export_index(tiny_index.index_dir, target) == 12

    def dies(self, *args, **kwargs):
        raise OSError("killed mid-export")

    monkeypatch.setattr(MilvusIndex, "add", dies)
    with pytest.raises(OSError):
        export_index(tiny_index.index_dir, target)
    monkeypatch.undo()
    searcher = Searcher(target, SprigConfig(device="cpu"))
    try:
        assert len(searcher.store) == 12 and searcher.search("lung cancer", 3, "bm25")
    finally:
        searcher.close()
    assert export_index(tiny_index.index_dir, target) == 12  # the next export replaces the stale staging collection


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 200-document SciFact slice indexed natively (SPLADE, BM25, flat dense), exported to milvus-lite; 20 queries."""
    from sprig.corpus.readers import read_corpus, read_queries
    from sprig.indexer.build import build_index
    from sprig.indexer.export import export_index

    data, root = dataset("scifact"), tmp_path_factory.mktemp("milvus")
    with (root / "corpus.jsonl").open("w") as fh:
        for doc, _ in zip(read_corpus(data), range(DOCS)):
            fh.write(json.dumps({"_id": doc.doc_id, "title": doc.title, "text": doc.text}) + "\n")
    # Short inputs and no sentence vectors keep the build to ~25 s on 2 cores.
    config = SprigConfig(device="cpu", splade={"doc_max_length": 64}, dense={"max_length": 128},
                         index={"faiss": "flat", "shard_size": 100, "sentence_vectors": False})
    native = build_index(root / "corpus.jsonl", root / "native", config, progress=False).index_dir
    export_index(native, f"{root / 'm.db'}#slice")
    queries = list(read_queries(data).values())[:QUERIES]
    return native, f"{root / 'm.db'}#slice", config, queries


def _csr(vecs: list, width: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.concatenate([v.weights for v in vecs]), np.concatenate([v.term_ids for v in vecs]),
                          np.cumsum([0] + [len(v) for v in vecs])), shape=(len(vecs), width))


def _brute(searcher: Searcher, native: Searcher, queries: list[str], name: str, depth: int) -> list[Run]:
    """Float32 exhaustive inner products over the vectors the native index stores (its docstore and FAISS)."""
    if name == "dense":
        rows = np.array(sorted(native.store.get(range(1, DOCS + 1))), np.int64)
        scores = searcher.encoders["dense"].encode_queries(queries) @ native.index.dense.vectors(rows).T
    else:
        rows, vecs = native.store.all_vectors(name)
        width = searcher.encoders[name].vocab_size
        scores = (_csr(searcher.encoders[name].encode_queries(queries), width) @ _csr(vecs, width).T).toarray()
    runs = []
    for s in scores:
        top = np.argsort(-s, kind="stable")[:depth]
        keep = top if name == "dense" else top[s[top] > 0]  # a sparse index returns only documents sharing a term
        runs.append(Run(rows[keep], s[keep]))
    return runs


def _same_top(got: Run, want: Run, tol: float) -> None:
    """Equal score lists, and every row strictly above the k-th score (so no tie) found."""
    np.testing.assert_allclose(got.scores, want.scores, rtol=tol, atol=tol)
    clear = want.ids[want.scores > want.scores[-1] + 2 * tol * max(1.0, abs(want.scores[-1]))] if len(want.ids) else want.ids
    assert set(clear.tolist()) <= set(got.ids.tolist())


@pytest.mark.parametrize("backend", ["milvus", "native"])
def test_every_mode_top10_equals_float32_brute_force(built, backend):
    native_dir, milvus, config, queries = built
    native = Searcher(native_dir, config)
    searcher = native if backend == "native" else Searcher(milvus, config)
    # Milvus keeps the float32 weights; the native sparse engine ranks by uint8 impacts, so allow their rounding.
    tol = {"milvus": 1e-4, "native": 2e-2}[backend]
    try:
        assert searcher.modes == native.modes and len(searcher.modes) == 4
        fusion = searcher.config.fusion
        brute = {name: _brute(searcher, native, queries, name, fusion.depth) for name in searcher.retrievers}
        runs, _ = searcher.runs(queries, searcher.retrievers, K)
        for name in searcher.retrievers:
            for i in range(QUERIES):
                want = brute[name][i]
                _same_top(runs[i][name], Run(want.ids[:K], want.scores[:K]), tol if name != "dense" else 1e-4)
        hybrid = searcher.search_batch(queries, K, "hybrid", explain=False)
        for i, hits in enumerate(hybrid):
            want = fuse({n: brute[n][i] for n in brute}, fusion.method, fusion.weights, K, fusion.rrf_k)
            rows = [searcher.store.row_of(h.passage_id) for h in hits]
            _same_top(Run(np.array(rows), np.array([h.score for h in hits])), Run(want.ids, want.scores), max(tol, 1e-4))
        top = searcher.search(queries[0], 3, "bm25")[0]  # explanations name the matched terms, with the stored weights
        assert top.explain["terms"]["bm25"] and all(t["term"] in queries[0].lower() for t in top.explain["terms"]["bm25"])
    finally:
        native.close()
        if searcher is not native:
            searcher.close()


def test_documents_posted_and_deleted_over_http_land_in_milvus(built, tmp_path):
    from fastapi.testclient import TestClient

    from sprig.api.app import create_app
    from sprig.api.cli import main
    from sprig.indexer.update import add_passages

    native_dir, _, config, _ = built
    location = str(tmp_path / "w.db")
    assert main(["export", str(native_dir), location, "--quiet"]) == 0
    searcher = Searcher(location, config, writable=True)
    doc = {"id": "new/1", "title": "Tardigrades", "text": "Tardigrades survive desiccation by vitrifying their cytoplasm."}
    query = {"query": "tardigrades survive desiccation", "k": 3, "mode": "splade"}  # BM25's vocabulary is the build's
    try:
        with TestClient(create_app(config=config, searcher=searcher)) as http:
            assert http.post("/documents", json={"documents": [doc]}).status_code in (200, 201)
            assert http.post("/search", json=query).json()["data"][0]["id"] == "new/1"
            assert len(searcher.store) == DOCS + 1 and searcher.store.row_of("new/1") == DOCS + 1  # a fresh row number
            assert http.delete("/documents/new/1").status_code == 204
            assert "new/1" not in [h["id"] for h in http.post("/search", json=query).json()["data"]]
    finally:
        searcher.close()
    searcher = Searcher(location, config, writable=True)  # the write path POST /documents takes, on the reopened collection
    try:
        rows = add_passages(searcher.index, searcher.encoders, [Passage("new/2", "new/2", "", "Zinc lozenges shorten the common cold.", {})])
        assert rows.tolist() == [DOCS + 2]  # row numbers are never reused, across reopenings too
        assert searcher.search("zinc lozenges shorten the common cold", 1, "splade")[0].passage_id == "new/2"
    finally:
        searcher.close()


@pytest.mark.slow
@pytest.mark.parametrize("retriever", ["hybrid", "bm25", "splade", "dense"])
def test_full_scifact_ndcg_through_milvus_equals_native(retriever, tmp_path_factory):
    from sprig.eval.beir import run_beir
    from sprig.indexer.build import build_index
    from sprig.indexer.export import export_index

    data, root = dataset("scifact"), tmp_path_factory.getbasetemp() / "milvus-full"
    config = SprigConfig(device="cpu", index={"faiss": "flat", "sentence_vectors": False})
    if not (root / "native" / "manifest.json").exists():
        build_index(data, root / "native", config, progress=False)
        export_index(root / "native", str(root / "full.db"))
    native = run_beir(data, retriever, root / f"native-{retriever}", config, index=root / "native", progress=False)
    milvus = run_beir(data, retriever, root / f"milvus-{retriever}", config, index=str(root / "full.db"), progress=False)
    assert abs(milvus["nDCG@10"] - native["nDCG@10"]) <= 0.002, (milvus["nDCG@10"], native["nDCG@10"])
