"""Every FastAPI dependency, as an ``Annotated`` alias: what the lifespan loaded once (searcher, answerer,
config), the API-key guard, and request checks against the configurable ``ServerConfig`` limits.

The schemas reject what no configuration would accept; the limits a user can change are checked here,
each with a one-line 422 that names its setting. The dependencies are ``async def``: none of them blocks,
and FastAPI runs a plain ``def`` one in its thread pool, a round trip per dependency per request.
"""
from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from sprig.api.schemas import BLANK, SearchRequest
from sprig.api.schemas_rag import AnswerRequest, ChatCompletionRequest
from sprig.core.config import SprigConfig
from sprig.rag.answer import Answerer
from sprig.retriever.searcher import Searcher


async def get_searcher(request: Request) -> Searcher:
    return request.app.state.searcher


async def get_answerer(request: Request) -> Answerer:
    return request.app.state.answerer


async def get_config(request: Request) -> SprigConfig:
    return request.app.state.config


SearcherDep = Annotated[Searcher, Depends(get_searcher)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
ConfigDep = Annotated[SprigConfig, Depends(get_config)]


async def require_api_key(config: ConfigDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Write endpoints need header ``X-API-Key`` when ``server.api_key`` is configured."""
    expected = config.server.api_key
    if expected is None:
        return
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})


WriteAccess = Depends(require_api_key)


def unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def checked_text(text: str, what: str, max_chars: int) -> str:
    """``text`` stripped; empty or longer than ``server.max_query_chars`` (as sent, like the OpenAPI maxLength) is a 422."""
    if len(text) > max_chars:
        raise unprocessable(f"{what} has {len(text)} characters; the limit is {max_chars} (server.max_query_chars)")
    text = text.strip(BLANK)
    if not text:
        raise unprocessable(f"{what} is empty (only whitespace)")
    return text


async def checked_search(body: SearchRequest, config: ConfigDep) -> SearchRequest:
    limits = config.server
    query = checked_text(body.query, "query", limits.max_query_chars)
    if body.k > limits.max_k:
        raise unprocessable(f"k={body.k} is above the limit {limits.max_k} (server.max_k)")
    return body.model_copy(update={"query": query})


def checked_tokens(requested: int | None, limit: int) -> None:
    """A request may not ask for more generated tokens than ``server.max_new_tokens`` (one answer holds the generator)."""
    if requested is not None and requested > limit:
        raise unprocessable(f"{requested} new tokens asked; the limit is {limit} (server.max_new_tokens)")


async def checked_answer(body: AnswerRequest, config: ConfigDep) -> AnswerRequest:
    checked_tokens(body.max_new_tokens, config.server.max_new_tokens)
    return body.model_copy(update={"question": checked_text(body.question, "the question", config.server.max_query_chars)})


async def chat_question(body: ChatCompletionRequest, config: ConfigDep) -> str:
    """The last user message's text: the question a chat request asks."""
    for requested in (body.max_tokens, body.max_completion_tokens):
        checked_tokens(requested, config.server.max_new_tokens)
    if body.question is None:
        raise unprocessable("messages hold no user message with text (the question)")
    return checked_text(body.question, "the question", config.server.max_query_chars)


SearchBody = Annotated[SearchRequest, Depends(checked_search)]
AnswerBody = Annotated[AnswerRequest, Depends(checked_answer)]
ChatQuestion = Annotated[str, Depends(chat_question)]
