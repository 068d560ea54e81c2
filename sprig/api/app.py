"""The FastAPI app factory. The lifespan opens the index and loads the generator once; routes reach
them through the dependencies in ``sprig.api.deps``. Routers are registered here, one line each."""
from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import sprig
from sprig.api.limits import BodyLimitMiddleware
from sprig.api.metrics import Metrics, MetricsMiddleware
from sprig.api.routes import answer, documents, health, openai, search
from sprig.core.config import SprigConfig
from sprig.core.errors import SprigError
from sprig.rag.answer import Answerer
from sprig.retriever.searcher import Searcher

log = logging.getLogger(__name__)


def create_app(index_dir: str | Path | None = None, config: SprigConfig | None = None, searcher: Searcher | None = None) -> FastAPI:
    """An app serving ``index_dir`` (opened writable in the lifespan), or an already open ``searcher``."""
    if index_dir is None and searcher is None:
        raise ValueError("create_app needs an index directory or a searcher")
    config = config or SprigConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.searcher = searcher if searcher is not None else Searcher(index_dir, config, writable=True)
        app.state.answerer = Answerer.from_config(config, app.state.searcher)
        log.info("serving %s: %d passages, modes %s", app.state.searcher.dir, len(app.state.searcher.store), ", ".join(app.state.searcher.modes))
        yield
        if searcher is None:
            app.state.searcher.close()

    app = FastAPI(title="sprig", version=sprig.__version__, description="Learned-sparse, dense and hybrid retrieval.", lifespan=lifespan)
    app.state.config = config
    app.state.metrics = Metrics()
    app.state.answer_lock = threading.Lock()  # one generator: answers are generated one at a time

    @app.exception_handler(SprigError)
    async def user_error(request: Request, exc: SprigError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(answer.router)
    app.include_router(openai.router)
    # Outermost first: metrics see every response, including the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.server.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
