"""GET /health and GET /metrics (Prometheus text exposition)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

import sprig
from sprig.api.deps import SearcherDep
from sprig.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(searcher: SearcherDep) -> Health:
    return Health(status="ok", passages=len(searcher.store), modes=searcher.modes, version=sprig.__version__)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, searcher: SearcherDep) -> PlainTextResponse:
    return request.app.state.metrics.exposition(passages=len(searcher.store))
