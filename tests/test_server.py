"""The real server: `sprig serve` under uvicorn on a free port, spoken to over HTTP."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# Generous timeouts: the first search compiles numba kernels, and CI machines may be busy. Never timed.
http = httpx.Client(timeout=120)

KEY = "test-key"
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, index: Path, log: Path, **env: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SPRIG_SERVER__API_KEY": KEY, "SPRIG_SERVER__MAX_BODY_BYTES": "20000", "SPRIG_SERVER__MAX_QUERY_CHARS": "200", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "sprig.api.cli", "serve", str(index), "--port", str(self.port)],
                                     cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("server did not come up in 240 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def index_copy(tiny_index, tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "idx"
    shutil.copytree(tiny_index.index_dir, path)
    return path


@pytest.fixture(scope="module")
def server(index_copy, tmp_path_factory):
    srv = Server(index_copy, tmp_path_factory.mktemp("log") / "server.log")
    yield srv
    srv.stop()


def test_health_docs_and_every_mode(server):
    health = http.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["passages"] == 12 and health["modes"][0] == "hybrid"
    assert http.get(server.url + "/docs").status_code == 200
    openapi = http.get(server.url + "/openapi.json").json()
    search = openapi["components"]["schemas"]["SearchRequest"]["properties"]
    assert "/search" in openapi["paths"] and search["query"]["maxLength"] == 200  # this server's max_query_chars
    assert set(search["mode"]["anyOf"][0]["enum"]) == set(health["modes"])  # only the modes this index has
    for mode in health["modes"]:
        body = http.post(server.url + "/search", json={"query": "artemisinin malaria treatment", "k": 3, "mode": mode}).json()
        assert body["count"] == len(body["data"]) >= 1 and body["data"][0]["id"] == "d2", mode
        expl = body["data"][0]["explanation"]
        assert expl["mode"] == mode and all(r["rank"] == 1 for r in expl["retrievers"].values())
        if mode in ("splade", "bm25", "hybrid"):
            assert any(t["term"].startswith("malari") for terms in expl["terms"].values() for t in terms)
    rrf = http.post(server.url + "/search", json={"query": "sleep and obesity", "k": 2, "fusion": "rrf", "weights": {"bm25": 0.5, "dense": 2}}).json()
    assert rrf["data"][0]["id"] == "d3" and rrf["data"][0]["explanation"]["fusion"] == "rrf"


@pytest.mark.parametrize("payload,status", [
    ({"query": "x", "k": 0}, 422),
    ({"query": "x", "k": 1001}, 422),
    ({"query": ""}, 422),
    ({"query": "   \n"}, 422),
    ({"query": "long " * 100}, 422),
    ({"query": "x", "mode": "colbert"}, 422),
    ({"query": "x", "fusion": "borda"}, 422),
    ({"query": "x", "weights": {"bm25": "heavy"}}, 422),
    ({"query": "x", "weights": {"tfidf": 1}}, 422),
    ({"query": "x", "weights": {"bm25": -1}}, 422),
    ({"query": "x", "unexpected": 1}, 422),
    ({"query": 5}, 422),
    ([1, 2], 422),
])
def test_bad_search_input_is_4xx_with_a_message(server, payload, status):
    r = http.post(server.url + "/search", json=payload)
    assert r.status_code == status and r.json()["detail"]


def test_malformed_and_oversized_bodies(server):
    r = http.post(server.url + "/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = http.post(server.url + "/search", content=b'{"query": "' + b"a" * 30000 + b'"}', headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit must still hold
        for _ in range(30):
            yield b"a" * 1000

    r = http.post(server.url + "/documents", content=chunks(), headers={"content-type": "application/json", "x-api-key": KEY})
    assert r.status_code == 413
    assert http.get(server.url + "/documents/nope").status_code == 404


def test_documents_write_read_delete_and_persist(server, index_copy, tmp_path):
    doc = {"id": "new/1", "title": "Tardigrades", "text": "Tardigrades survive desiccation with disordered proteins."}
    assert http.post(server.url + "/documents", json={"documents": [doc]}).status_code == 401
    assert http.post(server.url + "/documents", json={"documents": [doc]}, headers={"x-api-key": "wrong"}).status_code == 401
    r = http.post(server.url + "/documents", json={"documents": [doc]}, headers={"x-api-key": KEY})
    assert r.status_code == 201 and r.json()["ids"] == ["new/1"]
    assert http.post(server.url + "/documents", json={"documents": [doc]}, headers={"x-api-key": KEY}).status_code == 409
    assert http.post(server.url + "/documents", json={"documents": []}, headers={"x-api-key": KEY}).status_code == 422
    for mode in ("hybrid", "splade", "dense"):
        hits = http.post(server.url + "/search", json={"query": "tardigrades desiccation", "k": 1, "mode": mode}).json()["data"]
        assert [h["id"] for h in hits] == ["new/1"], mode
    # BM25's vocabulary and statistics are fixed at build time: words new to the corpus match nothing there.
    assert http.post(server.url + "/search", json={"query": "tardigrades", "mode": "bm25"}).json()["count"] == 0
    assert http.get(server.url + "/documents/new/1").json()["title"] == "Tardigrades"
    assert http.delete(server.url + "/documents/d7").status_code == 401
    assert http.delete(server.url + "/documents/d7", headers={"x-api-key": KEY}).status_code == 204
    assert http.delete(server.url + "/documents/d7", headers={"x-api-key": KEY}).status_code == 404
    hits = http.post(server.url + "/search", json={"query": "tobacco smoking lung cancer", "k": 12, "mode": "hybrid"}).json()["data"]
    assert "d7" not in [h["id"] for h in hits]

    metrics = http.get(server.url + "/metrics").text
    assert 'sprig_http_requests_total{method="POST",route="/search",status="200"}' in metrics
    assert 'route="/documents/{passage_id:path}",status="204"' in metrics and "sprig_index_passages 12.0" in metrics



@pytest.mark.slow
def test_writes_survive_a_restart(server, index_copy, tmp_path):
    """Runs after the write test (file order): a second server on the same directory sees its writes."""
    server.stop()
    again = Server(index_copy, tmp_path / "restart.log")
    try:
        assert http.get(again.url + "/documents/new/1").status_code == 200
        assert http.get(again.url + "/documents/d7").status_code == 404
        hits = http.post(again.url + "/search", json={"query": "tardigrades", "k": 1, "mode": "splade"}).json()["data"]
        assert hits[0]["id"] == "new/1"
    finally:
        again.stop()
