"""Public request/response schemas of the HTTP API, kept apart from internal types (sprig.core.types, docstore rows).

Limits that users can change (query length, k) are checked against ``ServerConfig`` in sprig.api.deps;
the static bounds here only reject what no configuration would accept. Choices come from sprig.core.config.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sprig.core.config import EncoderKind, FusionMethod, RetrievalMode

Weight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
BLANK = " \t\n\r\f\v"  # what a query may not consist of only: ASCII, so that Python and the OpenAPI regex agree
NOT_BLANK = "[^ \t\n\r\f\v]"  # the OpenAPI pattern of a query: one character outside BLANK


def _integral(value: object) -> object:
    """JSON Schema counts 640.0 as an integer; strict pydantic alone would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def count(low: int, high: int):
    """An integer field of a strict request body, in [low, high] (bounds inside, so the OpenAPI states them)."""
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(_integral)]


class _Strict(BaseModel):
    """Request bodies: unknown fields and type coercion ("explain": 0, "k": "5") are rejected, as the schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SearchRequest(_Strict):
    query: str = Field(min_length=1, description="free text; at most server.max_query_chars characters (default 2048)")
    k: count(1, 1000) = Field(10, description="number of passages to return (at most server.max_k, default 1000)")
    mode: RetrievalMode | None = Field(None, description="default: hybrid when the index has two or more retrievers")
    fusion: FusionMethod | None = Field(None, description="hybrid fusion method; default from config")
    weights: dict[EncoderKind, Weight] | None = Field(None, description="hybrid weights per retriever, e.g. {\"bm25\": 0.3}")
    explain: bool = True


class TermContribution(BaseModel):
    term: str
    query_weight: float
    doc_weight: float
    contribution: float


class RetrieverScore(BaseModel):
    score: float | None = Field(description="the retriever's own score; null when it did not return this passage")
    rank: int | None


class Explanation(BaseModel):
    mode: str
    fusion: str | None = None
    retrievers: dict[str, RetrieverScore]
    terms: dict[str, list[TermContribution]] = Field(description="top contributing terms per sparse retriever")


class SearchHit(BaseModel):
    id: str
    doc_id: str
    rank: int
    score: float
    title: str
    snippet: str
    explanation: Explanation | None = None


class SearchResponse(BaseModel):
    query: str
    mode: str
    data: list[SearchHit]
    count: int
    took_ms: float


class DocumentCreate(_Strict):
    id: str = Field(min_length=1, max_length=512, description="passage id; must be new")
    title: str = Field("", max_length=10_000)
    text: str = Field(min_length=1, description="the whole request body is at most server.max_body_bytes (default 1,000,000 bytes)")
    doc_id: str | None = Field(None, max_length=512, description="source document id; defaults to id")
    metadata: dict = Field(default_factory=dict)


class DocumentsCreate(_Strict):
    documents: list[DocumentCreate] = Field(min_length=1, max_length=256)


class DocumentPublic(BaseModel):
    id: str
    doc_id: str
    title: str
    text: str
    metadata: dict


class DocumentsCreated(BaseModel):
    ids: list[str]
    count: int


class Health(BaseModel):
    status: Literal["ok"]
    passages: int
    modes: list[str]
    version: str


class ErrorBody(BaseModel):
    detail: str | list


_ERRORS = {
    400: "the index or the answerer rejected the request (SprigError)",
    401: "missing or wrong X-API-Key header (write endpoints, when server.api_key is set)",
    404: "no passage with that id",
    409: "a passage id is already in the index, or repeated in the request",
    413: "request body larger than server.max_body_bytes (default 1,000,000 bytes)",
    422: "invalid request: schema, or a configurable server limit",
    500: "generation failed",
}


def errors(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses=`` for the error statuses a route can return, each with its cause and body."""
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}
