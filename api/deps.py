"""FastAPI dependencies as ``Annotated`` aliases: the searcher and config the app loaded once, and the API-key guard."""
from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from retriever.searcher import Searcher
from sprig.config import SprigConfig


def get_searcher(request: Request) -> Searcher:
    return request.app.state.searcher


def get_config(request: Request) -> SprigConfig:
    return request.app.state.config


SearcherDep = Annotated[Searcher, Depends(get_searcher)]
ConfigDep = Annotated[SprigConfig, Depends(get_config)]


def require_api_key(config: ConfigDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Write endpoints need header ``X-API-Key`` when ``server.api_key`` is configured."""
    expected = config.server.api_key
    if expected is None:
        return
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})


WriteAccess = Depends(require_api_key)
