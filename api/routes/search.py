"""POST /search: ranked passages with scores, snippets and explanations."""
from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, status

from api.deps import ConfigDep, SearcherDep
from api.schemas import SearchHit, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


def snippet(text: str, limit: int) -> str:
    """The first ``limit`` characters, cut back to a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut or text[:limit]) + "…"


@router.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
def search(body: SearchRequest, searcher: SearcherDep, config: ConfigDep) -> SearchResponse:
    limits = config.server
    query = body.query.strip()
    if not query:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "query is empty (only whitespace)")
    if len(query) > limits.max_query_chars:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"query has {len(query)} characters; the limit is {limits.max_query_chars} (server.max_query_chars)")
    if body.k > limits.max_k:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"k={body.k} is above the limit {limits.max_k} (server.max_k)")
    start = time.perf_counter()
    hits = searcher.search(query, body.k, body.mode, body.weights, body.fusion, body.explain)
    took = (time.perf_counter() - start) * 1000
    data = [
        SearchHit(id=h.passage_id, doc_id=h.doc_id, rank=h.rank, score=h.score, title=h.title,
                  snippet=snippet(h.text, limits.snippet_chars), explanation=h.explain or None)
        for h in hits
    ]
    return SearchResponse(query=query, mode=body.mode or searcher.default_mode(), data=data, count=len(data), took_ms=round(took, 3))
