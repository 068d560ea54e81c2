"""`sprig index`: the one-pass build, its index directory, resume after a crash, and atomic replacement."""
from __future__ import annotations

import json
import shutil

import pytest

from sprig.core.errors import IndexCorrupt, SprigError
from sprig.index.docstore import DocStore
from sprig.index.manifest import read_manifest
from sprig.indexer import build as build_mod
from sprig.indexer.build import build_index
from tests.sprig_fixtures import TOPICS, tiny_config, write_corpus


@pytest.fixture(scope="module")
def built(tiny_index):
    return None, tiny_index.index_dir, tiny_index


def test_index_directory_layout_and_manifest(built):
    _, idx, report = built
    manifest = read_manifest(idx, verify=True)
    assert manifest["passages"] == report.passages == len(TOPICS)
    assert set(manifest["sparse"]) == {"splade", "bm25"} and manifest["dense"]["faiss"]["kind"] == "hnsw"
    assert (idx / "sparse" / "bm25" / "encoder" / "bm25.json").is_file()
    # bundled models are recorded as "default", not as this install's site-packages path
    assert manifest["encoders"]["splade"]["model"] == manifest["encoders"]["dense"]["model"] == "default"
    assert report.dense_recall["recall@10"] == 1.0  # 12 vectors: HNSW is exact here
    assert not idx.with_name("idx.partial").exists()
    with DocStore(idx / "docs.sqlite", readonly=True) as store:
        assert [p.passage_id for p in store.iter_rows()] == [f"d{i}" for i in range(len(TOPICS))]


def test_searcher_matches_exact_dot_products(built):
    from sprig.retriever.searcher import Searcher

    _, idx, _ = built
    searcher = Searcher(idx, tiny_config())
    query = "does coffee prevent diabetes"
    for name in ("splade", "bm25"):
        hits = searcher.search(query, k=len(TOPICS), mode=name)
        qvec = searcher.encoders[name].encode_queries([query])[0]
        stored = searcher.store.vectors(name, searcher.store.get(range(1, 13)).keys())
        exact = {searcher.store.get([r])[r].passage_id: qvec.dot(v) for r, v in stored.items()}
        assert hits[0].passage_id == max(exact, key=exact.get) == "d5"
        # Engine scores are quantised impacts: close to the float dot products, not equal.
        for h in hits:
            assert h.score == pytest.approx(exact[h.passage_id], rel=0.05, abs=0.05)
        terms = hits[0].explain["terms"][name]
        assert terms and sum(t["contribution"] for t in terms) <= exact["d5"] + 1e-4
    hybrid = searcher.search(query, k=3)
    assert hybrid[0].passage_id == "d5" and set(hybrid[0].explain["retrievers"]) == {"bm25", "splade", "dense"}
    with pytest.raises(SprigError, match="available"):
        searcher.search(query, mode="colbert")


class _Crash(RuntimeError):
    pass


def test_killed_build_resumes_and_never_replaces_a_good_index(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    config = tiny_config(sparse="bm25", dense=False)
    build_index(corpus, out, config, progress=False)
    good = (out / "manifest.json").read_text()

    real_add, calls = DocStore.add, {"n": 0}

    def crash_on_third_shard(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _Crash("killed")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(DocStore, "add", crash_on_third_shard)
    with pytest.raises(_Crash):
        build_index(corpus, out, config, progress=False)
    assert (out / "manifest.json").read_text() == good  # the old index is untouched
    assert sorted(p.name for p in (tmp_path / "idx.partial" / "shards").glob("*.done")) == ["000000.done", "000001.done"]

    monkeypatch.setattr(DocStore, "add", real_add)
    report = build_index(corpus, out, config, resume=True, progress=False)
    assert report.resumed_shards == 2 and report.passages == len(TOPICS)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert build_index(corpus, out, config, resume=True, progress=False).passages == len(TOPICS)
    assert (out / "manifest.json").stat().st_mtime_ns == mtime  # finished and unchanged: --resume does nothing
    with DocStore(out / "docs.sqlite", readonly=True) as store:
        assert [p.row for p in store.iter_rows()] == list(range(1, len(TOPICS) + 1))


def test_resume_refuses_other_settings(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    monkeypatch.setattr(build_mod, "_write_sparse", lambda *a: (_ for _ in ()).throw(_Crash("killed")))
    with pytest.raises(_Crash):
        build_index(corpus, tmp_path / "idx", tiny_config(sparse="bm25", dense=False), progress=False)
    with pytest.raises(SprigError, match="different corpus or settings"):
        build_index(corpus, tmp_path / "idx", tiny_config(sparse="bm25", dense=False, shard_size=3), resume=True, progress=False)


def test_damaged_index_is_a_clear_error(built, tmp_path):
    _, idx, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(idx, copy)
    seg = next((copy / "sparse" / "bm25").glob("seg-*/impacts.npy"))
    seg.write_bytes(seg.read_bytes()[:-3])
    with pytest.raises(IndexCorrupt, match="bytes, the manifest says"):
        read_manifest(copy)
    (copy / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(IndexCorrupt, match="format"):
        read_manifest(copy)


def test_other_versions_and_unknown_features_ask_for_a_rebuild(built, tmp_path):
    """An index of another layout version, or one using a part this sprig does not know, is refused in one line."""
    _, idx, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(idx, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["features"] == sorted(f for f in ("sentence_vectors",) if f in manifest)
    for change, message in (({"version": 0}, "version 0; this sprig reads 'sprig-index' version 1: rebuild it with `sprig index"),
                            ({"features": ["from_the_future"]}, "uses from_the_future, which this sprig does not know: upgrade sprig or rebuild")):
        (copy / "manifest.json").write_text(json.dumps(manifest | change))
        with pytest.raises(IndexCorrupt, match=message.replace("(", r"\(")) as err:
            read_manifest(copy)
        assert "\n" not in str(err.value)


def test_cli_index_and_search(tmp_path, capsys):
    from sprig.api.cli import main

    corpus = write_corpus(tmp_path / "corpus.jsonl")
    assert main(["index", str(corpus), "--out", str(tmp_path / "idx"), "--sparse", "bm25", "--dense", "none", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["passages"] == len(TOPICS)
    assert main(["search", str(tmp_path / "idx"), "smoking risk and lung cancer", "-k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [h["rank"] for h in lines] == [1, 2] and lines[0]["id"] == "d7"
    assert main(["search", str(tmp_path / "idx"), "x", "--mode", "dense"]) == 2  # not in this index: one-line error
    assert "available: bm25" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "missing"), "--out", str(tmp_path / "i2")]) == 2
    capsys.readouterr()
    assert main(["index", "", "--out", str(tmp_path / "i3")]) == 2  # never the working directory
    assert "the corpus path is empty" in capsys.readouterr().err and not (tmp_path / "i3").exists()
