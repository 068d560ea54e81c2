"""Faults (issue 22, item 6): real kill -9 of `sprig index` and of `sprig serve` at seeded random moments, and
writes racing searches on one server.

After every kill the previous index opens and answers exactly as before, `--resume` finishes with the index
an unbroken build writes, an acknowledged document is never lost (and one in flight is all there or not at
all), and no search hit names a document the server cannot return. The kills are real SIGKILLs of real
processes; only their moments are seeded, so which step a kill lands in varies from run to run.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from itertools import count
from pathlib import Path

import httpx
import numpy as np
import pytest

from sprig.core.errors import IndexCorrupt
from sprig.corpus.chunking import Passage
from sprig.index.reader import Index
from tests.conftest import dataset
from tests.test_server import KEY, REPO, Server

ENV = {"OMP_NUM_THREADS": "1"}  # one torch thread per process: the machine's cores are shared
AUTH = {"x-api-key": KEY}
CORPUS_DOCS, TEXT_CHARS, SHARD = 24, 300, 4  # six shards, so a kill can land between any two
SLOW_INDEX_KILLS, SLOW_SERVER_SEEDS = 20, 5
WRITE_WINDOW_S = 4.0  # after the first acknowledged write, POST /documents runs this long at most before the kill


def scifact_docs(start: int, n: int) -> list[dict]:
    """``n`` scifact documents from line ``start``, texts cut short to keep encoding cheap."""
    with (dataset("scifact") / "corpus.jsonl").open() as fh:
        lines = [line for _, line in zip(range(start + n), fh)][start:]
    return [{**d, "text": d["text"][:TEXT_CHARS]} for d in map(json.loads, lines)]


def answers(index_dir: Path) -> dict:
    """What an index serves, opened as a reader opens it: every passage, and each retriever's top 10 (rows) for
    five of its own passages' stored vectors as queries (no model needed, so it can be asked after every kill)."""
    index = Index(index_dir)
    try:
        passages = list(index.store.iter_rows())
        probe = [p.row for p in passages][:: max(1, len(passages) // 5)][:5]
        served: dict = {"passages": [(p.row, p.passage_id, p.title, p.text) for p in passages]}
        for name in index.retrievers:
            if name == "dense":
                queries = index.dense.vectors(np.array(probe))
            else:
                stored = index.store.vectors(name, probe)
                queries = [stored[r] for r in probe]
            served[name] = [rows.tolist() for rows, _ in index.search(name, queries, 10)]
    finally:
        index.close()
    return served


def sprig_index(corpus: Path, out: Path, resume: bool) -> subprocess.Popen:
    """`sprig index` with the cheapest settings that still write every part: BM25 (postings and its corpus
    statistics), dense vectors per shard, sentence vectors, FAISS, the passage store and the manifest."""
    args = [sys.executable, "-m", "sprig", "index", str(corpus), "--out", str(out), "--sparse", "bm25", "--shard-size", str(SHARD), "--quiet"]
    return subprocess.Popen(args + (["--resume"] if resume else []), cwd=REPO, env={**os.environ, **ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in scifact_docs(0, CORPUS_DOCS)))
    return path


@pytest.fixture(scope="module")
def unbroken(corpus, tmp_path_factory) -> tuple[dict, float]:
    """What an unbroken build of ``corpus`` serves, and how long the whole `sprig index` process took."""
    out = tmp_path_factory.mktemp("unbroken") / "idx"
    start = time.monotonic()
    finish(sprig_index(corpus, out, resume=False))
    return answers(out), time.monotonic() - start


@pytest.fixture(scope="module")
def previous(tiny_index) -> tuple[Path, dict]:
    """The good index a rebuild replaces (SPLADE, BM25, HNSW; other settings than the rebuild's) and what it serves."""
    return tiny_index.index_dir, answers(tiny_index.index_dir)


def kill_chain(seed: int, kills: int, corpus: Path, previous: tuple[Path, dict], unbroken: tuple[dict, float], root: Path,
               window: float = 1.0) -> int:
    """Rebuild over a copy of the previous index, SIGKILL `sprig index` at up to ``kills`` seeded moments (each
    run resuming the killed one) within the first ``window`` of an unbroken build's time, check what is served
    after each, then let `--resume` finish. Returns the kills that landed (a run that ends before its moment is
    not killed)."""
    rng = random.Random(seed)
    (prev_dir, before), (after, seconds) = previous, unbroken
    out = root / f"idx-{seed}"
    shutil.copytree(prev_dir, out)
    landed = 0
    for attempt in range(kills):
        proc = sprig_index(corpus, out, resume=attempt > 0)
        try:
            proc.wait(timeout=rng.uniform(0, seconds * window))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            landed += 1
        else:
            finish(proc)  # ended before its moment: it must have succeeded
        served = answers(out)
        assert served == before or served == after, f"seed {seed}, kill {attempt + 1}: the index at --out is neither the previous one nor the new one"
        if proc.returncode == 0 or served == after:
            break
    finish(sprig_index(corpus, out, resume=True))
    assert answers(out) == after, f"seed {seed}: the resumed build differs from an unbroken one"
    assert not [p for p in (out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")) if p.exists()]
    return landed


def test_killed_index_build_keeps_the_previous_index_and_resumes(corpus, previous, unbroken, tmp_path):
    """Moments in the first half of the build, and up to three seeds, so a kill lands even when this run is faster
    than the timed one (the machine's load changes)."""
    landed = 0
    for seed in range(3):
        landed += kill_chain(seed, 3, corpus, previous, unbroken, tmp_path, window=0.5)
        if landed:
            break
    assert landed >= 1


@pytest.mark.slow
def test_twenty_killed_index_builds(corpus, previous, unbroken, tmp_path):
    """Chains of up to three kills, seed after seed, until twenty kills have landed."""
    landed = 0
    for seed in count(1):
        landed += kill_chain(seed, 3, corpus, previous, unbroken, tmp_path)
        if landed >= SLOW_INDEX_KILLS:
            break


class _Killed(BaseException):
    """Stands for SIGKILL in the in-process tests below: no ``except Exception`` clean-up runs."""


def _die(*args, **kwargs):
    raise _Killed


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_directories_are_swapped_in_one_step(tmp_path):
    """The index swap and the dense swap exchange two directories in one step, so the target is never missing."""
    from sprig.core.files import _exchange, replace_dir

    new, dst = tmp_path / "new", tmp_path / "dst"
    for d in (new, dst):
        d.mkdir()
        (d / "name").write_text(d.name)
    assert _exchange(new, dst) and (dst / "name").read_text() == "new" and (new / "name").read_text() == "dst"
    replace_dir(new, dst)
    assert (dst / "name").read_text() == "dst" and [p.name for p in tmp_path.iterdir()] == ["dst"]


def test_build_killed_where_timed_kills_rarely_land_resumes(tmp_path, monkeypatch):
    """Some steps take microseconds, so timed kills rarely land there: stop the build at them deterministically.
    Killed after the manifest and the clean-up of the resume state, before the swap, `--resume` only swaps;
    killed inside the swap, after the exchange and before the old index is removed from ``.partial``, the
    new index is in place and `--resume` removes the leftover; killed as it started, before recording its
    plan, `--resume` starts afresh."""
    from sprig.indexer import build as build_mod
    from tests.sprig_fixtures import tiny_config, write_corpus

    corpus, out, work = write_corpus(tmp_path / "corpus.jsonl"), tmp_path / "idx", tmp_path / "idx.partial"
    old_corpus = tmp_path / "old.jsonl"
    old_corpus.write_text("".join(corpus.read_text().splitlines(keepends=True)[:5]))
    config = tiny_config(sparse="bm25", dense=False)
    build_mod.build_index(old_corpus, out, config, progress=False)
    before = answers(out)
    shutil.copytree(out, tmp_path / "previous")
    monkeypatch.setattr(build_mod, "replace_dir", _die)
    with pytest.raises(_Killed):
        build_mod.build_index(corpus, out, config, progress=False)
    assert answers(out) == before and not (work / "build.json").exists()
    monkeypatch.undo()
    build_mod.build_index(corpus, out, config, resume=True, progress=False)
    after = answers(out)
    assert len(after["passages"]) == 12 and not work.exists()

    shutil.copytree(tmp_path / "previous", work)
    assert build_mod.build_index(corpus, out, config, resume=True, progress=False).passages == 12
    assert not work.exists() and answers(out) == after

    shutil.rmtree(out)
    (work / "shards").mkdir(parents=True)
    assert build_mod.build_index(corpus, out, config, resume=True, progress=False).passages == 12
    assert answers(out) == after


@pytest.mark.parametrize("killed_at", ["store", "sparse", "persist", "manifest"])
@pytest.mark.parametrize("write", ["add", "delete"])
def test_document_write_killed_between_its_commits(write, killed_at, index_copy, monkeypatch):
    """A document write commits the passage store, each sparse engine, the dense directory and the manifest
    one after another; killed after any of them, the index opens writable (undoing the add, finishing the
    delete) and then read-only, and serves exactly what it served before the write, or after the delete."""
    from sprig.index import reader
    from sprig.index.docstore import DocStore
    from sprig.index.sparse import SparseIndex

    before = answers(index_copy)
    index = Index(index_copy, writable=True)
    victim = {"store": (DocStore, "retire_rows" if write == "delete" else "add"), "sparse": (SparseIndex, "delete" if write == "delete" else "add"),
              "persist": (reader, "replace_dir"), "manifest": (reader, "write_manifest")}[killed_at]
    monkeypatch.setattr(*victim, _die)
    with pytest.raises(_Killed):
        if write == "add":  # a copy of passage d0 under a new id, with d0's own vectors: no model needed
            copy = Passage("d0-copy", "d0-copy", "Copy", index.get("d0").text)
            sparse = {name: [index.store.vectors(name, [1])[1]] for name in index.sparse_names}
            index.add([copy], sparse, index.dense.vectors(np.array([1])))
        else:
            index.delete("d7")
    monkeypatch.undo()
    index.close()
    with pytest.raises(IndexCorrupt, match="interrupted"):
        Index(index_copy)  # a reader does not write: it names the fix
    Index(index_copy, writable=True).close()
    served = answers(index_copy)
    if write == "add":
        assert served == before
    else:
        assert served["passages"] == [p for p in before["passages"] if p[1] != "d7"]
        assert all(8 not in rows for name in served if name != "passages" for rows in served[name])  # d7 is row 8


# --- the server -------------------------------------------------------------------------------------


def searchable(client: httpx.Client, url: str, doc: dict) -> bool:
    """Found by its own text in the top 3 of every retriever that knows new words (BM25's vocabulary is the build's)."""
    for mode in ("splade", "dense"):
        hits = client.post(url + "/search", json={"query": doc["text"][:200], "k": 3, "mode": mode, "explain": False}).json()["data"]
        if doc["id"] not in [h["id"] for h in hits]:
            return False
    return True


def shows(hit: dict, document: dict) -> bool:
    """The hit's title and snippet are its document's."""
    return hit["title"] == document["title"] and document["text"].startswith(hit["snippet"].removesuffix("…"))


def post_until_killed(seed: int, index: Path, root: Path) -> None:
    """POST documents one by one to a real server, SIGKILL it at a seeded moment, restart it on the same index:
    every acknowledged document is there and searchable, the one in flight is all there or not at all."""
    rng = random.Random(seed)
    new_docs = [{"id": f"new-{seed}-{d['_id']}", "title": d["title"], "text": d["text"]} for d in scifact_docs(100 + 200 * seed, 200)]
    server = Server(index, root / f"serve-{seed}.log", **ENV)
    acked: list[dict] = []
    sent: list[dict] = []
    refused: list[str] = []
    warm = threading.Event()  # set at the first acknowledgement: the first write also warms the models up

    def write() -> None:
        with httpx.Client(timeout=120) as client:
            for doc in new_docs:
                sent.append(doc)
                try:
                    r = client.post(server.url + "/documents", json={"documents": [doc]}, headers=AUTH)
                except httpx.TransportError:
                    break
                if r.status_code != 201:
                    refused.append(f"{r.status_code} {r.text}")
                    break
                acked.append(doc)
                warm.set()
        warm.set()

    writer = threading.Thread(target=write)
    writer.start()
    warm.wait(240)
    time.sleep(rng.uniform(0, WRITE_WINDOW_S))
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    writer.join()
    assert not refused and len(sent) < len(new_docs), "every write must be acknowledged until the kill"

    server = Server(index, root / f"serve-{seed}-restarted.log", **ENV)
    try:
        with httpx.Client(timeout=120) as client:
            for doc in acked:
                stored = client.get(f"{server.url}/documents/{doc['id']}")
                assert stored.status_code == 200 and stored.json()["text"] == doc["text"], f"seed {seed}: acknowledged {doc['id']} lost"
                assert searchable(client, server.url, doc), f"seed {seed}: acknowledged {doc['id']} not searchable"
            in_flight = [d for d in sent if d not in acked]
            kept = [d for d in in_flight if client.get(f"{server.url}/documents/{d['id']}").status_code == 200]
            assert all(searchable(client, server.url, d) for d in kept), f"seed {seed}: a half-written document"
            passages = client.get(server.url + "/health").json()["passages"]
    finally:
        server.stop()
    assert passages == len(answers(index)["passages"]) == 12 + len(acked) + len(kept)


@pytest.fixture
def index_copy(tiny_index, tmp_path) -> Path:
    path = tmp_path / "idx"
    shutil.copytree(tiny_index.index_dir, path)
    return path


def test_killed_server_loses_no_acknowledged_document(index_copy, tmp_path):
    post_until_killed(0, index_copy, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, SLOW_SERVER_SEEDS + 1))
def test_killed_server_seeds(seed, index_copy, tmp_path):
    post_until_killed(seed, index_copy, tmp_path)


def test_concurrent_writes_and_searches_never_return_a_missing_document(index_copy, tmp_path):
    """Two writers add and delete documents while two searchers search every mode and fetch every hit: a hit
    is always a document the server returns (unless its DELETE had been sent), with the title and text it showed."""
    server = Server(index_copy, tmp_path / "serve.log", **ENV)
    docs = [{"id": f"c-{d['_id']}", "title": d["title"], "text": d["text"]} for d in scifact_docs(300, 12)]
    deleting: set[str] = set()
    problems: list[str] = []
    searched: list[int] = []  # hits per search
    writing = threading.Event()
    writing.set()

    def write(mine: list[dict]) -> None:
        with httpx.Client(timeout=120) as client:
            for i, doc in enumerate(mine):
                r = client.post(server.url + "/documents", json={"documents": [doc]}, headers=AUTH)
                if r.status_code != 201:
                    problems.append(f"POST {doc['id']}: {r.status_code}")
                if i % 2:  # delete every other document soon after adding it
                    gone = mine[i - 1]["id"]
                    deleting.add(gone)
                    r = client.delete(f"{server.url}/documents/{gone}", headers=AUTH)
                    if r.status_code != 204:
                        problems.append(f"DELETE {gone}: {r.status_code}")

    def search(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=120) as client:
            while writing.is_set():
                query = rng.choice(docs)["text"][:150]
                body = {"query": query, "k": 10, "mode": rng.choice(["hybrid", "splade", "bm25", "dense"]), "explain": False}
                r = client.post(server.url + "/search", json=body)
                if r.status_code != 200:
                    problems.append(f"search: {r.status_code} {r.text[:200]}")
                    continue
                searched.append(r.json()["count"])
                for hit in r.json()["data"]:
                    stored = client.get(f"{server.url}/documents/{hit['id']}")
                    if stored.status_code != 200 and hit["id"] not in deleting:
                        problems.append(f"hit {hit['id']} has no document ({stored.status_code})")
                    elif stored.status_code == 200 and not shows(hit, stored.json()):
                        problems.append(f"hit {hit['id']} shows a title or text its document does not have")

    try:
        writers = [threading.Thread(target=write, args=(docs[i::2],)) for i in range(2)]
        searchers = [threading.Thread(target=search, args=(i,)) for i in range(2)]
        for t in writers + searchers:
            t.start()
        for t in writers:
            t.join()
        writing.clear()
        for t in searchers:
            t.join()
        assert not problems, problems[:5]
        assert sum(searched) > 0, "no search ran while the writers wrote"
        with httpx.Client(timeout=120) as client:
            for doc in docs:
                status = client.get(f"{server.url}/documents/{doc['id']}").status_code
                assert status == (404 if doc["id"] in deleting else 200), doc["id"]
                assert searchable(client, server.url, doc) == (doc["id"] not in deleting), doc["id"]
    finally:
        server.stop()
    assert len(answers(index_copy)["passages"]) == 12 + len(docs) - len(deleting)
