"""The FastAPI app factory. The lifespan opens the index and loads the generator once (the searcher batches
concurrent requests' searches: sprig.retriever.combining); routes reach them through the dependencies in
``sprig.api.deps``. Routers are registered here, one line each."""
from __future__ import annotations

import logging
import re
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

import sprig
from sprig.api.limits import BodyLimitMiddleware
from sprig.api.metrics import Metrics, MetricsMiddleware
from sprig.api.openapi import served_openapi
from sprig.api.routes import answer, documents, health, openai, search
from sprig.core.config import SprigConfig
from sprig.core.errors import SprigError
from sprig.rag.answer import Answerer
from sprig.retriever.searcher import Searcher

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"  # the search-and-answer page: plain HTML/CSS/JS, no build step


def _path_pattern(template: str) -> str:
    """A regex for an OpenAPI path: each {parameter} matches any non-empty text (ids may hold slashes)."""
    return "/".join(".+" if part.startswith("{") else re.escape(part) for part in template.split("/"))


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
        yield  # concurrent searches (/search, /answer and chat retrieval alike) are batched by the searcher (server.query_batch)
        if searcher is None:
            app.state.searcher.close()

    app = FastAPI(title="sprig", version=sprig.__version__, description="Learned-sparse, dense and hybrid retrieval.", lifespan=lifespan)
    app.state.config = config
    app.state.metrics = Metrics()
    app.state.answer_lock = threading.Lock()  # one generator: answers are generated one at a time
    app.openapi = lambda: served_openapi(app, getattr(app.state, "searcher", None), config)

    @app.exception_handler(SprigError)
    async def user_error(request: Request, exc: SprigError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content={"detail": str(exc)})

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
        """Allow lists every documented method of the path: Starlette names only the first route's (GET, not DELETE)."""
        methods = {m.upper() for path, ops in app.openapi()["paths"].items()
                   if re.fullmatch(_path_pattern(path), request.url.path) for m in ops}
        allow = ", ".join(sorted(methods)) or (exc.headers or {}).get("Allow", "")
        return JSONResponse(status_code=405, content={"detail": "Method Not Allowed"}, headers={"Allow": allow})

    app.include_router(search.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(answer.router)
    app.include_router(openai.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    # Outermost first: metrics see every response, including the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.server.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if config.server.cors_origins:  # off unless configured: no cross-origin page may call the API by default
        app.add_middleware(CORSMiddleware, allow_origins=config.server.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Content-Type", "X-API-Key"])
    return app
