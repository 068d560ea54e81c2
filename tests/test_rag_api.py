"""POST /answer and the OpenAI-compatible /v1/chat/completions over a tiny BM25 index of squad-a,
driven by the official `openai` client; bad input gets a 4xx and a failing generation never takes the
server down."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from sprig.core.config import SprigConfig
from tests.conftest import dataset

N_PARAGRAPHS = 12


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from sprig.api.app import create_app
    from sprig.indexer.build import build_index

    corpus = tmp_path_factory.mktemp("squad-slice")
    with (dataset("squad-a") / "corpus.jsonl").open() as fh:
        (corpus / "corpus.jsonl").write_text("".join(next(fh) for _ in range(N_PARAGRAPHS)))
    index = corpus.parent / "idx"
    config = SprigConfig(index={"sparse": "bm25", "dense": False}, server={"max_query_chars": 100_000},
                         generator={"max_new_tokens": 8}, compress={"k": 2})
    build_index(corpus, index, config, progress=False)
    with TestClient(create_app(index, config)) as c:
        yield c


def _ids() -> set[str]:
    return {f"0-{i}" for i in range(N_PARAGRAPHS)} | {f"{a}-{b}" for a in range(2) for b in range(N_PARAGRAPHS)}


def test_answer_json(client):
    r = client.post("/answer", json={"question": "Which NFL team represented the AFC at Super Bowl 50?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] and not body["closed_book"] and len(body["passages"]) == 2
    assert all(set(c["passage_ids"]) <= {p["passage_id"] for p in body["passages"]} for c in body["citations"])
    assert body["stats"]["ttft_ms"] > 0 and body["stats"]["context_tokens"] == body["stats"]["retrieved_tokens"]


def test_answer_sse_stream(client):
    with client.stream("POST", "/answer", json={"question": "Who won Super Bowl 50?", "compress": "recomp-extractive", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [block for block in r.read().decode().split("\n\n") if block]
    kinds = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"}
    final = json.loads(events[-1].split("data: ", 1)[1])
    tokens = "".join(json.loads(e.split("data: ", 1)[1])["text"] for e in events[:-1])
    assert final["answer"] == tokens.strip() and final["mode"] == "recomp-extractive"
    assert final["stats"]["context_tokens"] <= 0.25 * final["stats"]["retrieved_tokens"]


@pytest.mark.parametrize("payload,code,needle", [
    ({"question": "Who won?", "compress": "zip"}, 422, "recomp-extractive"),
    ({"question": "   "}, 422, "empty"),
    ({"question": "word " * 9000}, 400, "context"),
])
def test_bad_input_is_4xx(client, payload, code, needle):
    r = client.post("/answer", json=payload)
    assert r.status_code == code and needle in r.text


def test_generation_error_does_not_take_the_server_down(client, monkeypatch):
    generator = client.app.state.answerer.generator

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")
        yield  # pragma: no cover

    monkeypatch.setattr(generator, "stream", broken)
    r = client.post("/answer", json={"question": "Who won Super Bowl 50?"})
    assert r.status_code == 500 and "out of memory" in r.text
    monkeypatch.undo()
    assert client.post("/answer", json={"question": "Who won Super Bowl 50?", "closed_book": True}).status_code == 200


def test_openai_client_chat_completions(client):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "Where did Super Bowl 50 take place?"}]
    done = api.chat.completions.create(model="sprig", messages=messages, max_tokens=6)
    text = done.choices[0].message.content
    assert text and done.choices[0].finish_reason in ("stop", "length") and done.usage.completion_tokens <= 6
    chunks = list(api.chat.completions.create(model="sprig", messages=messages, max_tokens=6, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed.strip() == text.strip() and chunks[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.UnprocessableEntityError):
        api.chat.completions.create(model="sprig", messages=[{"role": "user", "content": " "}])
