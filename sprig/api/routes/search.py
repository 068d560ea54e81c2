"""POST /search: ranked passages with scores, snippets and explanations."""
from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from sprig.api.deps import ConfigDep, SearchBody, SearcherDep
from sprig.api.schemas import SearchHit, SearchResponse, errors

router = APIRouter(tags=["search"])


def snippet(text: str, limit: int) -> str:
    """The first ``limit`` characters, cut back to a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut or text[:limit]) + "…"


@router.post("/search", response_model=SearchResponse, responses=errors(400, 413, 422))
async def search(body: SearchBody, searcher: SearcherDep, config: ConfigDep) -> SearchResponse:
    # Only the search runs in a worker thread (it blocks: query encoding, index reads); the checks and the
    # response's validation stay on the event loop, which saves thread round trips per request.
    start = time.perf_counter()
    hits = await run_in_threadpool(searcher.search, body.query, body.k, body.mode, body.weights, body.fusion, body.explain)
    took = (time.perf_counter() - start) * 1000
    data = [
        SearchHit(id=h.passage_id, doc_id=h.doc_id, rank=h.rank, score=h.score, title=h.title,
                  snippet=snippet(h.text, config.server.snippet_chars), explanation=h.explain or None)
        for h in hits
    ]
    return SearchResponse(query=body.query, mode=body.mode or searcher.default_mode(), data=data, count=len(data), took_ms=round(took, 3))
