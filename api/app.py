"""The FastAPI app factory. The lifespan opens the index and loads the models once; routes reach them
through ``api.deps``.

Routers are the modules in ``ROUTERS``; a module that does not exist (yet) is skipped, so features
land by adding a file. A router module may also define ``setup(app)`` — called once in the lifespan,
after the searcher is open — to load what it needs (a generator, say) onto ``app.state``.
"""
from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import sprig
from api.limits import BodyLimitMiddleware
from api.metrics import Metrics, MetricsMiddleware
from sprig.config import SprigConfig
from sprig.errors import SprigError

log = logging.getLogger(__name__)

ROUTERS = ["api.routes.search", "api.routes.documents", "api.routes.health", "api.routes.answer", "api.routes.openai"]


def _router_modules() -> list:
    modules = []
    for name in ROUTERS:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but one of its imports is missing: a real error
                raise
    return modules


def create_app(index_dir: str | Path | None = None, config: SprigConfig | None = None, searcher=None) -> FastAPI:
    """An app serving ``index_dir`` (opened writable in the lifespan), or an already open ``searcher``."""
    if index_dir is None and searcher is None:
        raise ValueError("create_app needs an index directory or a searcher")
    config = config or SprigConfig()
    modules = _router_modules()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from retriever.searcher import Searcher

        app.state.searcher = searcher if searcher is not None else Searcher(index_dir, config, writable=True)
        for module in modules:
            if hasattr(module, "setup"):
                module.setup(app)
        log.info("serving %s: %d passages, modes %s", app.state.searcher.dir, len(app.state.searcher.store), ", ".join(app.state.searcher.modes))
        yield
        if searcher is None:
            app.state.searcher.close()

    app = FastAPI(title="sprig", version=sprig.__version__, description="Learned-sparse, dense and hybrid retrieval.", lifespan=lifespan)
    app.state.config = config
    app.state.metrics = Metrics()

    @app.exception_handler(SprigError)
    async def user_error(request: Request, exc: SprigError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    for module in modules:
        app.include_router(module.router)
    # Outermost first: metrics see every response, including the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.server.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
