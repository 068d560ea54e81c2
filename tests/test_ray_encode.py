"""`sprig index --ray` on a local 2-CPU Ray runtime: a single-process build that crashed is finished by the Ray Data
pipeline, through a Ray worker killed mid-shard, into the index an unbroken single-process build writes (every vector
within float32 rounding); a Ray address that does not answer is one line and exit 2 with nothing written."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from sprig.core.config import SprigConfig
from sprig.core.types import to_csr
from sprig.index.docstore import DocStore
from sprig.index.reader import Index
from sprig.indexer import ray_encode
from sprig.indexer.build import build_index
from tests.sprig_fixtures import TOPICS, tiny_config, write_corpus

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def runtime():
    """One local runtime for the module: Ray takes seconds to start."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny corpus (3 shards of 5, 5, 2 passages) built in this process: SPLADE, BM25, dense, sentence vectors."""
    root = tmp_path_factory.mktemp("ray")
    corpus, config = write_corpus(root / "corpus.jsonl"), tiny_config()
    return corpus, config, build_index(corpus, root / "single", config, progress=False).index_dir


def _on_ray(config: SprigConfig) -> SprigConfig:
    return config.model_copy(update={"ray": config.ray.model_copy(update={"address": ray_encode.LOCAL})})


def _assert_same_index(got, want) -> None:
    """Same passages under the same rows, and every stored vector equal within float32 rounding."""
    a, b = Index(got), Index(want)
    try:
        assert [(p.row, p.passage_id, p.text) for p in a.store.iter_rows()] == [(p.row, p.passage_id, p.text) for p in b.store.iter_rows()]
        assert a.manifest["encoders"] == b.manifest["encoders"] and a.sparse_names == b.sparse_names and set(a.sparse_names) == {"splade", "bm25"}
        for name in a.sparse_names:
            (rows_a, vecs_a), (rows_b, vecs_b) = a.store.all_vectors(name), b.store.all_vectors(name)
            width = a.manifest["encoders"][name]["vocab_size"]
            assert rows_a.tolist() == rows_b.tolist() == list(range(1, len(TOPICS) + 1))
            np.testing.assert_allclose(to_csr(vecs_a, width).toarray(), to_csr(vecs_b, width).toarray(), rtol=1e-5, atol=1e-6)
        rows = np.arange(1, len(TOPICS) + 1)
        np.testing.assert_allclose(a.dense.vectors(rows), b.dense.vectors(rows), rtol=1e-5, atol=1e-6)
        ids = [f"d{i}" for i in range(len(TOPICS))]
        sent_a, sent_b = a.store.sentence_vectors(ids), b.store.sentence_vectors(ids)
        assert sent_a.keys() == sent_b.keys() == set(ids)
        for pid in ids:
            np.testing.assert_allclose(sent_a[pid].astype(np.float32), sent_b[pid].astype(np.float32), atol=1e-3)
    finally:
        a.close()
        b.close()


class _Crash(RuntimeError):
    pass


def test_crashed_build_resumes_on_ray_through_a_killed_worker_into_the_same_index(runtime, reference, tmp_path, monkeypatch):
    """The shards are the single-process build's: Ray picks up after the one it committed, encodes the other two
    (one per replica), and the replica whose worker dies has its shard encoded again."""
    corpus, config, single = reference
    real_add = DocStore.add

    def crash_on_second_shard(self, passages, *args, **kwargs):
        if int(args[1][0]) > config.index.shard_size:  # rows of the second shard: the build is killed there
            raise _Crash("killed")
        return real_add(self, passages, *args, **kwargs)

    monkeypatch.setattr(DocStore, "add", crash_on_second_shard)
    with pytest.raises(_Crash):
        build_index(corpus, tmp_path / "idx", config, progress=False)
    monkeypatch.setattr(DocStore, "add", real_add)

    killed = tmp_path / "killed"

    class DiesOnItsFirstShard(ray_encode.ShardEncoder):  # pickled by value into the actors
        def __call__(self, batch):
            if not killed.exists():
                killed.touch()
                os._exit(1)  # the worker process dies mid-shard, as when a node is lost
            return super().__call__(batch)

    monkeypatch.setattr(ray_encode, "ShardEncoder", DiesOnItsFirstShard)
    report = build_index(corpus, tmp_path / "idx", _on_ray(config), resume=True, progress=False)
    assert killed.exists() and report.resumed_shards == 1 and report.passages == len(TOPICS)
    _assert_same_index(tmp_path / "idx", single)


def test_a_ray_address_that_does_not_answer_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    from sprig.api.cli import main

    corpus = write_corpus(tmp_path / "corpus.jsonl")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    assert main(["index", str(corpus), "--out", str(tmp_path / "idx"), "--ray", address, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and address in err[0] and "Ray" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]
